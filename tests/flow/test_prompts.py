from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from ivr.flow.prompts import estimate_seconds, fill, load_prompts, placeholders
from ivr.wavfile import WavError, read_prompt_wav
from ivr.yamlsrc import Problems

from .conftest import Write

REAL_PROMPTS = Path(__file__).parents[2] / "prompts"


def messages(problems: Problems) -> list[tuple[str, int, str]]:
    return [(Path(p.pos.file).name, p.pos.line, p.message) for p in problems.sorted()]


def pcm_wav(path: Path, frames: int, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x00" * frames * channels * width)
    return path


def riff_wav(path: Path, fmt: bytes, data: bytes) -> Path:
    """A WAV written chunk by chunk, for formats the wave module cannot write."""
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(chunks) + len(data)) + b"WAVE" + chunks + data
    )
    return path


def mulaw_fmt(channels: int = 1, rate: int = 8000) -> bytes:
    return struct.pack("<HHIIHH", 7, channels, rate, rate * channels, channels, 8)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Hello there.", 2 / 2.5 + 0.3),
        ("Sorry, I didn't get that.", 5 / 2.5 + 0.3),
        ("Call 911 now.", 5 / 2.5 + 0.3),  # "nine one one": a word per digit
        ("Waiting {wait} seconds.", 4 / 2.5 + 0.3),  # a placeholder counts two words
        ("Hi.", 1 / 2.5 + 0.3),
        ("...", 0.5),  # never below half a second
    ],
)
def test_text_length_estimate(text: str, seconds: float) -> None:
    assert estimate_seconds(text) == pytest.approx(seconds)


def test_catalogs_with_text_voices_and_locales(write: Write, tmp_path: Path) -> None:
    write(
        "prompts/en/catalog.yaml",
        """
        voice: Polly.Joanna
        welcome: Hello there.
        menu: >-
          Press 1
          for help.
        whisper:
          text: Language {language}, waiting {wait} seconds.
          voice: Polly.Matthew
        """,
    )
    write(
        "prompts/es/catalog.yaml",
        """
        voice: Polly.Mia
        locale: es-MX
        welcome: Hola.
        whisper: Idioma {language}, en espera {wait} segundos.
        """,
    )
    problems = Problems()
    catalog = load_prompts(tmp_path / "prompts", problems)
    assert problems.items == []
    assert catalog.languages() == ("en", "es")
    assert catalog.voices == {"en": "Polly.Joanna", "es": "Polly.Mia"}
    assert catalog.locales == {"en": "en-US", "es": "es-MX"}
    menu = catalog.get("en", "menu")
    assert menu is not None
    assert menu.text == "Press 1 for help."
    assert menu.seconds == pytest.approx(4 / 2.5 + 0.3)
    assert menu.recording is None
    assert menu.pos is not None and menu.pos.line == 3
    whisper = catalog.get("en", "whisper")
    assert whisper is not None and whisper.voice == "Polly.Matthew"
    assert placeholders(whisper.text) == ("language", "wait")
    assert catalog.get("es", "menu") is None


def test_fill_placeholders() -> None:
    text = "Language {language}, need {need}, waiting {wait} seconds, {language}."
    assert fill(text, {"language": "es", "need": "veteran", "wait": "12"}) == (
        "Language es, need veteran, waiting 12 seconds, es."
    )
    with pytest.raises(ValueError, match=r"no value for \{need\}, \{wait\}"):
        fill(text, {"language": "es"})


def test_recordings_are_measured_from_their_header(write: Write, tmp_path: Path) -> None:
    write("prompts/en/catalog.yaml", "welcome: Hello there.\nsorry: Sorry.\nbye: Bye.\n")
    lang = tmp_path / "prompts" / "en"
    pcm_wav(lang / "welcome.wav", frames=12000)  # 1.5 s at 8 kHz, 16-bit
    riff_wav(lang / "sorry.wav", mulaw_fmt(), b"\xff" * 4000)  # 0.5 s of mu-law
    pcm_wav(lang / "bye.wav", frames=8000, rate=16000)  # 0.5 s, 16 kHz (halved when streamed)
    problems = Problems()
    catalog = load_prompts(tmp_path / "prompts", problems)
    assert problems.items == []
    welcome = catalog.get("en", "welcome")
    assert welcome is not None
    assert (welcome.seconds, welcome.recording, welcome.text) == (
        1.5,
        lang / "welcome.wav",
        "Hello there.",
    )
    assert [catalog.prompts["en"][p].seconds for p in ("sorry", "bye")] == [0.5, 0.5]


