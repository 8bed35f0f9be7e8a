"""`ivr report`: the 988-style figures per state, as a plain table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ivr.storage.reports import StateFigures

_AGO = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}

HEADER = ("state", "calls", "in-state answer", "avg answer", "p90 answer", "abandoned",
          "rollover")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'24h', '7d', '2w', or an ISO date/time (UTC when no zone is given)."""
    now = now or datetime.now(UTC)
    m = _AGO.match(text.strip())
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since takes 24h, 7d, 2w or an ISO date, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def table(rows: Sequence[StateFigures]) -> str:
    lines = [HEADER]
    for r in rows:
        lines.append((
            r.state, str(r.calls), _pct(r.rate(r.answered_in_state)),
            _secs(r.average_answer_seconds), _secs(r.p90_answer_seconds),
            _pct(r.rate(r.abandoned)), _pct(r.rate(r.rolled_over)),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
        for line in lines
    )
