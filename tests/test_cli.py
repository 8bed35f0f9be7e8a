"""The `ivr` command: validate's exit codes and output, serve refusing bad flows."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.cli import main
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    return tmp_path


def test_validate_the_shipped_content(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT)]) == 0
    out = capsys.readouterr().out
    assert "flow 'lifeline' is valid" in out
    assert "worst case" in out


def test_validate_lists_every_problem_with_its_position(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = project / "flows" / "988.yaml"
    text = flow.read_text()
    text = text.replace("next: main_menu", "next: main_menuu", 1)
    text = text.replace("transfer: {queue: crisis, prompt: connecting}",
                        "transfer: {queue: crisiss, prompt: connecting}")
    flow.write_text(text)
    assert main(["validate", str(project)]) == 2
    out = capsys.readouterr().out.splitlines()
    lines = text.splitlines()
    menu_line = next(i for i, line in enumerate(lines, 1) if "main_menuu" in line)
    assert any(o.startswith(f"{flow}:{menu_line}:") and "main_menuu" in o for o in out), out
    queue_line = next(i for i, line in enumerate(lines, 1) if "crisiss" in line)
    assert any(o.startswith(f"{flow}:{queue_line}:") and "crisiss" in o for o in out), out


def test_validate_broken_yaml_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "flows" / "988.yaml").write_text("id: [unclosed\n")
    assert main(["validate", str(project / "flows")]) == 2
    assert "988.yaml:" in capsys.readouterr().out


def test_serve_refuses_invalid_flows(project: Path) -> None:
    (project / "flows" / "routing.yaml").write_text("national_backup: {}\n")
    env = {**os.environ, "IVR_DATA_DIR": str(project / "var"),
           "IVR_FLOWS_DIR": str(project / "flows"), "IVR_PROMPTS_DIR": str(project / "prompts")}
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr
    assert "routing.yaml:1:" in proc.stderr


def test_models_fetch_unknown_language_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "xx", "--dest", str(tmp_path)]) == 1
    assert "no known model for xx" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_prompts_render_makes_recordings_that_validate(project: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng (Debian package) is not installed")
    env = {**os.environ, "IVR_PROMPTS_DIR": str(project / "prompts")}
    proc = subprocess.run([sys.executable, "-m", "ivr.cli", "prompts", "render", "es"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    made = sorted(p.name for p in (project / "prompts" / "es").glob("*.wav"))
    assert "main_menu.wav" in made and "whisper.wav" not in made  # placeholders stay <Say>
    assert main(["validate", str(project)]) == 0


def test_call_on_invalid_content_names_the_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVR_FLOWS_DIR", str(tmp_path / "no-flows"))
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(ROOT / "prompts"))
    assert main(["call", "--silence"]) == 2
    err = capsys.readouterr().err
    assert "the content is not valid" in err and "no-flows" in err
    assert "Traceback" not in err


async def test_serving_moves_the_start_up_heap_out_of_the_collectors_reach() -> None:
    from ivr.cli import YOUNG_COLLECTION_THRESHOLD, settle_garbage_collector

    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    try:
        await settle_garbage_collector(object())
        # Everything alive now (this test's modules and objects included) is frozen.
        assert gc.get_freeze_count() > 1000
        # Young collections are rarer; the older generations keep their ratios.
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
