"""Waiting in tests for something another task or process brings about."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T]], what: str, *, tries: int = 600,
                pause: float = 0.05) -> T:
    """Ask `probe` until it answers something true, and return that answer;
    AssertionError naming `what` when it never does (a wait that runs out
    fails the test, it does not carry on as if the thing had happened)."""
    for _ in range(tries):
        found = await probe()
        if found:
            return found
        await asyncio.sleep(pause)
    raise AssertionError(f"never happened: {what}")


async def has(answer: Awaitable[T], wanted: T) -> bool:
    """Whether `answer` comes out as `wanted`: a probe for `until`."""
    return await answer == wanted
