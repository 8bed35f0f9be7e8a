"""A clock for the app under test: the wall clock, which a test may move ahead
(create_app(..., clock=...)): deadlines and the reconciliation's "a while
without news" come at once instead of after minutes of waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead
