"""`ivr publish [--server URL]`: publish the content folders.

Without --server the command publishes straight into the database
(IVR_DATABASE_URL, else the embedded one in IVR_DATA_DIR), as any instance
would: running instances hear the announcement and switch. With --server it
uploads the folders as a tar to that server's `POST /admin/content/publish`
with IVR_ADMIN_TOKEN. Either way it prints `file:line:col: message` for each
problem and exits 2, or prints the new version and exits 0; 1 for anything
else (another publish under way, the server unreachable).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ivr.config import ADMIN_TOKEN_VAR, SECRET_FILES, ConfigError, Settings
from ivr.publishing.active import ServeSettings
from ivr.publishing.archive import read_folders, to_tar
from ivr.publishing.publish import PublishConflict, PublishRefused, publish_folders

EXIT_INVALID = 2
HTTP_TIMEOUT = 120.0  # seconds: validating a large content set takes a while


def run(server: str | None) -> int:
    settings = Settings.from_env()
    if server is None:
        return asyncio.run(_direct(settings))
    token = _admin_token(settings)
    # Read before the event loop runs: reading files blocks.
    upload = to_tar(read_folders(settings.flows_dir, settings.prompts_dir))
    return asyncio.run(_upload(server.rstrip("/"), token, upload, settings))


def _admin_token(settings: Settings) -> str:
    if settings.admin_token:
        return settings.admin_token
    stored = settings.data_dir / SECRET_FILES[ADMIN_TOKEN_VAR]
    if stored.is_file():  # what a development `ivr serve` generated
        return stored.read_text(encoding="utf-8").strip()
    raise ConfigError(f"{ADMIN_TOKEN_VAR} is not set: --server needs the admin token")


async def _direct(settings: Settings) -> int:
    from ivr.storage.database import DatabaseError, open_pool, start_embedded

    dsn = settings.database_url
    if dsn is None:
        dsn = await asyncio.to_thread(start_embedded, settings.data_dir)
    try:
        pool = await open_pool(dsn, min_size=1, max_size=2)
    except DatabaseError as exc:
        print(f"ivr publish: {exc}", file=sys.stderr)
        return 1
    how = ServeSettings(public_url=settings.public_url, caller_id=settings.caller_id,
                        backup_number=settings.backup_number, models=dict(settings.vosk_models),
                        work_dir=settings.data_dir / "content")
    try:
        result = await publish_folders(pool, settings.flows_dir, settings.prompts_dir,
                                       f"ivr publish ({getpass.getuser()})", how)
    except PublishRefused as exc:
        for p in exc.problems:
            print(f"{_on_disk(p.pos.file, settings)}:{p.pos.line}:{p.pos.col}: {p.message}")
        return EXIT_INVALID
    except PublishConflict as exc:
        print(f"ivr publish: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    print(result.version)
    return 0


def _on_disk(name: str, settings: Settings) -> Path:
    """A content file name (`flows/988.yaml`) as the path of the file it came
    from, so an editor can jump to the problem."""
    folders = {"flows": settings.flows_dir, "prompts": settings.prompts_dir}
    top, _, rest = name.partition("/")
    return folders[top] / rest if top in folders and rest else Path(name)


async def _upload(server: str, token: str, upload: bytes, settings: Settings) -> int:
    url = f"{server}/admin/content/publish"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/gzip"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT)) as http,
            http.post(url, data=upload, headers=headers) as resp,
        ):
            status = resp.status
            body: Any = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"ivr publish: {url}: {exc}", file=sys.stderr)
        return 1
    if status == 422 and isinstance(body, dict):
        for p in body.get("problems", []):
            where = _on_disk(str(p["file"]), settings)
            print(f"{where}:{p['line']}:{p['column']}: {p['message']}")
        return EXIT_INVALID
    if status != 200 or not isinstance(body, dict) or "version" not in body:
        error = body.get("error") if isinstance(body, dict) else body
        print(f"ivr publish: {url} answered {status}: {error}", file=sys.stderr)
        return 1
    print(body["version"])
    return 0
