"""`ivr validate` and `ivr serve` judge content alike: one corpus, both commands.

Each case copies the shipped flows/ and prompts/ and breaks one thing, so the
corpus stays in step with the real content. Both commands must give the same
verdict with the same `file:line:col: message` lines: `ivr validate DIR`
through the CLI's main(), and the server's start-up through create_app (and,
for the broken cases, a real `ivr serve` process).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from ivr.app import create_app
from ivr.cli import main
from ivr.content import InvalidContent
from tests.conftest import ROOT, make_settings

Break = Callable[[Path], None]


def pcm_wav(path: Path, *, rate: int = 8000, channels: int = 1, width: int = 2,
            seconds: float = 0.5) -> None:
    frames = int(rate * seconds)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        # A quiet ramp rather than digital silence: any real recording would do.
        sample = bytes(range(width)) if width > 1 else b"\x80"
        out.writeframes(sample * channels * frames)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}: update this corpus"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def drop_entry(catalog: Path, prompt_id: str) -> None:
    """Remove a prompt (its key line and any indented continuation lines)."""
    lines = catalog.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{prompt_id}:"))
    end = start + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    catalog.write_text("".join(lines[:start] + lines[end:]), encoding="utf-8")


def append(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(old + text, encoding="utf-8")


def line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


# name -> (how to break the copy, where the error must point: (file, fragment of
# the line or None for line 1), and words of the message)
CASES: dict[str, tuple[Break, tuple[str, str | None], str] | None] = {
    "valid": None,
    "44.1 kHz recording": (
        lambda root: pcm_wav(root / "prompts/en/welcome.wav", rate=44100),
        ("prompts/en/welcome.wav", None), "sample rate 44100 Hz",
    ),
    "stereo recording": (
        lambda root: pcm_wav(root / "prompts/es/sorry.wav", channels=2),
        ("prompts/es/sorry.wav", None), "2 channels, expected mono",
    ),
    "8-bit recording": (
        lambda root: pcm_wav(root / "prompts/en/connecting.wav", width=1),
        ("prompts/en/connecting.wav", None), "8-bit PCM",
    ),
    "not a WAV named .wav": (
        lambda root: append(root / "prompts/en/sorry.wav", "ID3 an mp3 really"),
        ("prompts/en/sorry.wav", None), "not a WAV file",
    ),
    "Spanish catalog missing hold_reassurance": (
        lambda root: drop_entry(root / "prompts/es/catalog.yaml", "hold_reassurance"),
        ("prompts/es/catalog.yaml", None), "prompt 'hold_reassurance' is missing",
    ),
    "staff catalog missing whisper_gone": (
        lambda root: drop_entry(root / "prompts/en/catalog.yaml", "whisper_gone"),
        ("prompts/en/catalog.yaml", None), "prompt 'whisper_gone' is missing",
    ),
    "whisper with {nam}": (
        lambda root: edit(root / "prompts/en/catalog.yaml", "{need}", "{nam}"),
        ("prompts/en/catalog.yaml", "whisper:"), "{nam}, which the server never fills",
    ),
    "flow prompt with a placeholder": (
        lambda root: edit(root / "prompts/es/catalog.yaml", "Le atenderemos en español.",
                          "Le atenderemos en {language}."),
        ("prompts/es/catalog.yaml", "spanish_selected:"), "{language}, which nothing fills",
    ),
    "hold music without its recording": (
        lambda root: append(root / "prompts/es/catalog.yaml", "hold_music: Música suave\n"),
        ("prompts/es/catalog.yaml", "hold_music:"), "only ever played as a recording",
    ),
    "flow prompt missing in one language": (
        lambda root: drop_entry(root / "prompts/es/catalog.yaml", "spanish_selected"),
        ("flows/988.yaml", "say: spanish_selected"), "prompt 'spanish_selected' is missing in es",
    ),
    "bad routing plan": (
        lambda root: edit(root / "flows/routing.yaml", 'number: "+18005550100"',
                          'number: "18005550100x"'),
        ("flows/routing.yaml", "18005550100x"), "18005550100x",
    ),
    "national backup later than max_time_to_backup": (
        lambda root: edit(root / "flows/988.yaml", "max_time_to_backup: 150s",
                          "max_time_to_backup: 100s"),
        ("flows/988.yaml", "max_time_to_backup:"),
        "before the national backup is dialled, over max_time_to_backup (100 s)",
    ),
}


@pytest.fixture(autouse=True)
def no_speech_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both commands see the same (no) speech models, whatever this machine sets."""
    for name in list(os.environ):
        if name.startswith("IVR_VOSK_MODEL_"):
            monkeypatch.delenv(name)


