"""Content files as bytes by path: read from the folders, from an uploaded
tar or zip, and written out again for loading.

A content version is a set of files named `flows/...` and `prompts/...`.
An upload is untrusted: every limit here is checked before the bytes it
guards are read (member counts and sizes from the archive's own index,
then the bytes actually read, since an index can lie), and a name that is
absolute, climbs out with `..`, or is a link or device is refused rather
than skipped, so the administrator learns why.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from ivr.errors import ContentError

Files = Mapping[str, bytes]

FOLDERS = ("flows", "prompts")
MAX_UPLOAD = 64 * 1024 * 1024  # bytes of archive accepted over HTTP
MAX_TOTAL = 256 * 1024 * 1024  # bytes once unpacked: a zip bomb stops here
MAX_FILE = 64 * 1024 * 1024  # one recording of several minutes is a few MB
MAX_FILES = 5000
_CHUNK = 1024 * 1024


class ArchiveError(ContentError):
    """An upload refused before anything was validated; the message says why."""


def read_folders(flows_dir: Path, prompts_dir: Path) -> dict[str, bytes]:
    """The content as on disk now (blocking: run it off the event loop)."""
    files: dict[str, bytes] = {}
    for name, folder in zip(FOLDERS, (flows_dir, prompts_dir), strict=True):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue  # editor swap files, .git: not content
            files[f"{name}/{rel.as_posix()}"] = path.read_bytes()
    return files


def write_files(files: Files, root: Path) -> tuple[Path, Path]:
    """Write the files under `root` (blocking); returns (flows dir, prompts dir)."""
    for name, data in files.items():
        target = root / safe_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root / "flows", root / "prompts"


def to_tar(files: Files) -> bytes:
    """A gzipped tar of the files: what `ivr publish --server` uploads."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def read_archive(data: bytes) -> dict[str, bytes]:
    """The content files of a tar (plain or compressed) or zip upload."""
    members = _zip_members(data) if zipfile.is_zipfile(io.BytesIO(data)) else _tar_members(data)
    files: dict[str, bytes] = {}
    total = 0
    try:
        for raw_name, data_of in members:
            if len(files) >= MAX_FILES:
                raise ArchiveError(f"the archive holds more than {MAX_FILES} files")
            name = safe_name(raw_name)
            body = data_of(min(MAX_FILE, MAX_TOTAL - total))
            total += len(body)
            files[name] = body
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveError(f"the archive is damaged ({exc})") from None
    return _strip_root(files)


def safe_name(name: str) -> str:
    """A member name as a relative POSIX path inside the content, or ArchiveError."""
    if "\\" in name or "\0" in name:
        raise ArchiveError(f"{name!r}: a file name with a backslash or NUL is not accepted")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveError(f"{name!r}: the path escapes its folder")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise ArchiveError(f"{name!r}: an empty file name")
    return "/".join(parts)


Member = tuple[str, "ReadUpTo"]


class ReadUpTo:
    """Reads a member's bytes, refusing one larger than the room left."""

    def __init__(self, name: str, stream: IO[bytes] | None) -> None:
        self.name = name
        self.stream = stream

    def __call__(self, room: int) -> bytes:
        if self.stream is None:
            raise ArchiveError(f"{self.name!r}: cannot be read")
        chunks: list[bytes] = []
        size = 0
        while chunk := self.stream.read(_CHUNK):
            size += len(chunk)
            if size > room:
                raise ArchiveError(_too_big(self.name))
            chunks.append(chunk)
        return b"".join(chunks)


def _too_big(name: str) -> str:
    return (f"{name!r}: too large (at most {MAX_FILE // 2**20} MiB a file, "
            f"{MAX_TOTAL // 2**20} MiB in all)")


def _tar_members(data: bytes) -> Iterator[Member]:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"the upload is neither a tar nor a zip archive ({exc})") from None
    with tar:
        for info in tar:  # one at a time: the index of a huge tar is never built whole
            if info.isdir():
                continue
            if not info.isfile():
                raise ArchiveError(f"{info.name!r}: links and devices are not accepted")
            if info.size > MAX_FILE:
                raise ArchiveError(_too_big(info.name))
            yield info.name, ReadUpTo(info.name, tar.extractfile(info))


def _zip_members(data: bytes) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"the zip archive is damaged ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_FILES:
            raise ArchiveError(f"the archive holds more than {MAX_FILES} files")
        if sum(i.file_size for i in infos) > MAX_TOTAL:
            raise ArchiveError(f"the archive unpacks to more than {MAX_TOTAL // 2**20} MiB")
        for info in infos:
            if info.is_dir():
                continue
            # Unix mode bits in the high word: a symlink stored as a file.
            if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                raise ArchiveError(f"{info.filename!r}: links and devices are not accepted")
            with archive.open(info) as stream:
                yield info.filename, ReadUpTo(info.filename, stream)


def _strip_root(files: dict[str, bytes]) -> dict[str, bytes]:
    """Accept `flows/ prompts/` at the top or inside one folder (`content/flows/...`)."""
    if not files:
        raise ArchiveError("the archive is empty")
    tops = {name.split("/", 1)[0] for name in files}
    if not tops <= set(FOLDERS) and len(tops) == 1 and all("/" in n for n in files):
        files = {name.split("/", 1)[1]: data for name, data in files.items()}
        tops = {name.split("/", 1)[0] for name in files}
    stray = sorted(n for n in files if n.split("/", 1)[0] not in FOLDERS or "/" not in n)
    if stray:
        raise ArchiveError(f"{stray[0]!r}: the archive must hold only the folders "
                           + " and ".join(f"{f}/" for f in FOLDERS))
    return files
