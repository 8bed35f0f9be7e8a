"""Hostile content for `ivr validate`: each case is a file:line:col error and exit 2.

Durations and counts have sane upper bounds (a 9999...s menu timeout or a
million retries is an author's mistake, not an OverflowError per call or
gigabytes of analysis); deep nesting, huge integers, lone surrogates and
bytes the YAML reader refuses are reported at their own position, never as
a traceback.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr.cli import main
from tests.conftest import ROOT

Edit = Callable[[str], str]


def replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)
    return edit


def append(extra: str) -> Edit:
    return lambda text: text + extra


DEEP = "[" * 500 + "]" * 500

# (case, edit of flows/988.yaml, words the positioned error must hold, its line
# as a marker found in the edited file)
CASES: list[tuple[str, Edit, str, str]] = [
    ("menu timeout of 9999...s", replace("timeout: 5s", "timeout: " + "9" * 400 + "s"),
     "timeout", "timeout: 999"),
    ("menu timeout of a day", replace("timeout: 5s", "timeout: 86400s"),
     "timeout", "timeout: 86400s"),
    ("a million retries", replace("retries: 1,", "retries: 1000000,"),
     "retries", "retries: 1000000"),
    ("retries of 5,000 digits", replace("retries: 1,", "retries: " + "7" * 5000 + ","),
     "retries", "retries: 777"),
    ("max_time_to_human of 9999...s",
     lambda t: re.sub(r"max_time_to_human: \S+", "max_time_to_human: " + "9" * 400 + "s", t,
                      count=1),
     "max_time_to_human", "max_time_to_human: 999"),
    ("YAML nested 500 deep", replace("timeout: 5s", "timeout: " + DEEP), "deep", DEEP[:20]),
    ("a lone surrogate", replace("say: welcome", 'say: "\\udc80"'), "surrogate", "udc80"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    return tmp_path


@pytest.mark.parametrize(("case", "edit", "words", "marker"), CASES, ids=[c[0] for c in CASES])
def test_hostile_flow_is_a_positioned_error(
    project: Path, capsys: pytest.CaptureFixture[str], case: str, edit: Edit, words: str,
    marker: str,
) -> None:
    flow = project / "flows" / "988.yaml"
    text = edit(flow.read_text())
    flow.write_text(text, encoding="utf-8")
    assert main(["validate", str(project)]) == 2
    out = capsys.readouterr().out
    line = next(n for n, written in enumerate(text.splitlines(), 1) if marker in written)
    hits = [o for o in out.splitlines() if o.startswith(f"{flow}:{line}:")]
    assert hits and any(words in h for h in hits), out[-2000:]
    assert "Traceback" not in out


@pytest.mark.parametrize(("case", "raw", "line", "col"), [
    ("a control character the YAML reader refuses", b"id: x\nstart: \x07a\n", 2, 8),
    ("bytes that are not UTF-8", b"id: x\nstart: a\nnodes: \xff\n", 3, 8),
])
def test_reader_errors_carry_their_own_position(
    project: Path, capsys: pytest.CaptureFixture[str], case: str, raw: bytes, line: int,
    col: int,
) -> None:
    flow = project / "flows" / "988.yaml"
    flow.write_bytes(raw)
    assert main(["validate", str(project)]) == 2
    out = capsys.readouterr().out
    assert f"{flow}:{line}:{col}:" in out, out