def corpus_copy(tmp_path: Path, case: str) -> Path:
    root = tmp_path / re.sub(r"\W+", "-", case)
    shutil.copytree(ROOT / "flows", root / "flows")
    shutil.copytree(ROOT / "prompts", root / "prompts")
    spec = CASES[case]
    if spec is not None:
        spec[0](root)
    return root


def validate_verdict(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["validate", str(root)])
    out = capsys.readouterr().out.splitlines()
    # The problem lines only: a valid run also prints each flow's worst case
    # and, indented below it, each queue's and line's.
    return status, [line for line in out
                    if "is valid: worst case" not in line and not line.startswith(" ")]


def startup_verdict(
    root: Path, tmp_path: Path, models: dict[str, Path] | None = None
) -> tuple[bool, list[str]]:
    settings = dataclasses.replace(
        make_settings(tmp_path, None, unused_port()),
        flows_dir=root / "flows", prompts_dir=root / "prompts", vosk_models=models or {},
    )
    try:
        create_app(settings)
    except InvalidContent as exc:
        return False, [str(p) for p in exc.problems.sorted()]
    return True, []


@pytest.mark.parametrize("case", list(CASES))
def test_validate_and_startup_give_the_same_verdict(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = corpus_copy(tmp_path, case)
    status, validate_lines = validate_verdict(root, capsys)
    started, startup_lines = startup_verdict(root, tmp_path)
    assert (status == 0) == started, (case, validate_lines, startup_lines)
    spec = CASES[case]
    if spec is None:
        assert status == 0 and started
        assert not [line for line in validate_lines if ": warning: " not in line]
        return
    assert status == 2
    _, (file, fragment), words = spec
    errors = [line for line in validate_lines if ": warning: " not in line]
    path = root / file
    line = line_of(path, fragment) if fragment else 1
    pointing = [e for e in errors if e.startswith(f"{path}:{line}:") and words in e]
    assert pointing, (case, errors)
    # The same lines, warnings included, from both: one check judges for both.
    assert validate_lines == startup_lines


BROKEN = [case for case, spec in CASES.items() if spec is not None]


def test_serve_refuses_what_validate_refuses_with_the_same_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real `ivr serve` start-up on a few of the broken cases (a process each)."""
    for case in ("44.1 kHz recording", "Spanish catalog missing hold_reassurance",
                 "whisper with {nam}", "national backup later than max_time_to_backup"):
        root = corpus_copy(tmp_path, case)
        status, validate_lines = validate_verdict(root, capsys)
        env = {**os.environ, "IVR_DATA_DIR": str(tmp_path / "var"),
               "IVR_FLOWS_DIR": str(root / "flows"), "IVR_PROMPTS_DIR": str(root / "prompts")}
        proc = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "--port", "1"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert (status, proc.returncode) == (2, 2), (case, proc.stderr)
        refused = [line for line in proc.stderr.splitlines() if line.startswith(str(root))]
        assert refused == validate_lines, case


def test_a_speech_model_the_server_cannot_load_is_refused_by_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word list alone is not a Vosk model: the server refuses it before loading
    (no am/final.mdl), so validate, which reads only the word list, must too."""
    model = tmp_path / "not-a-model"
    (model / "graph").mkdir(parents=True)
    (model / "graph" / "words.txt").write_text(
        "".join(f"{word} {i}\n" for i, word in
                enumerate(["<unk>", "veteran", "military", "spanish", "español"])))
    monkeypatch.setenv("IVR_VOSK_MODEL_EN", str(model))
    root = corpus_copy(tmp_path, "valid")
    status, validate_lines = validate_verdict(root, capsys)
    started, startup_lines = startup_verdict(root, tmp_path, {"en": model})
    assert (status, started) == (2, False)
    assert f"{model}:1:1: IVR_VOSK_MODEL_EN={model}: not a Vosk model (no am/final.mdl)" \
        in validate_lines
    assert validate_lines == startup_lines


def test_a_recording_changed_after_the_check_is_refused_with_its_position(
    tmp_path: Path,
) -> None:
    """The server converts recordings after `check` judged them: a file replaced in
    between is refused like content (file:line:col, exit 2), not as a crash."""
    from ivr.app import prompt_audio
    from ivr.content import load_content

    root = corpus_copy(tmp_path, "valid")
    recording = root / "prompts/en/welcome.wav"
    pcm_wav(recording)
    content = load_content(root / "flows", root / "prompts")
    assert len(prompt_audio(content)[("en", "welcome")]) == 4000  # 0.5 s of 8 kHz mu-law
    pcm_wav(recording, channels=2)
    with pytest.raises(InvalidContent) as refused:
        prompt_audio(content)
    assert [str(p) for p in refused.value.problems.sorted()] == [
        f"{recording}:1:1: recording welcome.wav cannot be used: 2 channels, expected mono"
    ]
