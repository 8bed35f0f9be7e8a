"""Publish benchmark: how long a publish takes, and until another instance serves it.

    .venv/bin/python bench/publish.py [--rounds N]

Two `ivr serve` processes share an embedded PostgreSQL (or IVR_DATABASE_URL).
Each round uploads the shipped content, with a comment naming the round
added to the flow (a new version each time), to instance A's
`POST /admin/content/publish`, then polls instance B's `/healthz` every
2 ms until it names the new version. Printed: the publish's answer time
(validation, storing, activation) and the time from that answer until B
serves the version (NOTIFY, loading the version's files from the database,
checking them): the issue asks for under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tarfile
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
    percentile,
    postgres,
    print_table,
    start_child,
    wait_http,
)

TOKEN = "bench-admin-token"


def content(round_no: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for folder in ("flows", "prompts"):
            for path in sorted((ROOT / folder).rglob("*")):
                if not path.is_file():
                    continue
                data = path.read_bytes()
                if path.name == "988.yaml":
                    data += f"# publish round {round_no}\n".encode()
                info = tarfile.TarInfo(f"{folder}/{path.relative_to(ROOT / folder).as_posix()}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def version_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/healthz") as resp:
        return str((await resp.json())["content_version"])


async def measure(a: str, b: str, rounds: int) -> tuple[list[float], list[float]]:
    answers, switches = [], []
    async with aiohttp.ClientSession() as http:
        for n in range(rounds):
            upload = content(n)
            started = time.perf_counter()
            async with http.post(f"{a}/admin/content/publish", data=upload,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise SystemExit(f"publish refused: {resp.status} {body}")
            answered = time.perf_counter()
            for _ in range(10_000):  # 20 s at most
                if await version_of(http, b) == body["version"]:
                    break
                await asyncio.sleep(0.002)
            else:
                raise SystemExit(f"B never served version {body['version']}")
            answers.append(answered - started)
            switches.append(time.perf_counter() - answered)
    return answers, switches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with postgres(os.environ.get("IVR_DATABASE_URL")) as pg, \
            tempfile.TemporaryDirectory(prefix="ivr-bench-publish-") as tmp:
        children, urls = [], []
        for name in ("a", "b"):
            port = free_port()
            env = {**os.environ, "IVR_DATABASE_URL": pg.dsn, "IVR_DATA_DIR": f"{tmp}/{name}",
                   "IVR_ADMIN_TOKEN": TOKEN, "IVR_PUBLIC_URL": f"http://127.0.0.1:{port}",
                   "IVR_TWILIO_API_URL": "http://127.0.0.1:9", "IVR_LOG_LEVEL": "WARNING",
                   "IVR_FLOWS_DIR": str(ROOT / "flows"), "IVR_PROMPTS_DIR": str(ROOT / "prompts")}
            children.append(start_child(name, [sys.executable, "-m", "ivr.cli", "serve",
                                                "--port", str(port)], env, Path(tmp)))
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for child, url in zip(children, urls, strict=True):
                asyncio.run(wait_http(f"{url}/healthz", child))
            answers, switches = asyncio.run(measure(urls[0], urls[1], args.rounds))
        finally:
            for child in children:
                child.stop()
    rows = []
    for what, values in (("publish answered (A)", answers), ("then B serves it", switches)):
        s = sorted(values)
        rows.append([what, str(len(s)), ms(percentile(s, 50)), ms(percentile(s, 99)),
                     ms(s[-1])])
    print_table(["", "rounds", "p50", "p99", "max"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
