"""The server's Prometheus metrics: one registry per application.

Each server instance counts what it did itself (calls ended, offers,
webhook latency, speech decisions, REST errors): Prometheus sums the
instances. The line-wide figures (callers waiting, the oldest wait,
counselors by presence) are not this process's: they are read from the
database at each scrape (`LineCollector`, filled by ivr.monitoring), so a
scrape of any one instance is right for the whole line.

Labels are bounded: outcomes, results and error classes are fixed lists,
endpoints are route names (never a raw path), queues and centers come from
the routing plan. No label ever carries a caller's number or a CallSid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ivr.routing.signals import Action, Outcome, RecordOutcome
from ivr.storage import linegauges
from ivr.storage.linegauges import LineSnapshot
from ivr.telephony.rest import AddressError, RestError, ServiceError

log = logging.getLogger(__name__)

# Where a call ended up. in_state/out_of_state: one of our counselors, the
# caller's state served by their center or not (an unknown state is not an
# in-state answer, as in `ivr report`); external_line: a dialled external
# center or special line (the veterans line); unreached: even the national
# backup never answered; failsafe: a webhook failed and the caller was sent
# to the backup line without the flow.
CallOutcome = Literal["in_state", "out_of_state", "external_line", "national_backup",
                      "abandoned", "unreached", "failsafe"]
CALL_OUTCOMES: Final[tuple[CallOutcome, ...]] = (
    "in_state", "out_of_state", "external_line", "national_backup", "abandoned", "unreached",
    "failsafe")
ANSWERED_OUTCOMES: Final = frozenset({"in_state", "out_of_state", "external_line",
                                      "national_backup"})
OFFER_RESULTS: Final = ("accepted", "declined", "missed", "failed", "canceled")
SPEECH_RESULTS: Final = ("word", "key", "no_input", "unrecognised", "hangup")
REST_ERROR_CLASSES: Final = ("address", "credentials", "unreachable", "rate_limited",
                             "server", "refused")

# Seconds. A webhook answers in milliseconds; a human answers in seconds to minutes.
WEBHOOK_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HUMAN_BUCKETS: Final = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
                        180.0, 300.0, 600.0)
DECISION_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class LineCollector(Collector):
    """Exposes the snapshot the scrape handler just read (None: the database
    did not answer, and only `ivr_line_gauges_up 0` is exposed)."""

    def __init__(self) -> None:
        self.snapshot: LineSnapshot | None = None

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily("ivr_line_gauges_up",
                               "1 when this scrape read the line-wide gauges from the database")
        up.add_metric([], 0.0 if snap is None else 1.0)
        yield up
        if snap is None:
            return
        waiting = GaugeMetricFamily("ivr_callers_waiting",
                                    "Callers waiting for a counselor (line-wide), by queue",
                                    labels=["queue"])
        oldest = GaugeMetricFamily("ivr_oldest_wait_seconds",
                                   "How long the longest-waiting caller has waited (line-wide), "
                                   "by queue", labels=["queue"])
        for queue in sorted(snap.waiting):
            waiting.add_metric([queue], float(snap.waiting[queue]))
            oldest.add_metric([queue], snap.oldest_wait.get(queue, 0.0))
        yield waiting
        yield oldest
        counselors = GaugeMetricFamily("ivr_counselors",
                                       "Counselors of the routing plan (line-wide), by center "
                                       "and presence", labels=["center", "presence"])
        for (center, presence), n in sorted(snap.counselors.items()):
            counselors.add_metric([center, presence], float(n))
        yield counselors


class Metrics:
    """The instruments of one application, in a registry of its own (several
    applications in one process, as in tests, never share a series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("ivr_calls", "Calls by where they ended up", ["outcome"],
                             registry=r)
        self.webhook_seconds = Histogram(
            "ivr_webhook_seconds", "Time to answer an HTTP request, by route",
            ["endpoint"], buckets=WEBHOOK_BUCKETS, registry=r)
        self._webhook_timers: dict[str, Histogram] = {}
        self.offers = Counter("ivr_offers", "Counselor offers by how they ended", ["result"],
                              registry=r)
        self.first_ring = Histogram(
            "ivr_time_to_first_ring_seconds",
            "From the start of the transfer to the first phone ringing for the caller",
            buckets=HUMAN_BUCKETS, registry=r)
        self.answer = Histogram(
            "ivr_time_to_answer_seconds",
            "From the start of the transfer to a human answering", buckets=HUMAN_BUCKETS,
            registry=r)
        self.speech = Counter("ivr_speech_decisions", "Listening menus' decisions by result",
                              ["result"], registry=r)
        self.speech_seconds = Histogram(
            "ivr_speech_decision_seconds",
            "From the end of the caller's speech (or the menu's timeout) to the decision",
            buckets=DECISION_BUCKETS, registry=r)
        self.rest_errors = Counter("ivr_rest_errors", "Twilio REST API errors by class",
                                   ["class"], registry=r)
        self.content = Info("ivr_content", "The content version this instance serves",
                            registry=r)
        self.line = LineCollector()
        r.register(self.line)
        # Every fixed label value exists from the start: a rate over a series
        # that appears only with its first increment misses that increment.
        for outcome in CALL_OUTCOMES:
            self.calls.labels(outcome)
        for result in OFFER_RESULTS:
            self.offers.labels(result)
        for result in SPEECH_RESULTS:
            self.speech.labels(result)
        for kind in REST_ERROR_CLASSES:
            self.rest_errors.labels(kind)

    # Calls -----------------------------------------------------------------------

    def failsafe(self) -> None:
        """A caller was sent to the backup line by a webhook's fail-safe."""
        self.calls.labels("failsafe").inc()

    async def call_ended(self, pool: asyncpg.Pool, call_sid: str, outcome: CallOutcome) -> None:
        """Count a call's outcome and observe its times to first ring and to answer,
        as the call row has them. Never raises: a failed read loses only the times."""
        self.calls.labels(outcome).inc()
        try:
            times = await linegauges.call_times(pool, call_sid)
        except Exception as exc:
            log.warning("call %s: times not read for the metrics (%s)", call_sid, exc)
            return
        if times is not None:
            self._observe(outcome, *times)

    def call_ended_as_read(self, outcome: CallOutcome, first_ring: float | None,
                           answer: float | None) -> None:
        """`call_ended` with the call's times already read (by the statement
        that ended the call: calls.record_end)."""
        self.calls.labels(outcome).inc()
        self._observe(outcome, first_ring, answer)

    def _observe(self, outcome: CallOutcome, first_ring: float | None,
                 answer: float | None) -> None:
        if first_ring is not None:
            self.first_ring.observe(max(first_ring, 0.0))
        if answer is not None and outcome in ANSWERED_OUTCOMES:
            self.answer.observe(max(answer, 0.0))

    async def counselor_answered(self, pool: asyncpg.Pool, call_sid: str,
                                 in_state: bool | None) -> None:
        """A counselor accepted the caller: their offer and the call's outcome."""
        self.offer_ended("accepted")
        await self.call_ended(pool, call_sid, "in_state" if in_state else "out_of_state")

    async def outcomes(self, pool: asyncpg.Pool, call_sid: str,
                       actions: Sequence[Action]) -> None:
        """The outcomes among a transfer's actions once carried out: a dial step
        answered, nobody reached, the caller gone. (A counselor's answer is
        counted where it is accepted: `call_ended` with in_state/out_of_state.)"""
        for action in actions:
            if isinstance(action, RecordOutcome):
                await self.call_ended(pool, call_sid, dial_outcome(action))

    # Offers, speech, REST ----------------------------------------------------------

    def offer_ended(self, result: str, count: int = 1) -> None:
        if count:
            self.offers.labels(result).inc(count)

    def speech_decided(self, decision: dict[str, Any] | None, seconds: float | None) -> None:
        self.speech.labels(speech_result(decision)).inc()
        if seconds is not None:
            self.speech_seconds.observe(seconds)

    def rest_error(self, exc: RestError) -> None:
        self.rest_errors.labels(rest_error_class(exc)).inc()

    def webhook_timer(self, endpoint: str) -> Histogram:
        """The request-time series of a route (prometheus_client's `labels` takes
        a lock and builds a key on every call; a route's series is kept)."""
        timer = self._webhook_timers.get(endpoint)
        if timer is None:
            timer = self._webhook_timers[endpoint] = self.webhook_seconds.labels(endpoint)
        return timer

    def serving(self, version: str) -> None:
        self.content.info({"version": version})


def dial_outcome(action: RecordOutcome) -> CallOutcome:
    if action.outcome is Outcome.ABANDONED:
        return "abandoned"
    if action.outcome is Outcome.UNREACHED:
        return "unreached"
    return "national_backup" if action.tier == "national" else "external_line"


def speech_result(decision: dict[str, Any] | None) -> str:
    """The result label of a stored listening decision (ivr.telephony.media)."""
    if decision is None:
        return "hangup"
    if "digits" in decision:
        return "key"
    if "word" in decision:
        return "word"
    return "unrecognised" if decision.get("unrecognised") else "no_input"


def rest_error_class(exc: RestError) -> str:
    if isinstance(exc, AddressError):
        return "address"
    if exc.status is None:
        return "unreachable"  # network, timeout: no HTTP answer at all
    if isinstance(exc, ServiceError) and exc.credentials:
        return "credentials"
    if exc.status == 429 or exc.code == 20429:
        return "rate_limited"
    return "server" if exc.status >= 500 else "refused"
