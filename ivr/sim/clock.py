"""The world's clock: simulated seconds passing in compressed real time.

A caller's IVR runs on its own clock, which jumps ahead as fast as the
server answers. Once other parties are involved (a counselor's phone
ringing, a caller waiting in a conference) the server acts in real time,
by REST, whenever it likes; so from then on simulated time must pass in
real time too, only faster: one simulated second lasts `scale` real
seconds. Waits can be cut short by a wake-up event (the server canceled
the leg, the counselor joined...), which keeps every event in the order
it really happened.
"""

from __future__ import annotations

import asyncio
import math

from ivr.sim.errors import ScriptError

DEFAULT_SCALE = 0.01  # real seconds per simulated second: a 20 s ring lasts 200 ms


class WorldClock:
    def __init__(self, scale: float = DEFAULT_SCALE) -> None:
        if not 0 < scale <= 1:
            raise ScriptError("time scale must be in (0, 1] real seconds per simulated second")
        self.scale = scale
        self._origin: float | None = None

    def start(self) -> None:
        if self._origin is None:
            self._origin = asyncio.get_running_loop().time()

    def now(self) -> float:
        """Simulated seconds since the world started."""
        if self._origin is None:
            return 0.0
        return (asyncio.get_running_loop().time() - self._origin) / self.scale

    async def wait(self, wake: asyncio.Event, until: float) -> bool:
        """Wait until simulated time `until` (math.inf: forever) or until
        `wake` is set; True when woken. Clear `wake` and check what could
        have woken you before calling, with no await in between."""
        while not wake.is_set():
            left = until - self.now()
            if left <= 0:
                return False
            timeout = None if math.isinf(left) else left * self.scale
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                continue  # timers may fire a hair early: check the clock again
        return True
