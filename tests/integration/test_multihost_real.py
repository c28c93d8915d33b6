"""The multi-host promise: two fastdhcp instances, each in its own network
namespace on one segment (two "hosts"), share one DHCP server's address plan.
1,000 leases each, and no address is given twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lab
import pytest

pytestmark = pytest.mark.root

# One "host": an engine on the namespace's own interface, 1,000 fresh MACs.
HOST = r"""
import asyncio, json, sys
from fastdhcp.engine import Engine, EngineConfig, random_mac
async def main():
    engine = await Engine.open(sys.argv[1], EngineConfig(retransmit_initial=1.0, timeout=60))
    leases = await asyncio.gather(*(engine.acquire(random_mac()) for _ in range(1000)))
    engine.close()
    print(json.dumps({lease.mac.hex(":"): str(lease.address) for lease in leases}))
asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["dnsmasq", "kea"])
def test_two_hosts_on_one_segment_never_share_an_address(
    kind: str, require: Any, tmp_path: Path
) -> None:
    # A bridged segment: the DHCP server's namespace and two "host" namespaces,
    # each with its own port on one L2 bridge, as three machines on one LAN.
    require("dnsmasq" if kind == "dnsmasq" else "kea-dhcp4")
    with lab.Segment(servers=3) as segment:
        server_ns, *hosts = segment.servers
        server: Any = (lab.Dnsmasq if kind == "dnsmasq" else lab.Kea)(
            segment, server=server_ns, workdir=tmp_path / kind
        )
        with server:
            check_two_hosts(server, hosts)


def check_two_hosts(dhcp_server: Any, hosts: list[Any]) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__import__("fastdhcp").__file__).parents[1])}
    runs = [
        subprocess.Popen(
            ["ip", "netns", "exec", host.netns, sys.executable, "-c", HOST, host.ifname],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for host in hosts
    ]
    results = []
    for process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    first, second = results
    assert len(first) == len(second) == 1000
    assert not set(first.values()) & set(second.values()), "an address was given twice"
    on_file = {record.mac: record.ip for record in dhcp_server.leases()}
    for leases in results:
        for mac, address in leases.items():
            assert on_file.get(mac) == address
