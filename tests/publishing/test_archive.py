"""Uploads of content: what is accepted, and every way an archive is refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from ivr.publishing import archive
from ivr.publishing.archive import ArchiveError, read_archive, read_folders, to_tar, write_files
from ivr.publishing.versions import content_hash
from tests.conftest import ROOT

FILES = {"flows/988.yaml": b"id: x\n", "prompts/en/catalog.yaml": b"a: b\n"}


def tar_of(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_tar_and_zip_give_the_same_files() -> None:
    assert read_archive(to_tar(FILES)) == FILES
    assert read_archive(tar_of(FILES, "w")) == FILES
    assert read_archive(zip_of(FILES)) == FILES


def test_one_enclosing_folder_is_accepted() -> None:
    wrapped = {f"content/{name}": data for name, data in FILES.items()}
    assert read_archive(zip_of(wrapped)) == FILES
    assert read_archive(tar_of({f"./{n}": d for n, d in FILES.items()})) == FILES


@pytest.mark.parametrize("name", ["../flows/x.yaml", "flows/../../etc/passwd", "/etc/passwd",
                                  "flows\\..\\x.yaml"])
def test_a_path_escaping_its_folder_is_refused(name: str) -> None:
    for packed in (tar_of({**FILES, name: b"x"}), zip_of({**FILES, name: b"x"})):
        with pytest.raises(ArchiveError, match=r"escapes its folder|backslash"):
            read_archive(packed)


def test_links_are_refused() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("flows/988.yaml")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(ArchiveError, match="links"):
        read_archive(out.getvalue())


def test_files_beside_the_two_folders_are_refused() -> None:
    with pytest.raises(ArchiveError, match="only the folders flows/ and prompts/"):
        read_archive(zip_of({**FILES, "notes.txt": b"x"}))


def test_what_is_not_an_archive_is_refused() -> None:
    with pytest.raises(ArchiveError, match="neither a tar nor a zip"):
        read_archive(b"flows: yes\n" * 10)


def test_a_zip_bomb_is_refused_by_its_unpacked_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_TOTAL", 1000)
    monkeypatch.setattr(archive, "MAX_FILE", 1000)
    bomb = zip_of({"flows/a.yaml": b"0" * 600, "flows/b.yaml": b"0" * 600})
    assert len(bomb) < 1000
    with pytest.raises(ArchiveError, match=r"more than|too large"):
        read_archive(bomb)


def test_a_tar_bomb_is_refused_by_the_bytes_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tar has no index read ahead: its total is bounded only by the bytes
    read so far (each member here is within MAX_FILE, together they are not)."""
    monkeypatch.setattr(archive, "MAX_TOTAL", 1000)
    monkeypatch.setattr(archive, "MAX_FILE", 1000)
    with pytest.raises(ArchiveError, match="too large"):
        read_archive(tar_of({"flows/a.yaml": b"0" * 600, "flows/b.yaml": b"0" * 600}))


def test_a_tar_member_larger_than_allowed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_FILE", 100)
    with pytest.raises(ArchiveError, match="too large"):
        read_archive(tar_of({"flows/a.yaml": b"0" * 101}))


def test_too_many_files_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_FILES", 3)
    many = {f"flows/{n}.yaml": b"x" for n in range(4)}
    for packed in (tar_of(many), zip_of(many)):
        with pytest.raises(ArchiveError, match="more than 3 files"):
            read_archive(packed)


def test_folders_round_trip_and_hash(tmp_path: Path) -> None:
    files = read_folders(ROOT / "flows", ROOT / "prompts")
    assert "flows/988.yaml" in files and "flows/routing.yaml" in files
    assert "prompts/en/catalog.yaml" in files
    flows, prompts = write_files(files, tmp_path / "copy")
    assert read_folders(flows, prompts) == files
    assert content_hash(read_archive(to_tar(files))) == content_hash(files)
    changed = {**files, "flows/988.yaml": files["flows/988.yaml"] + b"\n"}
    assert content_hash(changed) != content_hash(files)
    # A name and its bytes cannot trade places: lengths are hashed too.
    assert content_hash({"flows/a": b"bc"}) != content_hash({"flows/ab": b"c"})
