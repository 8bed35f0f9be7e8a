"""Reading a model's word list from its files, in the places Vosk looks."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ivr.speech.errors import SpeechConfigError
from ivr.speech.vocabulary import grammar_form, normalize_phrase, read_vocabulary


def _string(data: bytes) -> bytes:
    return struct.pack("<i", len(data)) + data


def _table(words: list[str]) -> bytes:
    body = b"".join(_string(w.encode()) + struct.pack("<q", i) for i, w in enumerate(words))
    return (
        struct.pack("<i", 2125658996)
        + _string(b"words.txt")
        + struct.pack("<qq", len(words), len(words))
        + body
    )


def fst_file(isymbols: list[str] | None, osymbols: list[str] | None) -> bytes:
    """An OpenFST binary header with the symbol tables, as fstcompile writes it."""
    flags = (1 if isymbols else 0) | (2 if osymbols else 0)
    header = (
        struct.pack("<i", 2125659606)
        + _string(b"const")
        + _string(b"standard")
        + struct.pack("<ii", 2, flags)
        + struct.pack("<Qqqq", 0, 0, 1, 0)
    )
    tables = (_table(isymbols) if isymbols else b"") + (_table(osymbols) if osymbols else b"")
    return header + tables + bytes(32)  # the states and arcs follow; not read


def model_dir(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_output_symbols_of_hclg(tmp_path: Path) -> None:
    words = ["<eps>", "!SIL", "[unk]", "crisis", "line", "español"]
    root = model_dir(tmp_path, {"graph/HCLG.fst": fst_file(["t1", "t2"], words)})
    vocabulary = read_vocabulary(root)
    assert vocabulary.source == root / "graph" / "HCLG.fst"
    assert vocabulary.count == len(words)
    assert "crisis" in vocabulary and "español" in vocabulary
    assert "t1" not in vocabulary  # input symbols are transition ids, not words
    assert vocabulary.unknown_token == "[unk]"
    assert vocabulary.has_phrase("Crisis  Line")
    assert not vocabulary.has_phrase("crisis hotline")


def test_words_txt_when_the_graph_has_no_symbols(tmp_path: Path) -> None:
    root = model_dir(
        tmp_path,
        {
            "graph/HCLG.fst": fst_file(None, None),
            "graph/words.txt": b"<eps> 0\n<UNK> 1\nveteran 2\nmilitary 3\n",
        },
    )
    vocabulary = read_vocabulary(root)
    assert vocabulary.source.name == "words.txt"
    assert vocabulary.unknown_token == "<UNK>"
    assert "veteran" in vocabulary and "0" not in vocabulary


def test_missing_and_corrupt_word_lists(tmp_path: Path) -> None:
    with pytest.raises(SpeechConfigError, match="no word list found"):
        read_vocabulary(tmp_path)
    whole = fst_file(None, ["<eps>", "hello", "world"])
    root = model_dir(tmp_path / "cut", {"graph/Gr.fst": whole[:60]})
    with pytest.raises(SpeechConfigError, match="truncated"):
        read_vocabulary(root)
    root = model_dir(tmp_path / "junk", {"graph/Gr.fst": b"not an fst at all"})
    with pytest.raises(SpeechConfigError, match="not an OpenFST"):
        read_vocabulary(root)


def test_grammar_form_spelling() -> None:
    known = {"crisis", "line", "OK", "español"}
    assert normalize_phrase("  Crisis \t line ") == "Crisis line"
    assert grammar_form("Crisis Line", known.__contains__) == "crisis line"
    assert grammar_form("OK", known.__contains__) == "OK"
    assert grammar_form("Espan\u0303ol", known.__contains__) == "español"  # decomposed ñ
    assert grammar_form("crisis hotline", known.__contains__) is None
    assert grammar_form("   ", known.__contains__) is None
