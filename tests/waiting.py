"""Waiting in tests for something another task or process brings about."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(check: Callable[[], Awaitable[T]], what: str, *,
                     seconds: float = ..., pause: float = ...) -> T: ...
@overload
async def eventually(check: Callable[[], T], what: str, *,
                     seconds: float = ..., pause: float = ...) -> T: ...


async def eventually(check: Callable[[], Any], what: str, *,
                     seconds: float = 30.0, pause: float = 0.05) -> Any:
    """Ask `check` (plain or async) until it answers something true, and return
    that answer; fail naming `what` when `seconds` run out (a wait that runs
    out fails the test, it does not carry on as if the thing had happened)."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(pause)


async def has(answer: Awaitable[T], wanted: T) -> bool:
    """Whether `answer` comes out as `wanted`: a check for `eventually`."""
    return await answer == wanted
