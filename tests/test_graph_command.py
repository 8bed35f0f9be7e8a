"""`ivr graph`: which flows it draws, where it writes them, and how it fails."""

from __future__ import annotations

import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr.cli import main
from tests.conftest import ROOT
from tests.flow.test_graph import HOURS, SVG, needs_dot


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    return tmp_path


def svg_titles(path: Path) -> set[str]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return {t.text or "" for t in root.iter(f"{SVG}title")}


@needs_dot
def test_a_flow_file_to_the_named_svg(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pictures" / "flow.svg"
    assert main(["graph", str(project / "flows" / "988.yaml"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out)]
    assert {"greeting", "main_menu", "queue:crisis", "main_menu->spanish"} <= svg_titles(out)


@needs_dot
def test_every_flow_of_the_flows_dir_to_its_id_here(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (project / "flows" / "hours.yaml").write_text(textwrap.dedent(HOURS), encoding="utf-8")
    monkeypatch.setenv("IVR_FLOWS_DIR", str(project / "flows"))
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(project / "prompts"))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["graph"]) == 0
    assert capsys.readouterr().out.splitlines() == ["hours.svg", "lifeline.svg"]
    assert "open->night" in svg_titles(here / "hours.svg")
    assert "main_menu->main_menu" in svg_titles(here / "lifeline.svg")
    # One output file cannot hold two flows.
    assert main(["graph", "-o", "both.svg"]) == 2
    assert "name a FLOW_FILE" in capsys.readouterr().err
    assert not (here / "both.svg").exists()


def test_invalid_content_is_reported_as_validate_does(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = project / "flows" / "988.yaml"
    flow.write_text(flow.read_text().replace("next: main_menu", "next: main_menuu", 1))
    out = tmp_path / "x.dot"
    assert main(["graph", str(flow), "-o", str(out)]) == 2
    drawn = capsys.readouterr().out
    assert main(["validate", str(project)]) == 2
    assert drawn == capsys.readouterr().out
    assert any(line.startswith(f"{flow}:") and "main_menuu" in line
               for line in drawn.splitlines())
    assert not out.exists()


def test_without_graphviz_a_clear_error(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    flow = str(project / "flows" / "988.yaml")
    assert main(["graph", flow, "-o", str(tmp_path / "x.svg")]) == 1
    err = capsys.readouterr().err
    assert "dot" in err and "Debian package graphviz" in err
    assert not (tmp_path / "x.svg").exists()
    # The DOT source itself needs no Graphviz.
    assert main(["graph", flow, "-o", str(tmp_path / "x.dot")]) == 0
    assert (tmp_path / "x.dot").read_text().startswith('digraph "lifeline" {')


def test_an_unknown_picture_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(project / "flows" / "988.yaml"), "-o", "x.gif"]) == 2
    assert "svg, png, pdf, dot" in capsys.readouterr().err


def test_a_file_that_is_no_flow(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(project / "flows" / "routing.yaml"), "-o", "x.dot"]) == 2
    assert "is not a flow file" in capsys.readouterr().err
