"""IVR_LOG_FORMAT=json across a publish: a call's lines carry the content
version the call started on, not the one the instance serves new calls."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from ivr.config import Settings
from ivr.publishing.archive import to_tar
from ivr.publishing.versions import content_hash
from tests.helpers import call_params, new_sid, parse_twiml, post_signed
from tests.publishing.test_publish import CHANGED, SHIPPED


def about(out: io.StringIO, sid: str, words: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    return [e for e in entries if sid in e["event"] and words in e["event"]]


async def test_a_call_started_before_a_publish_logs_its_own_version_after_it(
    server: TestServer, settings: Settings, json_logs: io.StringIO
) -> None:
    base = settings.public_url
    old, new = content_hash(SHIPPED), content_hash(CHANGED)
    earlier = new_sid()
    async with aiohttp.ClientSession() as http:
        status, body = await post_signed(http, f"{base}/twilio/voice", call_params(earlier))
        assert status == 200 and parse_twiml(body).find("Gather") is not None, body
        [started] = about(json_logs, earlier, "started flow")
        assert started["content_version"] == old

        async with http.post(f"{base}/admin/content/publish", data=to_tar(CHANGED),
                             headers={"Authorization": f"Bearer {settings.admin_token}"}
                             ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["version"] == new

        # A repeated menu answer (a Twilio retry of a step already past) is
        # answered from the row, and logged as the call's, on its version.
        stale = call_params(earlier, CallStatus="in-progress", Digits="1")
        status, _ = await post_signed(http, f"{base}/twilio/gather?seq=0", stale)
        assert status == 200
        [replayed] = about(json_logs, earlier, "callback replayed")
        assert (replayed["call_sid"], replayed["content_version"]) == (earlier, old)

        later = new_sid()
        status, _ = await post_signed(http, f"{base}/twilio/voice", call_params(later))
        assert status == 200
        [started] = about(json_logs, later, "started flow")
        assert started["content_version"] == new
