#!/usr/bin/env python3
"""The plugin path under load, against one Kea: ``fastdhcp serve`` answering
concurrent RequestAddress calls on its unix socket, with perfdhcp as the peer.

    sudo .venv/bin/python bench/plugin_load.py [--leases 2000] [--clients 32]
                                               [--seconds 5] [--json OUT]

What a busy dockerd does: ``--leases`` RequestAddress calls for distinct MACs, all
at once over ``--clients`` connections, to a ``fastdhcp serve`` child process
whose every lease is durable (SQLite, synchronous=FULL) before its reply. Kea 2.2
(memfile, not persisted) runs in a network namespace on a veth, restarted empty
before each peer. perfdhcp's figure is its best rate with under 1 % lost, in the
same run (bench/engine_load.py's steps).

Reported: leases per second and the ratio to perfdhcp; serve's CPU per lease
(user + system of the child, from /proc, over the burst); fsyncs per lease, read
from serve's own metrics (one committed store transaction is one fsync of the
WAL at synchronous=FULL). Needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import lab
from engine_load import run_perfdhcp
from serve_process import Serve, address_body, call, request_pool

from fastdhcp.engine import random_mac

METRICS_PORT = 9464  # on 127.0.0.1 only


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds so far, user and system, of the main (event-loop) thread and
    of all the others."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "event loop" if task.name == str(pid) else "other threads"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        for kind, ticks_used in (("user", fields[11]), ("system", fields[12])):
            key = f"{name}, {kind}"
            found[key] = found.get(key, 0.0) + int(ticks_used) / ticks
    return found


def commits() -> float:
    """Store transactions committed so far, from serve's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.search(r"^fastdhcp_store_write_seconds_count (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


async def burst(serve: Serve, pool_id: str, leases: int, clients: int) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(leases):
        queue.put_nowait(random_mac().hex(":"))
    failures: list[str] = []

    async def client() -> None:
        async with serve.session() as session:  # one connection each, kept alive
            while not queue.empty():
                mac = queue.get_nowait()
                status, reply = await call(session, "RequestAddress", address_body(pool_id, mac))
                if status != 200:
                    failures.append(str(reply.get("Err")))

    assert serve.proc is not None
    cpu_before, commits_before = cpu_seconds(serve.proc.pid), commits()
    threads_before = thread_cpu_seconds(serve.proc.pid)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(serve.proc.pid) - cpu_before
    threads = {
        name: seconds - threads_before.get(name, 0.0)
        for name, seconds in thread_cpu_seconds(serve.proc.pid).items()
    }
    committed = commits() - commits_before
    completed = leases - len(failures)
    return {
        "peer": "fastdhcp serve",
        "rate": completed / elapsed,
        "failure": len(failures) / leases,
        "completed": completed,
        "cpu_us_per_lease": cpu / completed * 1e6 if completed else float("nan"),
        "fsyncs_per_lease": committed / completed if completed else float("nan"),
        "thread_cpu_us_per_lease": {
            name: seconds / completed * 1e6 for name, seconds in threads.items() if completed
        },
        "first_failure": failures[0] if failures else None,
    }


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling serve (all threads, native frames off) into collapsed stacks."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--rate", "400", "--threads", "--gil"]
    proc = subprocess.Popen([*command, "--format", "raw", "--output", str(out)])
    time.sleep(1.0)  # py-spy attaches before the burst starts
    return proc


def run_serve(
    segment: lab.Segment, kea: lab.Kea, leases: int, clients: int, profile: Path | None = None
) -> dict[str, Any]:
    kea.restart(keep_leases=False)
    with tempfile.TemporaryDirectory(prefix="fdt-bench-") as tmp:
        serve = Serve(Path(tmp) / "state", Path(tmp) / "serve.log")
        serve.extra_args = ["--metrics", f"127.0.0.1:{METRICS_PORT}"]
        try:
            serve.mark()
            serve.start()
            pool_id = asyncio.run(request_pool(serve, segment.host_if))
            assert serve.proc is not None
            profiler = start_profiler(serve.proc.pid, profile) if profile else None
            result = asyncio.run(burst(serve, pool_id, leases, clients))
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
        finally:
            serve.close()
    print(
        f"  fastdhcp serve: {result['rate']:.0f}/s, {result['failure']:.2%} failed, "
        f"{result['cpu_us_per_lease']:.0f} us CPU and {result['fsyncs_per_lease']:.2f} "
        "fsyncs per lease",
        file=sys.stderr,
    )
    for name, micros in sorted(result["thread_cpu_us_per_lease"].items(), key=lambda kv: -kv[1]):
        print(f"    {name:<24} {micros:8.0f} us CPU per lease", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32, help="connections to the socket")
    parser.add_argument("--seconds", type=int, default=5, help="each perfdhcp step")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile", type=Path, help="sample serve with py-spy during the burst (collapsed stacks)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip perfdhcp (profiling runs)")
    args = parser.parse_args()

    lab.cleanup_stale()
    with (
        lab.Segment(host_address="10.99.0.1/16") as segment,
        lab.Kea(segment, persist=False, valid_lifetime=3600) as kea,
    ):
        perf = {"rate": float("nan")} if args.no_peer else run_perfdhcp(segment, kea, args.seconds)
        fast = run_serve(segment, kea, args.leases, args.clients, args.profile)
    ratio = fast["rate"] / perf["rate"]
    print(f"\nThe plugin path against Kea {'.'.join(map(str, lab.kea_version()))} on a veth")
    print(f"  perfdhcp best clean rate   {perf['rate']:>8,.0f} exchanges/s")
    print(f"  fastdhcp serve             {fast['rate']:>8,.0f} leases/s  ({ratio:.2f}x perfdhcp)")
    print(f"  serve CPU per lease        {fast['cpu_us_per_lease']:>8,.0f} us")
    print(f"  fsyncs per lease           {fast['fsyncs_per_lease']:>8.2f}")
    print(f"  failed                     {fast['failure']:>8.2%}")
    if args.json:
        args.json.write_text(json.dumps({"perfdhcp": perf, "serve": fast}, indent=2))
    return 0 if fast["failure"] < 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
