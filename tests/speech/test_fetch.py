"""Model downloads from a local HTTP server: checksum, safe unzip, atomic placement."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ivr.speech.fetch import (
    DEFAULT_BASE_URL,
    OFFICIAL_MODELS,
    ModelFetchError,
    ModelSpec,
    fetch_model,
    fetch_models,
)

MODEL_FILES = {
    "am/final.mdl": b"acoustic model bytes",
    "conf/model.conf": b"--beam=10.0\n",
    "graph/Gr.fst": b"grammar",
    "graph/HCLr.fst": b"lexicon",
    "README": b"tiny test model",
}


def build_zip(entries: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def model_zip(top: str = "vosk-model-tiny-0.1") -> bytes:
    return build_zip({f"{top}/{name}": data for name, data in MODEL_FILES.items()})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: list[str] = []
        server_self = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                server_self.hits.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        self.httpd.serve_forever(poll_interval=0.02)  # quick to stop between tests

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def publish(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return self.base_url + name


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "www"
    root.mkdir()
    running = Server(root)
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()
    running.thread.join()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_fetch_unpacks_model_into_place(server: Server, dest: Path) -> None:
    data = model_zip()
    url = server.publish("vosk-model-tiny-0.1.zip", data)
    seen: list[tuple[int, int | None]] = []
    path = fetch_model(
        url, sha(data), dest, progress=lambda done, total: seen.append((done, total))
    )
    assert path == dest / "vosk-model-tiny-0.1"
    for name, content in MODEL_FILES.items():
        assert (path / name).read_bytes() == content
    assert [p.name for p in dest.iterdir()] == ["vosk-model-tiny-0.1"]  # no temp files left
    assert seen[-1] == (len(data), len(data))


def test_checksum_mismatch_is_rejected_and_leaves_nothing(server: Server, dest: Path) -> None:
    data = model_zip()
    url = server.publish("vosk-model-tiny-0.1.zip", data)
    wrong = sha(data + b"tampered")
    with pytest.raises(ModelFetchError, match=f"checksum mismatch.*expected sha256 {wrong}"):
        fetch_model(url, wrong, dest)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize(
    "entries",
    [
        {"../evil.txt": b"x", "m/am/final.mdl": b"m"},
        {"/abs/evil.txt": b"x", "m/am/final.mdl": b"m"},
        {"m/am/../../../evil.txt": b"x", "m/am/final.mdl": b"m"},
    ],
)
def test_path_traversal_is_refused(
    server: Server, dest: Path, tmp_path: Path, entries: dict[str, bytes]
) -> None:
    data = build_zip(entries)
    url = server.publish("evil.zip", data)
    with pytest.raises(ModelFetchError, match="escapes"):
        fetch_model(url, sha(data), dest)
    assert list(dest.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_symlink_members_are_refused(server: Server, dest: Path) -> None:
    data = build_zip({"m/am/final.mdl": b"m"}, links={"m/graph": "/etc"})
    url = server.publish("links.zip", data)
    with pytest.raises(ModelFetchError, match="symbolic link"):
        fetch_model(url, sha(data), dest)
    assert list(dest.iterdir()) == []


def test_archive_without_a_model_is_refused(server: Server, dest: Path) -> None:
    data = build_zip({"photos/cat.jpg": b"meow"})
    url = server.publish("photos.zip", data)
    with pytest.raises(ModelFetchError, match="does not hold a Vosk model"):
        fetch_model(url, sha(data), dest)
    assert list(dest.iterdir()) == []


def test_http_errors_and_size_limit(server: Server, dest: Path) -> None:
    with pytest.raises(ModelFetchError, match="HTTP 404"):
        fetch_model(server.base_url + "missing.zip", "0" * 64, dest)
    data = model_zip()
    url = server.publish("big.zip", data)
    with pytest.raises(ModelFetchError, match="larger than"):
        fetch_model(url, sha(data), dest, max_bytes=len(data) - 1)
    with pytest.raises(ModelFetchError, match="not a SHA-256"):
        fetch_model(url, "abc", dest)
    assert list(dest.iterdir()) == []


def test_existing_model_is_kept_unless_forced(server: Server, dest: Path) -> None:
    first = model_zip()
    url = server.publish("vosk-model-tiny-0.1.zip", first)
    path = fetch_model(url, sha(first), dest)
    (path / "local-note").write_text("kept")
    assert fetch_model(url, sha(first), dest) == path
    assert len(server.hits) == 1  # not downloaded again
    assert (path / "local-note").exists()
    assert fetch_model(url, sha(first), dest, force=True) == path
    assert not (path / "local-note").exists()  # replaced by a fresh copy
    assert (path / "am" / "final.mdl").read_bytes() == MODEL_FILES["am/final.mdl"]
    assert [p.name for p in dest.iterdir()] == ["vosk-model-tiny-0.1"]


def test_fetch_models_by_language(server: Server, dest: Path) -> None:
    data = model_zip("vosk-model-small-xx-0.1")
    server.publish("vosk-model-small-xx-0.1.zip", data)
    catalog = {"xx": ModelSpec("xx", "vosk-model-small-xx-0.1", sha(data), len(data))}
    done = fetch_models(["XX"], dest, base_url=server.base_url, catalog=catalog)
    assert done == {"xx": dest / "vosk-model-small-xx-0.1"}
    assert server.hits == ["/vosk-model-small-xx-0.1.zip"]
    with pytest.raises(ModelFetchError, match="no known model for fr; available: xx"):
        fetch_models(["fr"], dest, base_url=server.base_url, catalog=catalog)


def test_official_table() -> None:
    assert set(OFFICIAL_MODELS) == {"en", "es"}
    assert OFFICIAL_MODELS["en"].url() == (
        "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip"
    )
    assert OFFICIAL_MODELS["es"].url(DEFAULT_BASE_URL) == (
        "https://alphacephei.com/vosk/models/vosk-model-small-es-0.42.zip"
    )
    for spec in OFFICIAL_MODELS.values():
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        assert spec.size is not None and 30_000_000 < spec.size < 60_000_000
