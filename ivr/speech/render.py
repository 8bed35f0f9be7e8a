"""Development recordings of prompts: espeak-ng speaks, sox makes it phone audio.

Real deployments record their prompts; until then `ivr prompts render`
turns a prompt catalog into 8 kHz mono 16-bit WAV files that
`load_prompt_wav` streams as they are. The same path makes test speech.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ivr.speech.errors import RenderError

__all__ = ["ESPEAK_VOICES", "RenderError", "espeak_voice", "render_catalog", "render_prompt"]

ESPEAK_VOICES: Mapping[str, str] = {"en": "en-us", "es": "es", "ko": "ko"}
"""espeak-ng voice per flow language; other codes are passed to espeak-ng as they are."""

_PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TIMEOUT = 60.0


def espeak_voice(lang: str) -> str:
    return ESPEAK_VOICES.get(lang, lang)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RenderError(
            f"{name} is not installed; it is needed to render prompts"
            f" (Debian/Ubuntu: apt-get install {package})"
        )
    return path


@functools.lru_cache(maxsize=4)
def _known_voices(espeak: str) -> frozenset[str]:
    """Languages, voice names and files espeak-ng knows, lower-cased.

    espeak-ng falls back to its default voice without a word when asked for
    one it lacks, which would render English prompts with a Spanish id.
    """
    try:
        listing = subprocess.run(
            [espeak, "--voices"], capture_output=True, timeout=_TIMEOUT, check=True
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError) as exc:
        raise RenderError(f"espeak-ng cannot list its voices: {exc}") from exc
    known: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            # Pty, Language, Age/Gender, VoiceName, File, then other languages
            known.update(f.lower() for f in (fields[1], fields[3], fields[4]))
            # Other languages read "(en 3)": a language then its priority.
            known.update(f[1:].lower() for f in fields[5:] if f.startswith("("))
    return frozenset(known)


def _run(argv: list[str], *, stdin: bytes | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"{Path(argv[0]).name} failed: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        raise RenderError(f"{Path(argv[0]).name} failed: {detail}")


def render_prompt(
    text: str,
    lang: str,
    out_path: str | os.PathLike[str],
    *,
    voice: str | None = None,
    speed: int | None = None,
    pitch: int | None = None,
) -> Path:
    """Speak `text` in `lang` into `out_path` as 8 kHz mono 16-bit PCM WAV.

    `voice`, `speed` (words per minute) and `pitch` (0-99) override
    espeak-ng's defaults. The file appears whole or not at all.
    """
    if not text.strip():
        raise RenderError(f"{os.fspath(out_path)}: prompt text is empty")
    espeak = _tool("espeak-ng", "espeak-ng")
    sox = _tool("sox", "sox")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    chosen = voice or espeak_voice(lang)
    if chosen.split("+", 1)[0].lower() not in _known_voices(espeak):
        raise RenderError(f"espeak-ng failed: it has no voice {chosen!r} (language {lang!r})")
    argv = [espeak, "-v", chosen]
    if speed is not None:
        argv += ["-s", str(speed)]
    if pitch is not None:
        argv += ["-p", str(pitch)]
    with tempfile.TemporaryDirectory(prefix=".render-", dir=out.parent) as tmp:
        spoken = Path(tmp) / "spoken.wav"
        phone = Path(tmp) / "phone.wav"
        # Text on stdin: a prompt starting with "-" must not read as an option.
        _run([*argv, "--stdin", "-w", str(spoken)], stdin=text.encode("utf-8"))
        _run([sox, str(spoken), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(phone)])
        os.replace(phone, out)
    return out


def render_catalog(
    catalog: Mapping[str, str],
    lang: str,
    out_dir: str | os.PathLike[str],
    *,
    voice: str | None = None,
) -> list[Path]:
    """Render every prompt of a catalog ({prompt id: text}) to `out_dir/<id>.wav`."""
    bad = [pid for pid in catalog if not _PROMPT_ID.match(pid)]
    if bad:
        raise RenderError(f"prompt ids not usable as file names: {', '.join(map(repr, bad))}")
    directory = Path(out_dir)
    return [
        render_prompt(text, lang, directory / f"{pid}.wav", voice=voice)
        for pid, text in catalog.items()
    ]
