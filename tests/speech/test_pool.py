"""The decoding pool's order: urgent jobs first, and queued jobs promoted to urgent."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from ivr.speech.pool import PriorityPool


@contextlib.contextmanager
def _blocked_pool() -> Iterator[tuple[PriorityPool, threading.Event, list[str]]]:
    """A one-thread pool busy until the event is set, and the order jobs ran in;
    released and shut down on the way out, whatever the test found."""
    pool = PriorityPool(1, "test-pool")
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(10)

    pool.submit(block)
    try:
        assert started.wait(10)
        yield pool, release, []
    finally:
        release.set()
        pool.shutdown()


def test_urgent_jobs_run_before_queued_ones() -> None:
    with _blocked_pool() as (pool, release, ran):
        first = pool.submit(ran.append, "streaming")
        urgent = pool.submit_first(ran.append, "final")
        release.set()
        first.result(10), urgent.result(10)
        assert ran == ["final", "streaming"]


def test_a_promoted_job_runs_first_and_once() -> None:
    with _blocked_pool() as (pool, release, ran):
        jobs = [pool.submit(ran.append, name) for name in ("a", "b", "c")]
        assert pool.promote(jobs[2])
        release.set()
        for job in jobs:
            job.result(10)
        pool.shutdown()  # every entry queued, the promoted job's second one too, is taken
        assert ran == ["c", "a", "b"]
        assert not pool.promote(jobs[0])  # done: nothing to promote


def test_cancelled_jobs_are_skipped_even_when_promoted() -> None:
    with _blocked_pool() as (pool, release, ran):
        job = pool.submit(ran.append, "cancelled")
        other = pool.submit(ran.append, "kept")
        assert pool.promote(job)
        assert job.cancel()
        release.set()
        other.result(10)
        pool.shutdown()
        assert ran == ["kept"]