@pytest.mark.skipif(
    not shutil.which("espeak-ng") or not shutil.which("sox"), reason="needs espeak-ng and sox"
)
def test_a_real_mulaw_recording_matches_sox(tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    mulaw = tmp_path / "welcome.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(speech), "You have reached the crisis line."], check=True
    )
    subprocess.run(["sox", str(speech), "-r", "8000", "-e", "mu-law", str(mulaw)], check=True)
    sox_says = float(
        subprocess.run(
            ["soxi", "-D", str(mulaw)], check=True, capture_output=True, text=True
        ).stdout
    )
    assert read_prompt_wav(mulaw).seconds == pytest.approx(sox_says, abs=1e-3)
    assert 1.0 < sox_says < 5.0
    # espeak-ng writes 22050 Hz: Twilio could <Play> it, our media streams cannot.
    with pytest.raises(WavError, match="sample rate 22050 Hz"):
        read_prompt_wav(speech)


def test_unusable_recordings_are_named(write: Write, tmp_path: Path) -> None:
    write(
        "prompts/en/catalog.yaml",
        "stereo: a\ngarbage: b\nfloat: c\nsilent: d\nwide: e\ncd: f\nbyte: g\nulaw16k: h\n",
    )
    lang = tmp_path / "prompts" / "en"
    pcm_wav(lang / "stereo.wav", frames=800, channels=2)
    (lang / "garbage.wav").write_bytes(b"ID3\x03 this is an mp3 really")
    riff_wav(lang / "float.wav", struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32), b"\0" * 64)
    riff_wav(lang / "silent.wav", mulaw_fmt(), b"")
    pcm_wav(lang / "wide.wav", frames=10, width=3)
    # Headers Twilio's <Play> would accept but our media streams cannot use:
    # the server refuses them at start-up, so the loader must too.
    pcm_wav(lang / "cd.wav", frames=4410, rate=44100)
    pcm_wav(lang / "byte.wav", frames=800, width=1)
    riff_wav(lang / "ulaw16k.wav", mulaw_fmt(rate=16000), b"\xff" * 1600)
    write("prompts/en/orphan.wav", "")
    problems = Problems()
    catalog = load_prompts(tmp_path / "prompts", problems)
    catalog_file = lang / "catalog.yaml"
    expected = "expected 16-bit PCM (8 or 16 kHz) or 8 kHz mu-law"
    assert messages(problems) == [
        ("byte.wav", 1, f"recording byte.wav cannot be used: 8-bit PCM audio, {expected}"),
        ("cd.wav", 1, f"recording cd.wav cannot be used: sample rate 44100 Hz, {expected}"),
        ("float.wav", 1, f"recording float.wav cannot be used: IEEE float audio, {expected}"),
        (
            "garbage.wav",
            1,
            "recording garbage.wav cannot be used: not a WAV file (no RIFF/WAVE header)",
        ),
        (
            "orphan.wav",
            1,
            f"recording orphan.wav has no entry 'orphan' in {catalog_file}: add its text there "
            "(transcripts and the time analysis need it)",
        ),
        (
            "silent.wav",
            1,
            "recording silent.wav cannot be used: no audio (the data chunk is empty)",
        ),
        ("stereo.wav", 1, "recording stereo.wav cannot be used: 2 channels, expected mono"),
        (
            "ulaw16k.wav",
            1,
            "recording ulaw16k.wav cannot be used: mu-law at 16000 Hz, expected 8000 Hz",
        ),
        ("wide.wav", 1, f"recording wide.wav cannot be used: 24-bit PCM audio, {expected}"),
    ]
    stereo = catalog.get("en", "stereo")
    assert stereo is not None and stereo.recording is None  # the text is still there


def test_catalog_errors_point_at_their_line(write: Write, tmp_path: Path) -> None:
    write(
        "prompts/en/catalog.yaml",
        """
        voice: Joanna
        welcome: Hello.
        whisper: Language {language}, need {need}.
        welcome: Hello again.
        bad id: Hi.
        braces: Press {1} now.
        empty:
        nested: {txt: Hello}
        """,
    )
    write(
        "prompts/es/catalog.yaml",
        """
        voice: Polly.Joanna
        locale: en-US
        whisper: Idioma {language}.
        """,
    )
    write("prompts/fr/orphan.wav", "")
    write("prompts/EN_gb/catalog.yaml", "welcome: Hello.\n")
    problems = Problems()
    load_prompts(tmp_path / "prompts", problems)
    found = [
        (str(Path(p.pos.file).relative_to(tmp_path / "prompts")), p.pos.line, p.pos.col, p.message)
        for p in problems.sorted()
    ]
    assert found == [
        (
            "EN_gb",
            1,
            1,
            "'EN_gb' is not a language code the IVR knows (did you mean 'en'?): "
            "a prompt directory is named after its language",
        ),
        (
            "en/catalog.yaml",
            1,
            8,
            "'Joanna' is not a Twilio voice: write Polly.<Name>, Google.<locale>-<name>, "
            "man or woman",
        ),
        (
            "en/catalog.yaml",
            4,
            1,
            "'welcome' appears twice in the catalog (first at line 2); "
            "YAML would silently keep only the last one",
        ),
        ("en/catalog.yaml", 5, 1, "prompt id 'bad id' may hold only letters, digits, _ and -"),
        (
            "en/catalog.yaml",
            6,
            9,
            "prompt 'braces' has a brace that is not a placeholder: write {name} with letters, "
            "digits and _ only",
        ),
        ("en/catalog.yaml", 7, 7, "the text of prompt 'empty' must be text, not nothing"),
        ("en/catalog.yaml", 8, 1, "prompt 'nested' needs 'text'"),
        (
            "en/catalog.yaml",
            8,
            10,
            "unknown key 'txt' in prompt 'nested' (did you mean 'text'?)",
        ),
        (
            "es/catalog.yaml",
            1,
            8,
            "Polly.Joanna speaks en-US, not es-US: Twilio refuses the combination",
        ),
        ("es/catalog.yaml", 2, 9, "locale 'en-US' does not fit language es: write e.g. es-US"),
        (
            "es/catalog.yaml",
            3,
            1,
            "prompt 'whisper' uses {language} in es but {language}, {need} in en: every language "
            "must fill the same placeholders",
        ),
        (
            "fr/catalog.yaml",
            1,
            1,
            "missing: the fr prompts need catalog.yaml with the text of each prompt",
        ),
    ]


