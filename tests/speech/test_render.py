"""espeak-ng + sox prompt rendering."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import pytest

from ivr.speech.audio import frame_rms, load_prompt_wav, wav_duration
from ivr.speech.render import RenderError, render_catalog, render_prompt
from tests.speech.conftest import need_tools


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tools()


@pytest.mark.parametrize(
    ("lang", "text"),
    [("en", "Press one for the Veterans Crisis Line."), ("es", "Para español, oprima dos.")],
)
def test_prompt_is_phone_audio(tmp_path: Path, lang: str, text: str) -> None:
    out = render_prompt(text, lang, tmp_path / "prompts" / "menu.wav")
    assert out == tmp_path / "prompts" / "menu.wav"
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
    assert 1.0 < wav_duration(out) < 6.0
    mulaw = load_prompt_wav(out)
    assert frame_rms(mulaw) > 500  # it is speech, not silence
    assert sorted(p.name for p in out.parent.iterdir()) == ["menu.wav"]  # no temp files


def test_catalog_renders_every_prompt(tmp_path: Path) -> None:
    catalog = {"welcome": "You are not alone.", "main_menu": "Say English or Spanish."}
    paths = render_catalog(catalog, "en", tmp_path)
    assert paths == [tmp_path / "welcome.wav", tmp_path / "main_menu.wav"]
    assert wav_duration(paths[1]) > wav_duration(paths[0]) * 0.5


def test_catalog_rejects_ids_that_are_not_file_names(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=re.escape("'../escape'")):
        render_catalog({"ok": "fine", "../escape": "no"}, "en", tmp_path)
    assert list(tmp_path.iterdir()) == []  # checked before anything is rendered


def test_text_starting_with_a_dash_is_spoken(tmp_path: Path) -> None:
    out = render_prompt("-v is not an option here", "en", tmp_path / "dash.wav")
    assert wav_duration(out) > 0.5


def test_empty_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="empty"):
        render_prompt("   ", "en", tmp_path / "x.wav")


def test_missing_espeak_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no tools on it
    with pytest.raises(RenderError, match=r"espeak-ng is not installed.*apt-get install espeak-ng"):
        render_prompt("hello", "en", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_unknown_voice_reports_espeak_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="espeak-ng failed"):
        render_prompt("hello", "en", tmp_path / "x.wav", voice="no-such-voice-zz")
    assert list(tmp_path.iterdir()) == []
