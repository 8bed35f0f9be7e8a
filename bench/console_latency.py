"""How long a change takes to reach a console page served by another instance.

Two `ivr serve` processes share one PostgreSQL. A supervisor's console on
instance B listens to its event stream (Server-Sent Events); a counselor's
presence is changed through instance A's admin API, and the time from
sending that request to B's stream delivering a board that shows the change
is measured. The same change made through B itself is the baseline, in the
same run: the difference is what crossing instances costs (each instance
polls the database for changes, ivr/admin/console/events.py).

    PYTHONPATH=. .venv/bin/python bench/console_latency.py [--rounds 30] [--database DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as a script: make `bench` and `ivr` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    free_port,
    ms,
    postgres,
    print_table,
    start_child,
    summarize,
    wait_http,
)

ADMIN = "bench-admin-token"
COUNSELOR = "tx-ana"
GAP = 0.5  # seconds between changes: each is measured on its own


def _env(port: int, dsn: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_"))}
    env.update(
        IVR_DATABASE_URL=dsn, IVR_PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN="bench-auth-token", IVR_ADMIN_TOKEN=ADMIN,
        IVR_CALLER_HASH_KEY="bench-caller-hash-key", IVR_DATA_DIR=str(data_dir),
        IVR_FLOWS_DIR=str(ROOT / "flows"), IVR_PROMPTS_DIR=str(ROOT / "prompts"),
        IVR_TWILIO_API_URL="http://127.0.0.1:9", IVR_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def _presence_in(html: str) -> str | None:
    start = html.find(f'id="counselor-{COUNSELOR}"')
    if start < 0:
        return None
    row = html[start:html.find("</tr>", start)]
    marker = 'class="presence '
    at = row.find(marker)
    return None if at < 0 else row[at + len(marker):row.find('"', at + len(marker))]


async def _boards(resp: aiohttp.ClientResponse, out: asyncio.Queue[tuple[float, str]]) -> None:
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            out.put_nowait((time.perf_counter(), "\n".join(data)))
            data = []


async def measure(a: str, b: str, rounds: int) -> dict[str, list[float]]:
    jar = aiohttp.CookieJar(unsafe=True)
    results: dict[str, list[float]] = {"through A, page on B": [], "through B, page on B": []}
    async with aiohttp.ClientSession(cookie_jar=jar) as console, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        async with console.post(f"{b}/console/signin", data={"token": ADMIN}) as resp:
            assert resp.status == 200, await resp.text()
        async with console.get(f"{b}/console/events",
                               timeout=aiohttp.ClientTimeout(total=None)) as stream:
            boards: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
            reader = asyncio.create_task(_boards(stream, boards))
            await boards.get()  # the first board, sent on connecting
            presence = "offline"
            for n in range(rounds * 2):
                label, via = (("through A, page on B", a), ("through B, page on B", b))[n % 2]
                presence = "available" if presence == "offline" else "offline"
                await asyncio.sleep(GAP)
                while not boards.empty():
                    boards.get_nowait()
                sent = time.perf_counter()
                async with admin.put(f"{via}"
                                     f"/admin/counselors/{COUNSELOR}/presence",
                                     json={"presence": presence}) as resp:
                    assert resp.status == 200, await resp.text()
                while True:
                    at, html = await asyncio.wait_for(boards.get(), 10)
                    if _presence_in(html) == presence:
                        results[label].append(at - sent)
                        break
            reader.cancel()
    return results


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="changes measured each way")
    parser.add_argument("--database", help="a PostgreSQL DSN (default: embedded, throwaway)")
    args = parser.parse_args()
    with postgres(args.database) as pg, tempfile.TemporaryDirectory() as tmp:
        ports = [free_port(), free_port()]
        children = [
            start_child(f"ivr-{name}", [sys.executable, "-m", "ivr.cli", "serve", "--port",
                                        str(port)],
                        _env(port, pg.dsn, Path(tmp) / name), Path(tmp))
            for name, port in zip("ab", ports, strict=True)
        ]
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            for url, child in zip(urls, children, strict=True):
                await wait_http(url + "/healthz", child)
            results = await measure(urls[0], urls[1], args.rounds)
        finally:
            for child in children:
                child.stop()
    rows = []
    for label, values in results.items():
        s = summarize(values, 1.0)
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        rows.append([label, str(s.count), ms(s.p50), ms(p90), ms(s.max)])
    print(f"Presence change to a board on the console's event stream ({os.cpu_count()} CPUs)")
    print_table(["change made", "changes", "p50 ms", "p90 ms", "max ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
