"""Fixtures of the storage tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from ivr.content import Content
from ivr.telephony.transfer import Transfers
from tests.storage import dispatching


@pytest.fixture
async def transfers_on(content: Content) -> AsyncIterator[Callable[[asyncpg.Pool], Transfers]]:
    """Dispatchers of their own (dispatching.transfers_on), closed afterwards."""
    made: list[Transfers] = []

    def make(pool: asyncpg.Pool) -> Transfers:
        made.append(dispatching.transfers_on(pool, content))
        return made[-1]

    yield make
    for transfers in made:
        await transfers.rest.close()
