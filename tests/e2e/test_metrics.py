"""GET /metrics after whole calls: each outcome moves its own counter by one.

The exposition is read over HTTP from the running server and parsed with
prometheus_client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from ivr import keys
from ivr.config import Settings
from ivr.metrics import CALL_OUTCOMES, OFFER_RESULTS
from ivr.sim import (
    CallScript,
    MediaStreams,
    NoAnswer,
    Press,
    Silence,
    Speak,
    StreamSettings,
    TwilioWorld,
    simulate_call,
)
from ivr.sim.config import SimConfig
from ivr.sim.script import DialOutcome
from tests.conftest import AUTH_TOKEN
from tests.helpers import call_params, new_sid, parse_twiml, post_signed, staff_all

TX_CALLER = "+15125550123"
TX_ENGLISH = ("+15125550101", "sip:ben@tx-crisis.example.org")
NOBODY_LOCAL = {t: NoAnswer() for t in (*TX_ENGLISH, "+15125550103")}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(base_url: str, token: str | None = None) -> tuple[Samples, str]:
    """Every sample of the exposition, by (name, labels), and the text itself."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(base_url + "/metrics",
                                                   headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def outcomes(before: Samples, after: Samples) -> dict[str, float]:
    """How much each call outcome moved, zeros left out."""
    moved = {o: value(after, "ivr_calls_total", outcome=o)
             - value(before, "ivr_calls_total", outcome=o) for o in CALL_OUTCOMES}
    return {o: n for o, n in moved.items() if n}


