"""`ivr models fetch`: download official Vosk models, verified and unpacked safely.

A download lands in a temporary file next to its destination, is checked
against a pinned SHA-256, is unpacked into a temporary directory (refusing
absolute paths, ``..``, links and oversized archives), and only then is
moved into place with one rename. Whatever fails, nothing half-written is
left behind, and an existing model is never touched unless `force` is set.

alphacephei.com publishes no checksums. The pinned ones below are the
SHA-256 of the archives as served there (vosk-model-small-en-us-0.15.zip,
41,205,931 bytes; vosk-model-small-es-0.42.zip, 39,817,833 bytes), as
recorded independently by several public projects that verify these
downloads. A mismatch is reported and the download discarded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ivr.speech.errors import ModelFetchError

__all__ = [
    "DEFAULT_BASE_URL",
    "OFFICIAL_MODELS",
    "ModelFetchError",
    "ModelSpec",
    "fetch_model",
    "fetch_models",
]

DEFAULT_BASE_URL = "https://alphacephei.com/vosk/models/"
_CHUNK = 1 << 16
_MAX_UNPACKED = 4 << 30  # a small model unpacks to ~70 MB; this only stops zip bombs

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model: archive `<name>.zip` unpacking to directory `name`."""

    lang: str
    name: str
    sha256: str
    size: int | None = None

    def url(self, base_url: str = DEFAULT_BASE_URL) -> str:
        return urllib.parse.urljoin(base_url.rstrip("/") + "/", f"{self.name}.zip")


OFFICIAL_MODELS: Mapping[str, ModelSpec] = {
    "en": ModelSpec(
        "en",
        "vosk-model-small-en-us-0.15",
        "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
        41_205_931,
    ),
    "es": ModelSpec(
        "es",
        "vosk-model-small-es-0.42",
        "09b239888f633ef2f0b4e09736e3d9936acfd810bc65d53fad45261762c6511f",
        39_817_833,
    ),
}


def _download(
    url: str, into: Path, *, max_bytes: int | None, timeout: float, progress: Progress | None
) -> str:
    """Stream `url` into the file `into`; return the hex SHA-256 of what was read."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "ivr-models-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(into, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(_CHUNK):
                done += len(chunk)
                if max_bytes is not None and done > max_bytes:
                    raise ModelFetchError(f"{url}: larger than the expected {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise ModelFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelFetchError(f"{url}: download failed: {reason}") from exc
    return digest.hexdigest()


def _safe_member(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The archive member's relative path, or None for a directory entry.

    Raises for anything that could write outside the unpack directory.
    """
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelFetchError(f"archive member {info.filename!r} is a symbolic link")
    if (
        path.is_absolute()
        or ".." in path.parts
        or (path.parts and ":" in path.parts[0])
        or name.startswith("/")
    ):
        raise ModelFetchError(f"archive member {info.filename!r} escapes the target directory")
    if info.is_dir() or not path.parts:
        return None
    return path


def _unpack(archive: Path, into: Path, *, source: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if sum(m.file_size for m in members) > _MAX_UNPACKED:
                raise ModelFetchError(f"{source}: archive unpacks to more than {_MAX_UNPACKED} B")
            plan = [(m, _safe_member(m)) for m in members]  # validate all before writing
            root = into.resolve()
            for member, rel in plan:
                if rel is None:
                    continue
                target = into.joinpath(*rel.parts)
                if root not in target.resolve().parents:
                    raise ModelFetchError(f"archive member {member.filename!r} escapes the target")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{source}: not a valid zip archive: {exc}") from exc


def _model_root(unpacked: Path) -> Path:
    """The unpacked model: the single top-level directory, or the whole tree."""
    entries = list(unpacked.iterdir())
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
    if not ((root / "am" / "final.mdl").is_file() or (root / "final.mdl").is_file()):
        raise ModelFetchError("archive does not hold a Vosk model (no am/final.mdl)")
    return root


def fetch_model(
    url: str,
    sha256: str,
    dest_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    max_bytes: int | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download the zipped model at `url` into `dest_dir/<name>` and return that path.

    `name` defaults to the archive's file name without ".zip". An existing
    `dest_dir/<name>` is returned as it is unless `force` is set.
    """
    expected = sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ModelFetchError(f"{url}: {sha256!r} is not a SHA-256 hex digest")
    if name is None:
        name = PurePosixPath(urllib.parse.urlparse(url).path).name.removesuffix(".zip")
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ModelFetchError(f"{url}: cannot derive a model directory name")
    dest = Path(dest_dir)
    target = dest / name
    if target.exists() and not force:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=dest))
    try:
        archive = work / "download.zip"
        actual = _download(url, archive, max_bytes=max_bytes, timeout=timeout, progress=progress)
        if actual != expected:
            raise ModelFetchError(
                f"{url}: checksum mismatch (expected sha256 {expected}, got {actual});"
                " the download was discarded"
            )
        unpacked = work / "unpacked"
        unpacked.mkdir()
        _unpack(archive, unpacked, source=url)
        archive.unlink()
        root = _model_root(unpacked)
        if target.exists():  # force: swap the old model out, then drop it
            old = work / "previous"
            os.replace(target, old)
        os.replace(root, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch_models(
    langs: Iterable[str],
    dest_dir: str | os.PathLike[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    catalog: Mapping[str, ModelSpec] = OFFICIAL_MODELS,
    force: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, Path]:
    """Fetch the catalog's model for each language; return {lang: model directory}."""
    wanted = [lang.lower() for lang in langs]
    unknown = [lang for lang in wanted if lang not in catalog]
    if unknown:
        raise ModelFetchError(
            f"no known model for {', '.join(unknown)}; available: {', '.join(sorted(catalog))}"
        )
    fetched: dict[str, Path] = {}
    for lang in wanted:
        spec = catalog[lang]

        def report(done: int, total: int | None, lang: str = lang) -> None:
            if progress is not None:
                progress(lang, done, total)

        fetched[lang] = fetch_model(
            spec.url(base_url),
            spec.sha256,
            dest_dir,
            name=spec.name,
            max_bytes=spec.size,
            force=force,
            progress=report,
        )
    return fetched
