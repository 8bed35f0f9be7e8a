"""Helpers shared by the benchmarks: statistics, tables, child processes, PostgreSQL.

The benchmarks run on small machines next to the servers they measure, so
the helpers here are cheap and have no dependencies beyond the project's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


# Statistics ----------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    pos = (len(sorted_values) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    frac = pos - low
    return sorted_values[low] * (1 - frac) + sorted_values[high] * frac


@dataclass(frozen=True)
class Summary:
    """Requests completed in a measured window, and their latencies in seconds."""

    count: int
    seconds: float
    p50: float
    p99: float
    mean: float
    max: float

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.nan


def summarize(latencies: Sequence[float], seconds: float) -> Summary:
    values = sorted(latencies)
    return Summary(
        count=len(values),
        seconds=seconds,
        p50=percentile(values, 50),
        p99=percentile(values, 99),
        mean=sum(values) / len(values) if values else math.nan,
        max=values[-1] if values else math.nan,
    )


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain aligned table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (str(c) for c in cells)
        parts = [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:],
                                                                        strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


# CPU accounting --------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces: fields are counted after its ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy since boot (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live direct children (PostgreSQL's backends).

    Backends that exited during the window are not counted; the benchmarks keep
    their connections open, so none should.
    """
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


# Processes and ports ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Child:
    """A server process started by a benchmark, with its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not leave in time (SIGTERM lets a profiler save)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_child(
    name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path
) -> Child:
    """Started in `log_dir`, never in this checkout: a server meant to run
    another checkout's code (`python -m ivr.cli` with it on PYTHONPATH) would
    import this one's `ivr` (`-m` puts the working directory first on sys.path).
    So children name every folder they use by its absolute path."""
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=log_dir,
        stdin=subprocess.DEVNULL,
    )
    return Child(name, proc, log_path, log)


class ServerFailed(Exception):
    """A server the benchmark started died or never became healthy."""


async def wait_http(url: str, child: Child, within: float = 60.0) -> None:
    """Wait until GET url answers 200; fail early if the child died."""
    deadline = time.monotonic() + within
    last = "no answer"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise ServerFailed(
                    f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}"
                )
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
    raise ServerFailed(f"{child.name} not healthy after {within:.0f}s ({last}):\n{child.tail()}")


def report_server_log(child: Child) -> int:
    """Problems the server logged (IVR_LOG_LEVEL=WARNING): errors count as failures."""
    lines = child.log_path.read_text(errors="replace").splitlines()
    errors = [n for n, line in enumerate(lines) if " ERROR " in line or " CRITICAL " in line]
    warnings = [n for n, line in enumerate(lines) if " WARNING " in line]
    for kind, found in (("ERROR", errors), ("warning", warnings)):
        if found:
            print(f"{kind}: the server logged {len(found)} {kind.lower()} lines; the first:")
            print("\n".join("    " + line for line in lines[found[0]:found[0] + 12]))
    return len(errors)


# PostgreSQL ------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    dsn: str
    pid: int | None  # the postmaster, for CPU accounting; None for an outside server


@contextlib.contextmanager
def postgres(dsn: str | None = None) -> Iterator[Postgres]:
    """The given server, or an embedded PostgreSQL in a temporary directory, deleted after."""
    if dsn:
        yield Postgres(dsn, None)
        return
    # pgserver warns through platformdirs when XDG_RUNTIME_DIR is unset; harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    with tempfile.TemporaryDirectory(prefix="ivr-bench-pg-") as tmp:
        server = pgserver.get_server(  # type: ignore[attr-defined]
            Path(tmp) / "pg", cleanup_mode="delete"
        )
        try:
            yield Postgres(str(server.get_uri()), server.get_pid())
        finally:
            server.cleanup()
