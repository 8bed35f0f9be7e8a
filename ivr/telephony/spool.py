"""A small local spool for status callbacks the database could not take.

While PostgreSQL is away, a call's final status or a counselor leg's end
must not be lost: the callback is written here (one JSON file per callback,
fsync'd with its directory before we answer Twilio 204) and replayed into
the database once it answers again. Replaying goes through the same
handlers as a live callback, which are idempotent (a status already stored
changes nothing), so a file replayed twice, or by two instances sharing a
data directory, is harmless.

Bounded: at most MAX_ENTRIES files of at most MAX_ENTRY_BYTES each. A
callback that does not fit is answered 503, and Twilio retries it (the
connection overrides on its URL, overrides.py). All file work runs in a
thread, never on the event loop.

No caller's number is written: only the call's SID and the fields the
call record keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_ENTRIES = 10_000
MAX_ENTRY_BYTES = 4096
SUFFIX = ".json"


@dataclass(frozen=True)
class Spooled:
    """One callback kept: its kind ("status", "leg-status") and its fields."""

    kind: str
    fields: dict[str, Any]


Replayer = Callable[[Spooled], Awaitable[None]]


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count: int | None = None  # files on disk, counted once off the loop
        self._lock = asyncio.Lock()  # one replay at a time in this process

    async def put(self, entry: Spooled) -> bool:
        """Keep `entry` durably; False when it cannot be (full, too big, disk error)."""
        data = json.dumps({"kind": entry.kind, "fields": entry.fields}).encode()
        if len(data) > MAX_ENTRY_BYTES:
            return False
        try:
            return await asyncio.to_thread(self._write, data)
        except OSError as exc:
            log.error("could not spool a %s callback: %s", entry.kind, exc)
            return False

    def _write(self, data: bytes) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._count is None:
            self._count = len(self._names())
        if self._count >= MAX_ENTRIES:
            return False
        # Names sort in arrival order: replay keeps a call's statuses in order.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        tmp = self.directory / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / (name + SUFFIX))
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        self._count += 1
        return True

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def _read(self, name: str) -> Spooled | None:
        path = self.directory / name
        try:
            raw = json.loads(path.read_bytes())
            return Spooled(str(raw["kind"]), dict(raw["fields"]))
        except FileNotFoundError:
            return None  # another instance replayed it
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spooled callback %s is unreadable (%s): set aside", name, exc)
            self._set_aside(name)
            return None

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / name)
        if self._count:
            self._count -= 1

    def _set_aside(self, name: str) -> None:
        aside = self.directory / "rejected"
        aside.mkdir(exist_ok=True)
        try:
            os.replace(self.directory / name, aside / name)
        except FileNotFoundError:
            return
        if self._count:
            self._count -= 1

    async def pending(self) -> int:
        return len(await asyncio.to_thread(self._names))

    async def replay(self, handle: Replayer, database_up: Callable[[], Awaitable[bool]]) -> int:
        """Replay the spooled callbacks in arrival order; the number replayed.

        Stops at the first one that fails while the database is still away
        (the rest wait for the next pass); one that fails with the database
        up would fail for ever: it is set aside in rejected/ and logged.
        """
        async with self._lock:
            names = await asyncio.to_thread(self._names)
            done = 0
            for name in names:
                entry = await asyncio.to_thread(self._read, name)
                if entry is None:
                    continue
                try:
                    await handle(entry)
                except Exception:
                    if not await database_up():
                        return done
                    log.exception("spooled %s callback %s fails with the database up: "
                                  "set aside", entry.kind, name)
                    await asyncio.to_thread(self._set_aside, name)
                    continue
                await asyncio.to_thread(self._remove, name)
                done += 1
            if done:
                log.info("replayed %d spooled status callback(s)", done)
            return done