def test_the_real_catalogs_are_complete_and_clean() -> None:
    problems = Problems()
    catalog = load_prompts(REAL_PROMPTS, problems)
    assert problems.items == []
    assert catalog.languages() == ("en", "es")
    assert set(catalog.prompts["en"]) == set(catalog.prompts["es"])
    assert catalog.voices == {"en": "Polly.Joanna", "es": "Polly.Lupe"}
    assert catalog.locales == {"en": "en-US", "es": "es-US"}
    needed = (
        "hold_reassurance",
        "connecting",
        "sorry",
        "whisper",
        "whisper_declined",
        "backup_connecting",
    )
    for lang in ("en", "es"):
        for prompt_id in needed:
            assert catalog.get(lang, prompt_id) is not None, (lang, prompt_id)
        whisper = catalog.get(lang, "whisper")
        assert whisper is not None
        assert set(placeholders(whisper.text)) == {"language", "need", "region", "wait"}
        assert "911" in catalog.prompts[lang]["hold_reassurance"].text
    welcome = catalog.get("es", "welcome")
    assert welcome is not None
    assert "Línea 988 de Prevención del Suicidio y Crisis" in welcome.text


def test_a_prompt_may_switch_language_midway(tmp_path: Path, write: Write) -> None:
    write("prompts/en/catalog.yaml", """
        menu:
          - Press 1 for help.
          - {es: "Para español, oprima 2."}
        plain:
          - One part.
          - Another, same language.
        """)
    problems = Problems()
    catalog = load_prompts(tmp_path / "prompts", problems)
    assert not problems.items
    menu = catalog.get("en", "menu")
    assert menu is not None
    assert menu.segments == (("en", "Press 1 for help."), ("es", "Para español, oprima 2."))
    assert menu.text == "Press 1 for help. Para español, oprima 2."
    assert menu.seconds == estimate_seconds(menu.text)
    plain = catalog.get("en", "plain")
    assert plain is not None and plain.segments == ()


def test_a_mixed_prompt_part_must_name_one_language(tmp_path: Path, write: Write) -> None:
    write("prompts/en/catalog.yaml", """
        menu:
          - Press 1.
          - {es: Para español, oprima 2.}
        """)
    problems = Problems()
    load_prompts(tmp_path / "prompts", problems)
    assert [(line, "is text, or one language code" in m) for _, line, m in messages(problems)] \
        == [(3, True)]


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [(8000, 1, 2), (16000, 1, 2), (44100, 1, 2), (22050, 1, 2), (8000, 2, 2), (8000, 1, 1),
     (16000, 1, 1), (8000, 1, 3), (48000, 2, 2)],
)
def test_the_loader_refuses_exactly_the_recordings_the_server_cannot_load(
    write: Write, tmp_path: Path, rate: int, channels: int, width: int
) -> None:
    from ivr.speech.audio import load_prompt_wav
    from ivr.speech.errors import AudioFormatError

    write("prompts/en/catalog.yaml", "welcome: Hello there.\n")
    wav = pcm_wav(tmp_path / "prompts" / "en" / "welcome.wav", frames=rate // 4, rate=rate,
                  channels=channels, width=width)
    problems = Problems()
    load_prompts(tmp_path / "prompts", problems)
    try:
        load_prompt_wav(wav)
        served = True
    except AudioFormatError:
        served = False
    assert (not problems.errors) == served
    assert served == ((rate, channels, width) in {(8000, 1, 2), (16000, 1, 2)})
