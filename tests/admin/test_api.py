"""The admin API through aiohttp's test client, mounted as the server mounts it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ivr import keys
from ivr.admin.api import create_admin_app
from ivr.storage import queue as q
from ivr.storage.database import open_pool
from ivr.storage.queue import Offer
from tests.storage.dispatching import make_offers
from tests.storage.test_queue import person, staff, wait

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await open_pool(dsn)
    await staff(p, person("ann", center="tx"), person("bob", center="tx"),
                person("eva", center="ny", languages=("es",)), available=["bob"])
    yield p
    await p.close()


@pytest.fixture
def withdrawn() -> list[Offer]:
    return []


@pytest.fixture
async def client(
    pool: asyncpg.Pool,
    withdrawn: list[Offer],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> Client:
    async def hang_up(offer: Offer) -> None:
        withdrawn.append(offer)

    root = web.Application()
    root[keys.pool] = pool
    root.add_subapp("/admin", create_admin_app(TOKEN, ["tx", "ny", "empty"], hang_up))
    return await aiohttp_client(root)


async def body(resp: Any) -> dict[str, Any]:
    assert resp.content_type == "application/json"
    data: dict[str, Any] = await resp.json()
    return data


# --- authentication ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN}x"},
])
async def test_requests_without_the_token_are_refused(
    client: Client, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/admin/counselors"), ("GET", "/admin/queue"),
                         ("PUT", "/admin/counselors/bob/presence"),
                         ("GET", "/admin/centers/nowhere"), ("GET", "/admin/nothing-here")]:
        resp = await client.request(method, path, headers=headers, json={"presence": "offline"})
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="ivr-admin"')
        assert "error" in await body(resp)
    # Nothing happened.
    resp = await client.get("/admin/counselors/bob", headers=AUTH)
    assert (await body(resp))["presence"] == "available"


async def test_empty_configured_token_refuses_everyone(pool: asyncpg.Pool, aiohttp_client: Any
                                                       ) -> None:
    root = web.Application()
    root[keys.pool] = pool
    root.add_subapp("/admin", create_admin_app("", ["tx"]))
    client = await aiohttp_client(root)
    resp = await client.get("/admin/counselors", headers={"Authorization": "Bearer "})
    assert resp.status == 401


# --- counselors ----------------------------------------------------------------------


async def test_list_and_get_counselors(client: Client) -> None:
    resp = await client.get("/admin/counselors", headers=AUTH)
    assert resp.status == 200
    listed = (await body(resp))["counselors"]
    assert [(c["id"], c["center"], c["presence"]) for c in listed] == [
        ("eva", "ny", "offline"), ("ann", "tx", "offline"), ("bob", "tx", "available")]
    resp = await client.get("/admin/counselors", params={"center": "ny"}, headers=AUTH)
    assert [c["id"] for c in (await body(resp))["counselors"]] == ["eva"]
    resp = await client.get("/admin/counselors/eva", headers=AUTH)
    eva = await body(resp)
    assert eva["languages"] == ["es"] and eva["address"] == "sip:eva@ny.example.org"
    assert eva["idle_since"] is None and eva["removed"] is False


async def test_unknown_counselor_or_center_is_404(client: Client) -> None:
    for path, field in [("/admin/counselors/nobody", "id"),
                        ("/admin/counselors?center=nowhere", "center"),
                        ("/admin/centers/nowhere", "id")]:
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404, path
        assert (await body(resp))["field"] == field
    resp = await client.put("/admin/counselors/nobody/presence", headers=AUTH,
                            json={"presence": "available"})
    assert resp.status == 404
    assert "nobody" in (await body(resp))["error"]


async def test_presence_round_trip(client: Client) -> None:
    resp = await client.put("/admin/counselors/ann/presence", headers=AUTH,
                            json={"presence": "available"})
    assert resp.status == 200
    ann = await body(resp)
    assert ann["presence"] == "available" and ann["idle_since"] is not None
    assert ann["withdrawn_offer"] is None
    resp = await client.get("/admin/counselors/ann", headers=AUTH)
    assert (await body(resp))["presence"] == "available"
    resp = await client.post("/admin/counselors/ann/presence", headers=AUTH,
                             json={"presence": "wrap-up"})
    assert (await body(resp))["presence"] == "wrap-up"


@pytest.mark.parametrize(("payload", "field"), [
    (b"{not json", "body"),
    (b"", "body"),
    (b"\xff\xfe", "body"),
    (b'["available"]', "body"),
    (b"{}", "presence"),
    (b'{"presence": 3}', "presence"),
    (b'{"presence": "asleep"}', "presence"),
    (b'{"presence": "on-call"}', "presence"),
    (b'{"presence": "offered"}', "presence"),
    (b'{"presence": "available", "until": "noon"}', "until"),
])
async def test_bad_presence_requests_name_the_field(
    client: Client, payload: bytes, field: str
) -> None:
    resp = await client.put("/admin/counselors/ann/presence", headers={
        **AUTH, "Content-Type": "application/json"}, data=payload)
    assert resp.status == 400
    error = await body(resp)
    assert error["field"] == field and error["error"]
    resp = await client.get("/admin/counselors/ann", headers=AUTH)
    assert (await body(resp))["presence"] == "offline"


async def test_presence_conflicts_and_withdrawals(
    client: Client, pool: asyncpg.Pool, withdrawn: list[Offer]
) -> None:
    await wait(pool, "CA-1", ["bob"])
    (offer,) = await make_offers(pool)
    resp = await client.put("/admin/counselors/bob/presence", headers=AUTH,
                            json={"presence": "offline"})
    assert resp.status == 200
    bob = await body(resp)
    assert bob["presence"] == "offline" and bob["withdrawn_offer"] == offer.id
    assert [(o.id, o.call_sid, o.state) for o in withdrawn] == [(offer.id, "CA-1", "canceled")]
    # 'available' works from any state but on-call: offered too (the offer is withdrawn).
    await client.put("/admin/counselors/bob/presence", headers=AUTH,
                     json={"presence": "available"})
    await wait(pool, "CA-2", ["bob"])
    (again,) = await make_offers(pool)
    resp = await client.put("/admin/counselors/bob/presence", headers=AUTH,
                            json={"presence": "available"})
    assert resp.status == 200
    bob = await body(resp)
    assert bob["presence"] == "available" and bob["withdrawn_offer"] == again.id
    await wait(pool, "CA-3", ["bob"])
    (again,) = await make_offers(pool)
    assert await q.offer_accepted(pool, again.id)
    resp = await client.put("/admin/counselors/bob/presence", headers=AUTH,
                            json={"presence": "available"})
    assert resp.status == 409
    assert (await body(resp))["field"] == "presence"


async def test_unknown_admin_path_and_method(client: Client) -> None:
    resp = await client.get("/admin/nothing-here", headers=AUTH)
    assert resp.status == 404 and "error" in await body(resp)
    resp = await client.delete("/admin/counselors/ann", headers=AUTH)
    assert resp.status == 405 and "error" in await body(resp)


# --- centers and the line ------------------------------------------------------------


async def test_center_view(client: Client) -> None:
    resp = await client.get("/admin/centers/tx", headers=AUTH)
    assert resp.status == 200
    tx = await body(resp)
    assert tx["id"] == "tx" and [c["id"] for c in tx["counselors"]] == ["ann", "bob"]
    assert tx["presence"] == {"available": 1, "offered": 0, "on-call": 0, "wrap-up": 0,
                              "offline": 1}
    resp = await client.get("/admin/centers/empty", headers=AUTH)
    assert (await body(resp))["counselors"] == []
    resp = await client.get("/admin/centers", headers=AUTH)
    centers = {c["id"]: c["presence"] for c in (await body(resp))["centers"]}
    assert set(centers) == {"tx", "ny", "empty"}
    assert centers["ny"]["offline"] == 1 and centers["empty"]["offline"] == 0


async def test_queue_view_has_no_phone_numbers(client: Client, pool: asyncpg.Pool) -> None:
    await wait(pool, "CA-old", ["bob"], ago=30)
    await wait(pool, "CA-es", ["eva"], language="es", ago=10)
    await make_offers(pool)
    resp = await client.get("/admin/queue", headers=AUTH)
    assert resp.status == 200
    data = await body(resp)
    callers = data["callers"]
    assert [(c["call_sid"], c["status"], c["language"]) for c in callers] == [
        ("CA-old", "offering", "en"), ("CA-es", "waiting", "es")]
    old = callers[0]
    assert old["offered_counselor"] == "bob" and old["caller_state"] == "TX"
    assert old["tier"]["index"] == 0 and old["tier"]["kind"] == "local"
    assert 29 <= old["waited_seconds"] < 60
    assert "+1" not in json.dumps(data)


async def test_no_pool_yet_is_503(aiohttp_client: Any) -> None:
    root = web.Application()
    root.add_subapp("/admin", create_admin_app(TOKEN, ["tx"]))
    client = await aiohttp_client(root)
    resp = await client.get("/admin/queue", headers=AUTH)
    assert resp.status == 503 and "error" in await body(resp)
