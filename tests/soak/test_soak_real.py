"""Soak: the keeper holds 10,000 leases with a 60 s lease time on a real Kea for
10 minutes, and none ever expires.

    sudo python3 -m pytest -m soak tests/soak            # 600 s
    sudo FASTDHCP_SOAK_SECONDS=90 python3 -m pytest -m soak tests/soak

Zero expiries means: the store never shows a lease whose expiry has passed
(checked every second), the keeper never lost one, and at the end every lease is
on Kea's lease file with its MAC and an expiry still ahead. The renewals done,
the failed attempts, RSS and CPU go to bench/results/soak.json and are printed.

Built for a loaded 2-core CI machine: RFC 2131 retransmission timing, retries no
sooner than every 5 s, and the lease time gives each renewal 22 s (T1 to T2) and
then a rebind 7.5 s (T2 to expiry) before a lease could expire.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import lab
import lab_pytest
import pytest
from lab_hold import Holder, vmrss

from fastdhcp.engine import EngineConfig
from fastdhcp.lifecycle import KeeperConfig

pytestmark = [pytest.mark.soak, pytest.mark.root]

SECONDS = float(os.environ.get("FASTDHCP_SOAK_SECONDS", "600"))
LEASES = int(os.environ.get("FASTDHCP_SOAK_LEASES", "10000"))
LEASE_TIME = 60
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "soak.json"


async def soak(segment: lab.Segment, state_dir: Path) -> dict[str, Any]:
    keeper_config = KeeperConfig(retry_floor=5.0)
    async with Holder(
        segment.host_if, "10.99.0.0/16", state_dir, EngineConfig(), keeper_config
    ) as holder:
        rss_base = vmrss()
        acquired = await holder.acquire(LEASES)
        first = {address: lease.bound_at for address, lease in holder.held().items()}
        holder.start_watch()
        rss_held = vmrss()
        before = holder.snapshot()
        await asyncio.sleep(SECONDS)
        window = before.until(holder.snapshot())
        holder.check()
        rss_end = vmrss()
        held = holder.held()
        report = holder.report()
    return {
        "seconds": SECONDS,
        "leases": LEASES,
        "lease_time": LEASE_TIME,
        "acquisition": acquired,
        "window": window,
        "rss": {
            "baseline": rss_base,
            "held": rss_held,
            "end": rss_end,
            "per_lease": (max(rss_held, rss_end) - rss_base) / LEASES,
        },
        "never_renewed": sum(1 for a, lease in held.items() if lease.bound_at <= first.get(a, 0)),
        "held": {address: lease.mac.hex(":") for address, lease in held.items()},
        **report,
    }


def test_ten_thousand_leases_never_expire(
    request: pytest.FixtureRequest,
    segment: lab.Segment,
    require: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    require("kea-dhcp4")
    kea = lab.Kea(segment, valid_lifetime=LEASE_TIME, workdir=tmp_path / "kea")
    lab_pytest.attach(request, kea)
    with kea:
        result = asyncio.run(soak(segment, tmp_path / "state"))
        now = time.time()
        on_file = {record.ip: record for record in kea.leases()}
    held = result.pop("held")
    missing = [a for a, mac in held.items() if a not in on_file or on_file[a].mac != mac]
    stale = [a for a in held if a in on_file and on_file[a].expiry <= now]
    result["kea"] = {"on_file": len(on_file), "missing": len(missing), "stale": len(stale)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    window, keeper, watch = result["window"], result["keeper"], result["watch"]
    with capsys.disabled():
        print(
            f"\nsoak: {LEASES:,} leases x {LEASE_TIME} s for {SECONDS:.0f} s:"
            f" {window['renewals']:,} renewals ({window['rebinds']} rebinds,"
            f" {window['renewals_per_s']:.0f}/s), {keeper['failures']} failed attempts,"
            f" {keeper['reacquired']} re-acquired, {keeper['lost']} lost,"
            f" {watch['expired_seen']} stored expiries seen passed"
            f" (least margin {watch['min_margin']:.1f} s);"
            f" CPU {window['cpu_s']:.1f} s ({window['cpu_s_per_1000']:.3f} s/1000 renewals);"
            f" RSS {result['rss']['end'] / 2**20:.0f} MiB,"
            f" {result['rss']['per_lease']:,.0f} B/lease -> {RESULTS}"
        )
    assert result["acquisition"]["leases"] == LEASES, result["acquisition"]["first_failure"]
    assert watch["expired_seen"] == 0 and keeper["lost"] == 0
    assert not missing, f"{len(missing)} held leases not on Kea's file, e.g. {missing[:3]}"
    assert not stale, f"{len(stale)} leases expired on Kea, e.g. {stale[:3]}"
    if SECONDS >= LEASE_TIME:  # every lease's T1 has come at least once
        assert result["never_renewed"] == 0
