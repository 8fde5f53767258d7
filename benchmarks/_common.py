"""What the benchmarks share: a pinned ``modelserve serve``, CPU accounting, wrk, medians, arguments.

Not a benchmark (hence the underscore). ``rest_small.py`` and ``protocols.py`` import it as a
sibling module: Python puts a script's own directory first on ``sys.path``, so run them as scripts
(``python benchmarks/NAME.py``), not with ``-m``.

- The server is started on ports 0 (HTTP and gRPC); the bound ports are read from its log.
- With 2 or more CPUs the server is pinned to the first and the load generator to the second.
- CPU use is a percentage of one core: the server's from ``/proc/PID/stat`` (all threads), the load
  generator's from the rusage of reaped children, both over the same wall-clock window.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

LOADGEN_CPU_LIMIT = 80.0  # % of one core above which the load generator is measuring itself (NOTES.md)
HTTP_LINE = re.compile(r"HTTP server listening on (http://\S+?:\d+) \(REST")
GRPC_LINE = re.compile(r"gRPC server listening on (\S+:\d+) \(inference")
WRK_RESULT_LINE = re.compile(r"^WRK_RESULT (\{.*\})$", re.MULTILINE)

# wrk's done(): one machine-readable line; latency percentiles in microseconds, bytes read (headers included)
WRK_DONE_LUA = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"status_errors":%d,"socket_errors":%d,"bytes":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end
"""


