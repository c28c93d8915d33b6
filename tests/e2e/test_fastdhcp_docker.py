"""fastdhcp as Docker's IPAM plugin, end to end: a real dockerd, macvlan on a
veth, and a real DHCP server in a namespace. The server's own lease file is the
ground truth for every container's address. Every test runs on each engine of
engines.py (Debian 12's 20.10, 26.1, 28.5, 29.7): a parameter, not four copies."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import docker_lab
import engines
import lab
import pytest
from fastdhcp_lab import (
    FastdhcpPlugin,
    assert_container_matches_lease,
    network,
    run,
    server_leases,
    wait_until,
)

from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.lease import Lease
from fastdhcp.store import Store

pytestmark = [pytest.mark.root, pytest.mark.parametrize("docker_engine", engines.VERSIONS)]


# Containers running across a dockerd restart (issue 12: 10 on each engine).
RESTARTED = 10


def test_ten_containers_get_their_leases_and_give_them_back(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    net, _ = network(dockerd, segment, fastdhcp)  # discovery: no --subnet
    names = [run(dockerd, net, busybox) for _ in range(10)]
    addresses = {name: assert_container_matches_lease(dockerd, name, dnsmasq, segment)
                 for name in names}  # fmt: skip
    assert len(set(addresses.values())) == 10
    assert set(fastdhcp.store_leases()) == set(addresses.values())

    # stop releases; start leases again; rm releases for good.
    first = names[0]
    mac = docker_lab.container_mac(dockerd, first)
    dockerd.docker("stop", "-t", "1", first, timeout=60)
    wait_until(lambda: mac not in server_leases(dnsmasq), "the stopped container's release")
    dockerd.docker("start", first, timeout=60)
    assert_container_matches_lease(dockerd, first, dnsmasq, segment)
    dockerd.docker("rm", "-f", *names, timeout=120)
    wait_until(lambda: server_leases(dnsmasq) == {}, "every lease released")
    assert fastdhcp.store_leases() == {}

    dockerd.docker("network", "rm", net, timeout=60)
    assert fastdhcp.store_pools() == []


def test_explicit_subnet_and_gateway(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    net, _ = network(dockerd, segment, fastdhcp, "--subnet", "10.99.0.0/16",
                     "--gateway", segment.server_ip)  # fmt: skip
    name = run(dockerd, net, busybox)
    assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    _, result = network(dockerd, segment, fastdhcp, "--subnet", "10.98.0.0/16", check=False)
    assert result.returncode != 0
    assert "10.98.0.0/16" in result.stderr and "10.99.0.0/16" in result.stderr


def test_a_parent_with_a_host_address_fails_fast_with_the_flags_to_add(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin, docker_engine: str,
) -> None:  # fmt: skip
    lab.run("ip", "addr", "add", "10.99.0.1/16", "dev", segment.host_if)
    if engines.major(docker_engine) >= 27:
        # moby#47768: a pool in the plugin's global default address space skips
        # the overlap check, and fastdhcp names one space for both scopes.
        net, _ = network(dockerd, segment, fastdhcp)
        name = run(dockerd, net, busybox)
        assert_container_matches_lease(dockerd, name, dnsmasq, segment)
        assert len(fastdhcp.store_pools()) == 1
        return
    started = time.monotonic()
    _, result = network(dockerd, segment, fastdhcp, check=False)
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert f"--subnet 10.99.0.0/16 --gateway {segment.server_ip}" in result.stderr
    # With those flags, the same network works.
    net, _ = network(dockerd, segment, fastdhcp, "--subnet", "10.99.0.0/16",
                     "--gateway", segment.server_ip)  # fmt: skip
    name = run(dockerd, net, busybox)
    assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    assert fastdhcp.store_pools() != [] and len(fastdhcp.store_pools()) == 1


def test_docker_run_ip(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    net, _ = network(dockerd, segment, fastdhcp, "--subnet", "10.99.0.0/16",
                     "--gateway", segment.server_ip)  # fmt: skip
    name = run(dockerd, net, busybox, "--ip", "10.99.7.7")
    assert docker_lab.container_ipv4(dockerd, name) == ("10.99.7.7", 16)
    assert server_leases(dnsmasq)[docker_lab.container_mac(dockerd, name)] == "10.99.7.7"
    taken = dockerd.new_name("c")
    result = dockerd.docker("run", "-d", "--name", taken, "--network", net, "--ip", "10.99.7.7",
                            busybox, "sleep", "600", check=False, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "10.99.7.7" in result.stderr


def test_killed_plugin_restarts_with_its_leases(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    net, _ = network(dockerd, segment, fastdhcp)
    names = [run(dockerd, net, busybox) for _ in range(3)]
    held = fastdhcp.store_leases()
    fastdhcp.kill()
    fastdhcp.start()  # the stale socket is replaced
    assert fastdhcp.store_leases() == held
    # Renewable from what the store kept: a RENEWING exchange (unicast to the
    # server's MAC and IP) for one of them, answered while the container holds
    # the address (it answers dnsmasq's ARP itself), moves dnsmasq's expiry.
    with Store.open(fastdhcp.state_dir, readonly=True) as store:
        _, lease = store.leases()[0]
    before = {r.ip: r.expiry for r in dnsmasq.leases()}[str(lease.address)]
    time.sleep(1.5)

    async def renew() -> Lease:
        engine = await Engine.open(segment.host_if, EngineConfig(retransmit_initial=0.5))
        try:
            return await engine.renew(lease)
        finally:
            engine.close()

    renewed = asyncio.run(renew())
    assert renewed.address == lease.address
    assert {r.ip: r.expiry for r in dnsmasq.leases()}[str(lease.address)] > before
    dockerd.docker("rm", "-f", *names, timeout=120)
    wait_until(lambda: server_leases(dnsmasq) == {}, "the releases after the restart")
    assert fastdhcp.store_leases() == {}


def test_dockerd_restart_replays_consistently(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    # dockerd stops its containers and starts them again (--restart always),
    # each with a new MAC: a release and a new lease each, none left behind.
    net, _ = network(dockerd, segment, fastdhcp)
    names = [run(dockerd, net, busybox, "--restart", "always") for _ in range(RESTARTED)]
    for name in names:
        assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    dockerd.restart()

    def running() -> bool:
        states = json.loads(dockerd.docker("inspect", *names).stdout)
        return all(state["State"]["Running"] for state in states)

    wait_until(running, "the containers running again", timeout=120)
    after = {assert_container_matches_lease(dockerd, name, dnsmasq, segment) for name in names}
    assert len(after) == RESTARTED and set(server_leases(dnsmasq).values()) == after
    assert set(fastdhcp.store_leases()) == after
    dockerd.docker("rm", "-f", *names, timeout=120)
    wait_until(lambda: server_leases(dnsmasq) == {}, "every lease released")
    assert fastdhcp.store_leases() == {}


def test_the_same_flow_against_kea(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, fastdhcp: FastdhcpPlugin,
    tmp_path: Path,
) -> None:  # fmt: skip
    with lab.Kea(segment, workdir=tmp_path / "kea") as kea:
        net, _ = network(dockerd, segment, fastdhcp)
        names = [run(dockerd, net, busybox) for _ in range(3)]
        for name in names:
            assert_container_matches_lease(dockerd, name, kea, segment)
        dockerd.docker("rm", "-f", *names, timeout=120)
        wait_until(lambda: server_leases(kea) == {}, "Kea's leases released")
        dockerd.docker("network", "rm", net, timeout=60)
        assert fastdhcp.store_pools() == []


@pytest.mark.parametrize("dockerd", [["--live-restore"]], indirect=True)
def test_dockerd_crash_with_live_restore_replays_the_same_leases(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    # The containers keep running while dockerd is gone; on its return it replays
    # RequestPool (a new PoolID for the same network), the gateway, and every
    # endpoint by address with "Options": null. The answers must be the leases
    # already held, and later releases must find them under the new PoolID.
    net, _ = network(dockerd, segment, fastdhcp)
    names = [run(dockerd, net, busybox) for _ in range(RESTARTED)]
    before = {name: assert_container_matches_lease(dockerd, name, dnsmasq, segment)
              for name in names}  # fmt: skip
    dockerd.kill()
    dockerd.start()
    for name in names:
        assert docker_lab.container_ipv4(dockerd, name) == (before[name], 16)
    assert set(fastdhcp.store_leases()) == set(before.values())
    assert sorted(server_leases(dnsmasq).values()) == sorted(before.values())
    dockerd.docker("rm", "-f", *names, timeout=120)
    wait_until(lambda: server_leases(dnsmasq) == {}, "the releases under the new PoolID")
    assert fastdhcp.store_leases() == {}
