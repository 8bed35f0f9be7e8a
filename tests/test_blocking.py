"""The suite fails any blocking call our code makes on a running event loop."""

from __future__ import annotations

import asyncio

import pytest
from blockbuster import BlockingError

from ivr.storage.migrate import available


async def test_a_blocking_call_from_our_code_on_the_loop_fails() -> None:
    with pytest.raises(BlockingError):
        available()  # reads the migration files: fine in a thread, never on the loop


async def test_the_same_call_off_the_loop_is_fine() -> None:
    assert await asyncio.to_thread(available)
