#!/usr/bin/env python3
"""Holding N leases: acquisition, renewal and memory cost as N grows (issue 5).

    sudo python3 bench/scaling.py [--sizes 1000,10000,100000] [--renewal-rate 500]
                                  [--min-window 20] [--out bench/results]

One Kea 2.2 (memfile, not persisted) in a network namespace on a veth, with a /14
subnet (about 260,000 addresses), restarted with an empty lease database before
each measurement. For each N:

* **Acquisition.** perfdhcp takes N leases from N distinct MACs (``-R N -n N``),
  its rate stepped up as in bench/engine_load.py, and its best rate with under
  1 % lost is the reference. Then fastdhcp's engine takes N leases for fresh MACs,
  all asked for at once (its own flow control paces them): the rate counts the
  exchanges only; recording each lease in the store is timed apart.
* **Renewals.** The LeaseKeeper holds the N leases. The lease time grows with N
  (``2 N / --renewal-rate`` seconds, at least 10), so that every N from 2,500 up
  asks for the same number of renewals per second: the figures then show what N
  itself costs, not what a busier or idler loop costs. (N = 1,000 asks for
  200/s: shorter leases are fragile on a shared machine.) The first renewals of
  leases taken in a burst come due in a burst: the peak rate is reported too. The window opens when the first
  lease may renew and lasts one T1 (at least ``--min-window``), so every lease
  renews about once in it. CPU seconds per 1,000 renewals is this process's CPU
  time over the window, less the watch's own, divided by the renewals (RENEWING
  and REBINDING exchanges) completed in it.
* **Memory.** RSS per held lease: (VmRSS with N held - VmRSS before acquiring) / N,
  both after a full gc; measured once the leases are recorded and again at the end
  of the window, and the larger is reported.
* **No lease expires.** Every second the store is checked for a lease whose stored
  expiry has passed; the keeper's ``lost`` count must stay 0.

Writes ``scaling.json`` and one PNG per metric (log N) to ``--out``. Needs root,
kea-dhcp4 and perfdhcp; matplotlib for the plots (``pip install .[bench]``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "integration"))

import lab
from engine_load import run_perfdhcp
from lab_hold import Holder, vmrss

from fastdhcp.engine import EngineConfig
from fastdhcp.lifecycle import KeeperConfig

# Not 10.99.0.0/16: other labs on this machine put that on their host ends, and
# perfdhcp binds <host address>:67 (see lab.Perfdhcp).
SUBNET = "10.100.0.0/14"
SERVER_ADDRESS = "10.100.0.2/14"
HOST_ADDRESS = "10.100.0.1/14"
POOL = ("10.100.1.0", "10.103.255.250")
PERFDHCP_RATES = (2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000)
TARGET_RSS_PER_LEASE = 2048  # bytes, at N = 100,000
TARGET_CPU_SPREAD = 1.5  # renewal CPU per lease, largest / smallest across N


# Shorter leases than this expired on this shared 2-core machine when other work
# stalled the process for a second or two (4 s leases did, at N = 1,000).
MIN_LEASE_TIME = 10


def lease_time_for(count: int, renewal_rate: float) -> int:
    """T1 = N / rate, lease = 2 T1 (RFC 2131 §4.4.5 defaults: T1 = lease / 2)."""
    return max(MIN_LEASE_TIME, round(2 * count / renewal_rate))


def kea_for(segment: lab.Segment, lease_time: int, workdir: Path) -> lab.Kea:
    return lab.Kea(
        segment,
        subnet=SUBNET,
        pool=POOL,
        persist=False,
        valid_lifetime=lease_time,
        renew_timer=lease_time // 2,
        rebind_timer=lease_time * 7 // 8,
        workdir=workdir,
    )


async def hold(
    segment: lab.Segment, count: int, lease_time: int, min_window: float, state_dir: Path
) -> dict[str, Any]:
    # Retransmit sooner than RFC 2131's 4 s: a 4 s lease would expire first.
    engine_config = EngineConfig(timeout=30.0, retransmit_initial=1.0)
    keeper_config = KeeperConfig(retry_floor=1.0)
    async with Holder(segment.host_if, SUBNET, state_dir, engine_config, keeper_config) as holder:
        rss_base = vmrss()
        acquired = await holder.acquire(count)
        holder.start_watch()
        rss_held = vmrss()
        print(
            f"  fastdhcp: {acquired['rate']:,.0f} leases/s, {acquired['failure']:.2%} failed,"
            f" recorded in {acquired['record_seconds']:.1f} s",
            file=sys.stderr,
        )
        t1 = lease_time / 2
        await asyncio.sleep(max(0.0, holder.earliest_renewal() - time.time()))
        window = max(t1, min_window)
        before = holder.snapshot()
        await asyncio.sleep(window)
        renewals = before.until(holder.snapshot())
        rss_end = vmrss()
        holder.check()
        report = holder.report()
        held = len(holder.held())
    rss = max(rss_held, rss_end) - rss_base
    print(
        f"  keeper: {renewals['renewals_per_s']:,.0f} renewals/s"
        f" (peak {report['watch']['peak_renewals_per_s']:,.0f}/s),"
        f" {renewals['cpu_s_per_1000']:.3f} CPU s/1000, {rss / count:,.0f} B/lease,"
        f" lost {report['keeper']['lost']}, expired seen {report['watch']['expired_seen']}",
        file=sys.stderr,
    )
    return {
        "acquisition": acquired,
        "renewal": {"lease_time": lease_time, "t1": t1, **renewals},
        "rss": {
            "baseline": rss_base,
            "held": rss_held,
            "end": rss_end,
            "per_lease": rss / count,
        },
        "held_at_end": held,
        **report,
    }


def measure(segment: lab.Segment, count: int, args: argparse.Namespace) -> dict[str, Any]:
    lease_time = lease_time_for(count, args.renewal_rate)
    print(f"N = {count:,} (lease time {lease_time} s)", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="fastdhcp-scaling-") as tmp,
        kea_for(segment, lease_time, Path(tmp) / "kea") as kea,
    ):
        perf = run_perfdhcp(segment, kea, 0, requests=count, rates=PERFDHCP_RATES)
        kea.restart(keep_leases=False)
        fast = asyncio.run(hold(segment, count, lease_time, args.min_window, Path(tmp) / "state"))
    acquisition = fast.pop("acquisition")
    return {
        "n": count,
        "perfdhcp": perf,
        "fastdhcp": acquisition,
        "ratio": acquisition["rate"] / perf["rate"],
        **fast,
    }


def checks(rows: list[dict[str, Any]]) -> list[tuple[str, float, bool]]:
    cpu = [row["renewal"]["cpu_s_per_1000"] for row in rows]
    spread = max(cpu) / min(cpu)
    largest = max(rows, key=lambda row: row["n"])
    per_lease = largest["rss"]["per_lease"]
    lost = sum(row["keeper"]["lost"] for row in rows)
    expired = sum(row["watch"]["expired_seen"] for row in rows)
    return [
        (f"RSS per held lease <= 2 KiB at N = {largest['n']:,} (bytes)",
         per_lease, per_lease <= TARGET_RSS_PER_LEASE),
        ("renewal CPU per lease flat within 1.5x across N (largest / smallest)",
         spread, spread <= TARGET_CPU_SPREAD),
        ("no lease expired (stored expiries seen passed + keeper's lost)",
         expired + lost, expired + lost == 0),
        ("every lease still held at the end (held / N, worst N)",
         min(row["held_at_end"] / row["n"] for row in rows),
         all(row["held_at_end"] == row["n"] for row in rows)),
    ]  # fmt: skip


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["n"] for row in rows]
    figures = [
        ("scaling_acquisition.png", "acquisition (leases/s)",
         [("fastdhcp", [row["fastdhcp"]["rate"] for row in rows]),
          ("perfdhcp", [row["perfdhcp"]["rate"] for row in rows])], None),
        ("scaling_renewals.png", "renewal exchanges/s sustained",
         [("fastdhcp keeper", [row["renewal"]["renewals_per_s"] for row in rows])], None),
        ("scaling_renewal_cpu.png", "client CPU s per 1,000 renewals",
         [("fastdhcp keeper", [row["renewal"]["cpu_s_per_1000"] for row in rows])], None),
        ("scaling_rss.png", "RSS bytes per held lease",
         [("fastdhcp", [row["rss"]["per_lease"] for row in rows])],
         (TARGET_RSS_PER_LEASE, "target: 2 KiB")),
    ]  # fmt: skip
    written = []
    for name, ylabel, series, target in figures:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, values in series:
            ax.plot(sizes, values, marker="o", label=label)
        if target is not None:
            ax.axhline(target[0], color="grey", linestyle="--", label=target[1])
        ax.set_xscale("log")
        ax.set_xlabel("leases held (N)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated N")
    parser.add_argument("--renewal-rate", type=float, default=500.0, help="renewals/s asked")
    parser.add_argument("--min-window", type=float, default=20.0, help="seconds, at least")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    lab.cleanup_stale()
    # perfdhcp acts as a relay and needs an address on the host end.
    with lab.Segment(server_address=SERVER_ADDRESS, host_address=HOST_ADDRESS) as segment:
        rows = [measure(segment, count, args) for count in sizes]

    print(f"\nHolding N leases against Kea {'.'.join(map(str, lab.kea_version()))} on a veth")
    print(
        f"{'N':>8}{'fastdhcp/s':>12}{'perfdhcp/s':>12}{'ratio':>7}{'renew/s':>9}"
        f"{'CPU s/1000':>12}{'B/lease':>9}{'lost':>6}"
    )
    for row in rows:
        print(
            f"{row['n']:>8,}{row['fastdhcp']['rate']:>12,.0f}{row['perfdhcp']['rate']:>12,.0f}"
            f"{row['ratio']:>7.2f}{row['renewal']['renewals_per_s']:>9,.0f}"
            f"{row['renewal']['cpu_s_per_1000']:>12.3f}{row['rss']['per_lease']:>9,.0f}"
            f"{row['keeper']['lost']:>6}"
        )
    results = checks(rows)
    print()
    for name, value, ok in results:
        print(f"  {'PASS' if ok else 'MISS'}  {value:10.2f}  {name}")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "kea": ".".join(map(str, lab.kea_version())),
        "renewal_rate_asked": args.renewal_rate,
        "rows": rows,
        "checks": [{"name": n, "value": v, "pass": ok} for n, v, ok in results],
    }
    (args.out / "scaling.json").write_text(json.dumps(document, indent=2) + "\n")
    try:
        for path in plot(rows, args.out):
            print(f"  wrote {path}", file=sys.stderr)
    except ImportError:
        print("  no plots: matplotlib is missing (pip install .[bench])", file=sys.stderr)
    return 0 if all(ok for _, _, ok in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
