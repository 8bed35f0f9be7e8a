"""Who is on shift, as this instance last heard: whether lining a caller up
early is worth it.

Lining a caller up while the menu plays (preoffer.py) has a price: the line
row and its NOTIFY in the incoming call's statement, the dispatchers woken to
claim for them, the caller's leaving of the line at the menu answer. Measured
on the benchmark's call with nobody on shift (issue 12: py-spy and
pg_stat_statements), that was most of the menu answer's statements and of the
dispatcher's work, for an offer that could ring nobody. It is worth paying
only when someone who could be rung for the caller is on shift: any presence
but offline (a counselor in wrap-up or on a call may be free before the menu
ends).

A caller never depends on this view. A view that wrongly says nobody costs
an early offer. A menu answer that starts a transfer trusts the view's
nobody only to skip reading who is free (Transfers.availability): the
write of the call's step then checks that none of the transfer's counselors
is available (calls.advance_call's `none_free`), and when one is, the
answer is taken again over the read. It is kept fresh by the routing NOTIFY that a
counselor becoming available already sends (a presence set by hand, a
wrap-up ended): any NOTIFY makes the view unsure until it is read again, and
an unsure view answers yes, as does one not read yet. It is read again every
RESYNC_SECONDS in case a NOTIFY was lost, or a change sent none (going
offline or to wrap-up by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Final

import asyncpg

from ivr.storage.counselors import on_shift

log = logging.getLogger(__name__)

RESYNC_SECONDS: Final = 5.0
# Reads at most this often however many NOTIFYs come (each line-up sends one):
# the view only says yes meanwhile, as it did before it existed.
MIN_PAUSE_SECONDS: Final = 0.2
_READ_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class OnShift:
    def __init__(self, pool: asyncpg.Pool, resync: float = RESYNC_SECONDS) -> None:
        self.pool = pool
        self.resync = resync
        self._ids: frozenset[str] | None = None  # None: never read (or the read failed)
        self._unsure = True  # a change was heard since the last read began
        self._heard = asyncio.Event()

    def may_ring(self, counselors: Iterable[str]) -> bool:
        """Whether any of `counselors` may be on shift: yes when unsure; no only
        when the view, sure since the last change it heard, has none of them."""
        if self._unsure or self._ids is None:
            return True
        return not self._ids.isdisjoint(counselors)

    def sure_of(self, counselors: Iterable[str]) -> bool:
        """Whether the view has read, since the last change it heard, that all
        of `counselors` are on shift (for a test to wait on)."""
        return not self._unsure and self._ids is not None and self._ids.issuperset(counselors)

    def heard(self) -> None:
        """A NOTIFY said presence may have changed: unsure until read again."""
        self._unsure = True
        self._heard.set()

    async def read(self) -> None:
        # Sure from before the read's snapshot: a change committed after it
        # comes with a NOTIFY heard after this line, which makes it unsure again.
        self._unsure = False
        try:
            self._ids = await on_shift(self.pool)
        except BaseException:
            self._unsure = True
            raise

    async def run(self) -> None:
        """Read again at every change heard (at most every MIN_PAUSE_SECONDS) and
        every `resync` seconds, until cancelled (the first read is the caller's: refresh)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync):
                    await self._heard.wait()
            self._heard.clear()
            await self.refresh()
            await asyncio.sleep(MIN_PAUSE_SECONDS)

    async def refresh(self) -> None:
        """Read again; a failure (at start-up too) only leaves the view unsure
        (every caller lined up early) until the next read."""
        try:
            await self.read()
        except _READ_ERRORS as exc:
            log.warning("could not read who is on shift (%s): every caller may be "
                        "lined up early until it is read", exc)