@dataclass(frozen=True, slots=True)
class Pinning:
    """``taskset`` prefixes for the server and the load generator; empty with fewer than 2 CPUs."""

    server: tuple[str, ...]
    loadgen: tuple[str, ...]

    @classmethod
    def detect(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            print(f"note: {len(cpus)} CPU(s) or no taskset: server and load generator are not pinned", file=sys.stderr)
            return cls((), ())
        return cls(("taskset", "-c", str(cpus[0])), ("taskset", "-c", str(cpus[1])))


# --- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    pid: int  # taskset execs the server, so this is the server's own PID
    http_url: str  # http://HOST:PORT
    grpc_target: str  # HOST:PORT


def modelserve_command() -> str:
    beside_python = Path(sys.executable).parent / "modelserve"
    found = str(beside_python) if beside_python.exists() else shutil.which("modelserve")
    if found is None:
        sys.exit("cannot find the modelserve command; install the project with pip install -e .")
    return found


class ServerLog:
    """Drains the server's stderr in a thread (so the pipe never fills) and finds the bound addresses."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.tail: deque[str] = deque(maxlen=50)
        self.http_url: str | None = None
        self.grpc_target: str | None = None
        self._found = threading.Event()
        assert proc.stderr is not None
        self._thread = threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.tail.append(line.rstrip())
            if self.http_url is None and (match := HTTP_LINE.search(line)):
                self.http_url = match.group(1)
            if self.grpc_target is None and (match := GRPC_LINE.search(line)):
                self.grpc_target = match.group(1)
            if self.http_url is not None and self.grpc_target is not None:
                self._found.set()
        self._found.set()  # the server exited: stop waiting

    def wait(self, timeout_s: float) -> bool:
        """Whether both addresses were logged within ``timeout_s`` (False if the server exited first)."""
        self._found.wait(timeout_s)
        return self.http_url is not None and self.grpc_target is not None


@contextmanager
def running_server(repo: Path, pinning: Pinning, options: Sequence[str] = ()) -> Iterator[Server]:
    """Start ``modelserve serve`` on ports 0; yield it once ready; SIGTERM it (by PID) on exit."""
    command = [*pinning.server, modelserve_command(), "serve", str(repo), "--http-port", "0", "--grpc-port", "0"]
    command += options
    proc = subprocess.Popen(
        [*command, "--log-level", "info"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = ServerLog(proc)
    try:
        if not log.wait(timeout_s=60):
            raise RuntimeError("the server did not log its ports; its log ends with:\n" + "\n".join(log.tail))
        assert log.http_url is not None and log.grpc_target is not None
        _wait_ready(log.http_url, proc, log)
        yield Server(proc.pid, log.http_url, log.grpc_target)
    finally:
        _stop(proc)


def _wait_ready(url: str, proc: subprocess.Popen[str], log: ServerLog, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n" + "\n".join(log.tail))
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the server at {url} was not ready after {timeout_s} s")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"server {proc.pid} ignored SIGTERM for 30 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


# --- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU of the server and of the load generator, in % of one core over ``wall_s``."""

    server_cpu_pct: float
    loadgen_cpu_pct: float
    wall_s: float


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(server_pid: int, run: Callable[[], T]) -> tuple[T, Usage]:
    """``run()`` (which must start and reap the load generator), and the CPU both sides used meanwhile."""
    server_before, loadgen_before, start = _cpu_seconds(server_pid), _children_cpu_seconds(), time.monotonic()
    result = run()
    wall = time.monotonic() - start
    server_cpu, loadgen_cpu = _cpu_seconds(server_pid) - server_before, _children_cpu_seconds() - loadgen_before
    return result, Usage(100 * server_cpu / wall, 100 * loadgen_cpu / wall, wall)


def run_loadgen(command: Sequence[str], seconds: int) -> str:
    """Run a load generator to completion and return its stdout. Raises RuntimeError if it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def run_wrk(pinning: Pinning, url: str, lua: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One thread of wrk; the WRK_RESULT of a script that ends with ``WRK_DONE_LUA``."""
    out = run_loadgen(
        [*pinning.loadgen, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url], seconds
    )
    match = WRK_RESULT_LINE.search(out)
    if match is None:
        raise RuntimeError(f"no WRK_RESULT line in wrk's output:\n{out}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def wrk_cell(
    pid: int, pinning: Pinning, url: str, script: Path, connections: int, warmup_s: int, duration_s: int
) -> tuple[float, float, float, int, float, float]:
    """Warm up, then one measured wrk run: req/s, p50 ms, p99 ms, errors, server and wrk CPU %."""
    run_wrk(pinning, url, script, connections, warmup_s)
    r, usage = measured(pid, lambda: run_wrk(pinning, url, script, connections, duration_s))
    return (
        r["requests"] / (r["duration_us"] / 1e6),
        r["p50_us"] / 1000,
        r["p99_us"] / 1000,
        r["status_errors"] + r["socket_errors"],
        usage.server_cpu_pct,
        usage.loadgen_cpu_pct,
    )


# --- results and arguments ----------------------------------------------------------------------


def median_rows(cells: Sequence[Any], keys: Sequence[str], values: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` of ``cells`` (dataclasses): medians of ``values``, summed ``errors``."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for cell in cells:
        groups.setdefault(tuple(getattr(cell, k) for k in keys), []).append(cell)
    rows = []
    for key, group in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True)) | {"rounds": len(group)}
        for name in values:
            row[name] = statistics.median(getattr(c, name) for c in group)
        row["errors"] = sum(c.errors for c in group)
        rows.append(row)
    return rows


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds before each cell (default 2)")
    parser.add_argument("--connections", default="1,8,32", help="comma-separated concurrencies (default 1,8,32)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole grid; the table shows medians")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")


def check_grid_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Parse ``--connections`` into a list of ints and check the grid; exits through ``parser.error``."""
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections must be a comma-separated list of integers, got {args.connections!r}")
    if args.duration < 1 or args.warmup < 1 or args.rounds < 1 or min(args.connections, default=0) < 1:
        parser.error("--duration, --warmup and --rounds must be >= 1, and --connections a list of ints >= 1")


def write_json(path: Path, config: dict[str, Any], rows: Sequence[dict[str, Any]], cells: Sequence[Any]) -> None:
    path.write_text(json.dumps({"config": config, "rows": rows, "cells": [asdict(c) for c in cells]}, indent=2))


# --- helpers for peer servers, h2load and memory (added for peers.py) ---------------------------

H2LOAD_FINISHED = re.compile(r"^finished in .*?, ([\d.]+) req/s", re.MULTILINE)
H2LOAD_REQUESTS = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", re.MULTILINE)
H2LOAD_STATUS = re.compile(r"^status codes: (\d+) 2xx", re.MULTILINE)
H2LOAD_DATA = re.compile(r"^traffic: .*\((\d+)\) data$", re.MULTILINE)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago, for a server that cannot bind port 0 and report it.

    Racy by nature (another process may take it before the server binds it): use it only for
    servers that log their configured port rather than the bound one, such as a peer under test.
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS of /proc/PID/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc/PID/task/*/children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children


def wrk_script(path: Path, method: str, body: Path | None = None, headers: dict[str, str] | None = None) -> Path:
    """Write a wrk script: ``method``, the body read from the file ``body`` (any bytes), ``headers``,
    and ``WRK_DONE_LUA``. Returns ``path``."""
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines += [f'local file = assert(io.open([==[{body}]==], "rb"))', 'wrk.body = file:read("*a")', "file:close()"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in (headers or {}).items()]
    path.write_text("\n".join(lines) + "\n" + WRK_DONE_LUA)
    return path


def run_h2load(
    pinning: Pinning, url: str, body: Path, headers: Sequence[str], connections: int, seconds: int
) -> dict[str, Any]:
    """h2load, one thread, ``connections`` clients with one stream each (``-m1``), POSTing ``body``.

    Returns ``requests`` (done), ``succeeded``, ``status_2xx``, ``data_bytes`` (DATA frames
    received), ``req_per_s`` (h2load's), and ``p50_us`` / ``p99_us`` from its ``--log-file``
    (request start to end of response). h2load reads no gRPC trailers: see ``protocols.py`` for
    counting gRPC errors from ``data_bytes``.
    """
    log = body.with_name(body.name + ".h2load.log")
    command = [*pinning.loadgen, "h2load", "-n0", "-D", str(seconds), "-t1", f"-c{connections}", "-m1"]
    command += ["-d", str(body), *(arg for header in headers for arg in ("-H", header))]
    out = run_loadgen([*command, f"--log-file={log}", url], seconds)
    found = [p.search(out) for p in (H2LOAD_FINISHED, H2LOAD_REQUESTS, H2LOAD_STATUS, H2LOAD_DATA)]
    if not all(found):
        raise RuntimeError(f"cannot read h2load's output:\n{out}")
    finished, counts, status, data = (m.groups() for m in found if m is not None)
    durations = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    log.unlink()

    def percentile(q: float) -> float:
        return float(durations[min(len(durations) - 1, int(q / 100 * len(durations)))]) if durations else float("nan")

    return {
        "requests": int(counts[2]),
        "succeeded": int(counts[3]),
        "status_2xx": int(status[0]),
        "data_bytes": int(data[0]),
        "req_per_s": float(finished[0]),
        "p50_us": percentile(50),
        "p99_us": percentile(99),
    }


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM ``proc`` (by its PID) and reap it; SIGKILL it if it ignores that for 30 s."""
    _stop(proc)
