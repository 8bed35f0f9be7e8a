"""Running Graphviz's `dot` on a flow picture: the one place that touches it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ivr.errors import ConfigError

# By the output file's extension; "dot" is the source itself and needs no Graphviz.
FORMATS = ("svg", "png", "pdf", "dot")
DEBIAN_PACKAGE = "graphviz"


class RenderError(ConfigError):
    """Graphviz is missing (the machine's setup) or refused the graph."""


def output_format(path: Path) -> str | None:
    """The format a file name asks for, or None when it names none we write."""
    ext = path.suffix.lower().lstrip(".")
    return ext if ext in FORMATS else None


def graphviz_missing(fmt: str) -> str | None:
    """Why `fmt` cannot be written here, or None when it can."""
    if fmt == "dot" or shutil.which("dot") is not None:
        return None
    return (
        "Graphviz's `dot` command is not on PATH: install Graphviz "
        f"(Debian package {DEBIAN_PACKAGE}: apt-get install {DEBIAN_PACKAGE})"
    )


def render(source: str, out: Path) -> None:
    """Write the DOT `source` to `out` in the format its extension names."""
    fmt = output_format(out)
    if fmt is None:
        raise RenderError(f"{out}: unknown picture format; use one of " + ", ".join(FORMATS))
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        out.write_text(source, encoding="utf-8")
        return
    missing = graphviz_missing(fmt)
    if missing:
        raise RenderError(missing)
    proc = subprocess.run(
        ["dot", f"-T{fmt}", "-o", str(out)],
        input=source.encode("utf-8"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(f"dot failed on {out}: {proc.stderr.decode(errors='replace').strip()}")