async def served_version(base: str) -> str:
    """The content version the server says it serves (GET /healthz)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as resp:
        return str((await resp.json())["content_version"])


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def offers(before: Samples, after: Samples) -> Mapping[str, float]:
    return {r: moved(before, after, "ivr_offers_total", result=r) for r in OFFER_RESULTS}


async def test_answered_calls_counted_by_outcome_with_their_times(
    sim: SimConfig, settings: Settings, world: TwilioWorld, server: TestServer
) -> None:
    base = settings.public_url
    before, _ = await scrape(base)
    warm = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),)),
                               world=world)
    veteran = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Press("1"),)),
                                  world=world)
    assert warm.reached_human and veteran.reached_human, warm.format() + veteran.format()
    after, text = await scrape(base)

    # A Texan answered by a Texas counselor; the veterans line is an external line.
    assert outcomes(before, after) == {"in_state": 1, "external_line": 1}
    assert offers(before, after)["accepted"] == 1
    for histogram in ("ivr_time_to_answer_seconds", "ivr_time_to_first_ring_seconds"):
        assert moved(before, after, histogram + "_count") == 2, histogram
    assert moved(before, after, "ivr_time_to_answer_seconds_sum") > 0
    # Each call's time to its first ring, as the call rows have it. A counselor
    # rung while the menu still played (preoffer.py) rang before the transfer
    # began: 0 s, not a negative time. Whether that early ring lands before the
    # menu's end depends on the moment, so the sum is held to the rows, exactly.
    rows = await server.app[keys.pool].fetch(
        "SELECT first_ring_at, transfer_started_at FROM calls WHERE call_sid = ANY($1)",
        [warm.call_sid, veteran.call_sid])
    assert len(rows) == 2 and all(r["first_ring_at"] is not None for r in rows)
    rung = sum(max((r["first_ring_at"] - r["transfer_started_at"]).total_seconds(), 0.0)
               for r in rows)
    assert moved(before, after, "ivr_time_to_first_ring_seconds_sum") == pytest.approx(
        rung, abs=1e-6)
    assert moved(before, after, "ivr_webhook_seconds_count", endpoint="/twilio/voice") == 2
    assert moved(before, after, "ivr_webhook_seconds_count", endpoint="/twilio/whisper") == 1
    # Endpoints are route patterns: never a query string or a made-up path.
    endpoints = {dict(labels)["endpoint"] for name, labels in after
                 if name == "ivr_webhook_seconds_count"}
    assert all(e.startswith("/") and "?" not in e for e in endpoints), endpoints
    assert "/twilio/dial" in endpoints and "/twilio/gather" in endpoints
    [version] = [dict(labels)["version"] for name, labels in after if name == "ivr_content_info"]
    assert version == await served_version(base)
    for form in (TX_CALLER, TX_CALLER[1:], TX_CALLER[2:], "5125550123"):
        assert form not in text
    assert warm.call_sid not in text


@pytest.mark.counselors(counselors=NOBODY_LOCAL)
async def test_national_backup_and_unanswered_offers(
    sim: SimConfig, settings: Settings, world: TwilioWorld
) -> None:
    before, _ = await scrape(settings.public_url)
    script = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=(DialOutcome("busy"), DialOutcome("answer")))
    t = await simulate_call(sim, script, world=world)
    assert t.reached_human, t.format()
    await world.wait_idle(10)
    after, _ = await scrape(settings.public_url)
    assert outcomes(before, after) == {"national_backup": 1}
    ended = offers(before, after)
    # Both local English counselors were rung; neither accepted.
    assert ended["accepted"] == 0
    assert sum(ended.values()) == len(world.legs) == 2, (ended, world.legs)


@pytest.mark.counselors(counselors=NOBODY_LOCAL)
async def test_nobody_reached_and_caller_gone_are_their_own_outcomes(
    sim: SimConfig, settings: Settings, world: TwilioWorld
) -> None:
    before, _ = await scrape(settings.public_url)
    nobody = CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                        dial_outcomes=tuple(DialOutcome("no-answer") for _ in range(10)))
    t = await simulate_call(sim, nobody, world=world)
    assert not t.reached_human
    gone = await simulate_call(sim, CallScript(from_number=TX_CALLER, inputs=(Silence(),),
                                               hangup_after=27.0), world=world)
    assert not gone.reached_human
    await world.wait_idle(30)
    after, _ = await scrape(settings.public_url)
    assert outcomes(before, after) == {"unreached": 1, "abandoned": 1}
    # Only answers are times to answer.
    assert moved(before, after, "ivr_time_to_answer_seconds_count") == 0


async def test_a_failed_webhook_and_the_fallback_count_a_failsafe(
    server: TestServer, settings: Settings
) -> None:
    before, _ = await scrape(settings.public_url)
    async with aiohttp.ClientSession() as s:
        # A menu answer for a call nobody knows: the handler fails, the caller
        # goes to the backup line.
        status, body = await post_signed(s, settings.public_url + "/twilio/gather?seq=1",
                                         call_params(new_sid(), CallStatus="in-progress"))
    assert status == 200
    assert [child.tag for child in parse_twiml(body)] == ["Dial"]
    after, _ = await scrape(settings.public_url)
    assert outcomes(before, after) == {"failsafe": 1}
    # The fallback URL answers the same fail-safe: Twilio's fallback, or our
    # rescue of a caller holding while the database is down.
    async with aiohttp.ClientSession() as s, s.post(settings.public_url + "/twilio/fallback",
                                                    data=call_params(new_sid())) as resp:
        assert resp.status == 200
    later, _ = await scrape(settings.public_url)
    assert outcomes(after, later) == {"failsafe": 1}


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox (Debian packages) make the caller's speech")
async def test_speech_decisions_counted_with_their_latency(
    speech_server: TestServer, settings: Settings, world: TwilioWorld
) -> None:
    await staff_all(speech_server)
    sim = SimConfig(server_url=settings.public_url, auth_token=AUTH_TOKEN,
                    account_sid=settings.account_sid)
    before, _ = await scrape(settings.public_url)
    media = MediaStreams(StreamSettings(speed=10))
    script = CallScript(from_number=TX_CALLER, inputs=(Speak("스페인어", language="ko"),))
    t = await simulate_call(sim, script, world=world, handlers=world.handlers(media=media))
    assert t.reached_human, t.format()
    after, _ = await scrape(settings.public_url)
    assert moved(before, after, "ivr_speech_decisions_total", result="word") == 1
    assert moved(before, after, "ivr_speech_decision_seconds_count") == 1
    assert outcomes(before, after) == {"in_state": 1}
