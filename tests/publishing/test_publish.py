"""Publishing content versions into a real PostgreSQL: validated whole,
stored immutably, one active, announced; refusals change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from ivr.publishing import versions
from ivr.publishing.active import ActiveContent, ServeSettings, UnknownVersion, load
from ivr.publishing.archive import read_folders
from ivr.publishing.publish import (
    PublishConflict,
    PublishRefused,
    activate,
    list_versions,
    publish,
)
from ivr.storage.counselors import list_counselors, set_presence
from ivr.storage.database import open_pool
from tests.conftest import ROOT

BY = "test-token"
SHIPPED = read_folders(ROOT / "flows", ROOT / "prompts")


def edited(
    path: str, old: str, new: str, files: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    files = dict(files or SHIPPED)
    text = files[path].decode()
    assert old in text, old
    files[path] = text.replace(old, new, 1).encode()
    return files


# Key 1 puts the caller through to the crisis queue instead of the veterans line.
CHANGED = edited("flows/988.yaml", "transfer: {line: veterans,", "transfer: {queue: crisis,")


def bomb() -> bytes:
    lines = ["x0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    yield p
    await p.close()


@pytest.fixture
def how(tmp_path: Path) -> ServeSettings:
    return ServeSettings(public_url="http://127.0.0.1:9", caller_id="+15005550006",
                         backup_number=None, models={}, work_dir=tmp_path / "content")


async def test_publish_stores_the_version_whole_and_activates_it(
    pool: asyncpg.Pool, how: ServeSettings
) -> None:
    first = await publish(pool, SHIPPED, BY, how)
    assert first.version == versions.content_hash(SHIPPED) and first.created
    lifeline = first.worst_case["lifeline"]
    assert lifeline["to_transfer_seconds"] <= lifeline["max_time_to_human"] == 60
    assert {t["name"] for t in lifeline["targets"]} == {"crisis", "veterans"}
    assert await versions.files_of(pool, first.version) == SHIPPED

    second = await publish(pool, CHANGED, "someone-else", how)
    assert second.version != first.version
    listed = await list_versions(pool)
    assert [(v.version, v.published_by, v.active) for v in listed] == [
        (second.version, "someone-else", True), (first.version, BY, False)]

    again = await publish(pool, SHIPPED, BY, how)  # the same files: the same version
    assert again.version == first.version and not again.created
    assert (await versions.active(pool)) == versions.Active(first.version, 3)


async def test_published_versions_cannot_be_changed(pool: asyncpg.Pool, how: ServeSettings) -> None:
    result = await publish(pool, SHIPPED, BY, how)
    for sql in ("UPDATE content_files SET data = 'x' WHERE version = $1",
                "DELETE FROM content_versions WHERE version = $1",
                "UPDATE content_versions SET published_by = 'me' WHERE version = $1"):
        with pytest.raises(asyncpg.PostgresError, match="cannot be changed"):
            await pool.execute(sql, result.version)


@pytest.mark.parametrize(("files", "where", "says"), [
    (edited("flows/988.yaml", "next: spanish", "next: nowhere"), "flows/988.yaml",
     "nowhere"),
    (edited("prompts/es/catalog.yaml", "spanish_selected:", "spanish_chosen:"),
     "flows/988.yaml", "spanish_selected"),
    ({**SHIPPED, "flows/bomb.yaml": bomb()}, "flows/bomb.yaml", "alias bomb"),
    ({**SHIPPED, "flows/deep.yaml": b"a: " + b"[" * 50_000 + b"]" * 50_000},
     "flows/deep.yaml", "nested more than 64 deep"),
])
async def test_bad_content_is_refused_and_changes_nothing(
    pool: asyncpg.Pool, how: ServeSettings, files: dict[str, bytes], where: str, says: str
) -> None:
    good = await publish(pool, SHIPPED, BY, how)
    with pytest.raises(PublishRefused) as refused:
        await publish(pool, files, BY, how)
    problems = refused.value.problems
    assert any(p.pos.file == where and says in p.message for p in problems), problems
    assert all(not Path(p.pos.file).is_absolute() for p in problems)
    assert (await versions.active(pool)) == versions.Active(good.version, 1)
    assert [v.version for v in await list_versions(pool)] == [good.version]
    assert not (how.work_dir / versions.content_hash(files)).exists()


async def test_racing_publishes_one_wins_whole_the_other_conflicts(
    pool: asyncpg.Pool, how: ServeSettings
) -> None:
    results = await asyncio.gather(publish(pool, SHIPPED, "a", how),
                                   publish(pool, CHANGED, "b", how), return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, PublishConflict)]
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(conflicts) == 1 and len(won) == 1, results
    listed = await list_versions(pool)
    assert [(v.version, v.active) for v in listed] == [(won[0].version, True)]
    assert await versions.files_of(pool, won[0].version) in (SHIPPED, CHANGED)


async def test_activate_rolls_back_and_is_announced(
    pool: asyncpg.Pool, how: ServeSettings, dsn: str
) -> None:
    old = await publish(pool, SHIPPED, BY, how)
    await publish(pool, CHANGED, BY, how)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(versions.CONTENT_CHANNEL,
                                    lambda *args: heard.put_nowait(args[3]))
        info = await activate(pool, old.version, "rollback", how)
        assert info.active and info.version == old.version
        async with asyncio.timeout(10):
            assert versions.parse_announcement(await heard.get()) == versions.Active(
                old.version, 3)
    finally:
        await listener.close()
    with pytest.raises(UnknownVersion):
        await activate(pool, "0123456789abcdef", BY, how)
    assert (await versions.active(pool)) == versions.Active(old.version, 3)


async def test_counselors_keep_their_presence_through_a_publish(
    pool: asyncpg.Pool, how: ServeSettings
) -> None:
    await publish(pool, SHIPPED, BY, how)
    await set_presence(pool, "tx-ana", "available")
    await set_presence(pool, "tx-ben", "available")
    # Ben leaves, Zoe joins, Ana and her center are renamed (their ids stay).
    files = edited("flows/routing.yaml",
                   '      - {id: tx-ben, name: Ben, sip: "sip:ben@tx-crisis.example.org", '
                   'languages: [en]}\n',
                   '      - {id: tx-zoe, name: Zoe, phone: "+15125550199", languages: [en]}\n')
    files = edited("flows/routing.yaml", "name: Texas Crisis Center", "name: Austin Center",
                   files)
    files = edited("flows/routing.yaml", "name: Ana,", "name: Ana Maria,", files)
    await publish(pool, files, BY, how)
    people = {c.id: c for c in await list_counselors(pool)}
    assert people["tx-ana"].presence == "available" and not people["tx-ana"].removed
    assert people["tx-ana"].name == "Ana Maria"
    assert people["tx-ben"].removed and people["tx-ben"].presence == "offline"
    assert people["tx-zoe"].presence == "offline" and not people["tx-zoe"].removed


async def test_an_instance_loads_older_versions_on_demand_within_its_cache(
    pool: asyncpg.Pool, how: ServeSettings, tmp_path: Path
) -> None:
    third = edited("prompts/en/catalog.yaml", "We're here for you.", "We are here for you.")
    published = [await publish(pool, files, BY, how) for files in (SHIPPED, CHANGED, third)]
    # A new instance: its own work dir, nothing loaded but the active version.
    fresh = ServeSettings(**{**how.__dict__, "work_dir": tmp_path / "other"})
    loads: list[str] = []

    async def loader(version: str) -> object:
        loads.append(version)
        return await load(pool, version, fresh)

    active = ActiveContent(await load(pool, published[2].version, fresh), 3,
                           loader, cache_size=1)  # type: ignore[arg-type]
    old = await active.get(published[0].version)
    assert old.version == published[0].version
    assert old.content.flows.flows["lifeline"].nodes["main_menu"] is not None
    assert (await active.get(published[0].version)) is old  # cached: not loaded twice
    await active.get(published[1].version)
    assert active.cached == (published[1].version,)  # bounded: the oldest went
    await active.get(published[0].version)
    assert loads == [published[0].version, published[1].version, published[0].version]
    with pytest.raises(UnknownVersion):
        await active.get("0123456789abcdef")
    switched = await active.switch(versions.Active(published[1].version, 4))
    assert switched and active.current.version == published[1].version
    # An announcement heard late changes nothing.
    assert not await active.switch(versions.Active(published[0].version, 2))
    assert active.current.version == published[1].version
