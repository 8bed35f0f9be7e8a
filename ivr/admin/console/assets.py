"""The console's templates and static files, read once when the module loads.

Read at import (before any event loop runs) rather than per request: a
page render or a script download never touches the disk, and the files of
an installed package cannot change under a running server anyway.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

_ROOT = resources.files("ivr.admin.console")

_CONTENT_TYPES: Final = {".js": "text/javascript", ".css": "text/css"}


def _read(folder: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in (_ROOT / folder).iterdir()
        if entry.name.endswith(suffixes)
    }


TEMPLATES: Final = _read("templates", (".html",))
# name -> (content type, body): the vendored scripts and the style sheet.
STATIC: Final = {
    name: (_CONTENT_TYPES[suffix], text.encode())
    for name, text in _read("static", tuple(_CONTENT_TYPES)).items()
    for suffix in _CONTENT_TYPES if name.endswith(suffix)
}

