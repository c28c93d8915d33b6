"""fastdhcp as Docker's IPAM plugin, end to end: a real dockerd (Debian's 20.10),
macvlan on a veth, and a real DHCP server in a namespace. The server's own lease
file is the ground truth for every container's address."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker_lab
import lab
import lab_pytest
import pytest

from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.lease import Lease
from fastdhcp.store import Store

pytestmark = pytest.mark.root


class FastdhcpPlugin(docker_lab.PluginProcess):
    """``fastdhcp serve`` under a unique plugin name, its store in its workdir."""

    kind = "fastdhcp"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "fastdhcp", "--log-level", "info", "serve",
            "--socket", str(self.socket), "--state-dir", str(self.state_dir),
            "--acquire-timeout", "15",
        ]  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def store_leases(self) -> dict[str, str]:
        """address -> MAC, as the plugin's store holds them."""
        with Store.open(self.state_dir, readonly=True) as store:
            return {str(lease.address): lease.mac.hex(":") for _, lease in store.leases()}

    def store_pools(self) -> list[str]:
        with Store.open(self.state_dir, readonly=True) as store:
            return [pool.pool_id for pool in store.pools()]


@pytest.fixture
def fastdhcp(
    request: pytest.FixtureRequest, plugins: list[docker_lab.PluginProcess], tmp_path: Path
) -> FastdhcpPlugin:
    plugin = FastdhcpPlugin(tmp_path / "fastdhcp")
    plugins.append(plugin)
    lab_pytest.attach(request, plugin)
    plugin.start()
    return plugin


@pytest.fixture
def dnsmasq(segment: lab.Segment, tmp_path: Path) -> Iterator[lab.Dnsmasq]:
    with lab.Dnsmasq(segment, workdir=tmp_path / "dnsmasq") as server:
        yield server


def network(dockerd: docker_lab.Dockerd, segment: lab.Segment, plugin: FastdhcpPlugin,
            *extra: str, check: bool = True) -> tuple[str, Any]:  # fmt: skip
    name = dockerd.new_name("n")
    result = dockerd.docker(
        "network", "create", "-d", "macvlan", "-o", f"parent={segment.host_if}",
        "--ipam-driver", plugin.name, "--ipam-opt", f"dhcp_interface={segment.host_if}",
        *extra, name, check=check, timeout=60,
    )  # fmt: skip
    return name, result


def run(dockerd: docker_lab.Dockerd, net: str, image: str, *extra: str) -> str:
    name = dockerd.new_name("c")
    dockerd.docker("run", "-d", "--name", name, "--network", net, *extra, image,
                   "sleep", "600", timeout=60)  # fmt: skip
    return name


def server_leases(server: Any) -> dict[str, str]:
    return {record.mac: record.ip for record in server.leases()}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    lab.wait_for(predicate, timeout, what)


def assert_container_matches_lease(
    dockerd: docker_lab.Dockerd, name: str, server: Any, segment: lab.Segment
) -> str:
    mac = docker_lab.container_mac(dockerd, name)
    address, prefix = docker_lab.container_ipv4(dockerd, name)
    wait_until(lambda: mac in server_leases(server), f"a lease for {mac}")
    assert server_leases(server)[mac] == address
    assert prefix == 16
    assert docker_lab.container_default_route(dockerd, name) == segment.server_ip
    return address


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
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    lab.run("ip", "addr", "add", "10.99.0.1/16", "dev", segment.host_if)
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
    net, _ = network(dockerd, segment, fastdhcp)
    name = dockerd.new_name("c")
    dockerd.docker("run", "-d", "--restart", "always", "--name", name, "--network", net,
                   busybox, "sleep", "600", timeout=60)  # fmt: skip
    before = assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    dockerd.restart()
    wait_until(
        lambda: json.loads(dockerd.docker("inspect", name).stdout)[0]["State"]["Running"],
        "the container running again",
        timeout=60,
    )
    after = assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    assert len(server_leases(dnsmasq)) == 1
    assert set(fastdhcp.store_leases()) == {after}
    assert before  # the address may change with the new MAC Docker gives on start


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
    names = [run(dockerd, net, busybox) for _ in range(2)]
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
