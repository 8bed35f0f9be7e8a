"""The callback spool: bounded, durable files replayed in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.telephony import spool as spool_module
from ivr.telephony.spool import MAX_ENTRY_BYTES, Spool, Spooled


async def _files(directory: Path) -> list[str]:
    def names() -> list[str]:
        return sorted(p.name for p in directory.glob("*.json"))
    return await asyncio.to_thread(names)


async def test_replay_keeps_arrival_order_and_stops_while_the_database_is_away(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    for n in range(3):
        assert await spool.put(Spooled("status", {"sid": f"CA{n}", "CallStatus": "completed"}))
    seen: list[str] = []
    up = False

    async def handle(entry: Spooled) -> None:
        if not up:
            raise OSError("connection refused")
        seen.append(entry.fields["sid"])

    async def database_up() -> bool:
        return up

    assert await spool.replay(handle, database_up) == 0  # down: all kept
    assert len(await _files(tmp_path / "spool")) == 3
    up = True
    assert await spool.replay(handle, database_up) == 3
    assert seen == ["CA0", "CA1", "CA2"]
    assert await _files(tmp_path / "spool") == []


async def test_one_that_fails_with_the_database_up_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert await spool.put(Spooled("nonsense", {}))
    assert await spool.put(Spooled("status", {"sid": "CA1"}))
    replayed: list[str] = []

    async def handle(entry: Spooled) -> None:
        if entry.kind != "status":
            raise ValueError("unknown kind")
        replayed.append(entry.fields["sid"])

    async def database_up() -> bool:
        return True

    assert await spool.replay(handle, database_up) == 1
    assert replayed == ["CA1"]
    assert len(await _files(tmp_path / "spool" / "rejected")) == 1


async def test_the_spool_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "MAX_ENTRIES", 2)
    spool = Spool(tmp_path / "spool")
    assert await spool.put(Spooled("status", {"sid": "CA1"}))
    assert await spool.put(Spooled("status", {"sid": "CA2"}))
    assert not await spool.put(Spooled("status", {"sid": "CA3"}))  # full
    assert not await spool.put(Spooled("status", {"sid": "x" * MAX_ENTRY_BYTES}))  # too big
    # A new process counts what an earlier one left.
    assert not await Spool(tmp_path / "spool").put(Spooled("status", {"sid": "CA4"}))
    assert len(await _files(tmp_path / "spool")) == 2
