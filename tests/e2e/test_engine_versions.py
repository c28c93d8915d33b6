"""What differs between Docker engines, each tested on the engines that have it
(docs/docker-ipam.md, "Newer engines"; engines.py runs them)."""

from __future__ import annotations

import re
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

pytestmark = pytest.mark.root

RESTARTS = 20


def since(first: str) -> list[str]:
    return [version for version in engines.VERSIONS if engines.major(version) >= int(first)]


@pytest.mark.parametrize("docker_engine", since("26"))
def test_a_restarted_container_holds_one_lease_however_often(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    dnsmasq: lab.Dnsmasq, fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    # 26.0+ (moby#47233): a generated MAC is not kept, so each start brings a new
    # MAC: a ReleaseAddress of the old lease and a RequestAddress for the new.
    net, _ = network(dockerd, segment, fastdhcp)
    name = run(dockerd, net, busybox)
    macs = {docker_lab.container_mac(dockerd, name)}
    for _ in range(RESTARTS):
        dockerd.docker("restart", "-t", "0", name, timeout=60)
        macs.add(docker_lab.container_mac(dockerd, name))
    address = assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    assert len(macs) == RESTARTS + 1  # a new MAC every time
    assert fastdhcp.store_leases() == {address: docker_lab.container_mac(dockerd, name)}
    assert list(server_leases(dnsmasq).values()) == [address]
    # dnsmasq logs each DHCPRELEASE (--log-dhcp): one per restart, none leaked.
    released = re.findall(r"DHCPRELEASE\(\S+\) \S+ ([0-9a-f:]{17})", dnsmasq.log_text())
    assert len(released) == RESTARTS and set(released) < macs


@pytest.mark.parametrize("docker_engine", since("28"))
@pytest.mark.parametrize("gateway", [False, True], ids=["no-gateway", "gateway"])
def test_internal_networks(
    docker_engine: str, gateway: bool, dockerd: docker_lab.Dockerd, busybox: str,
    segment: lab.Segment, dnsmasq: lab.Dnsmasq, fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    # 28+ (moby#49261): an --internal macvlan network asks for no gateway unless
    # --gateway is given; containers still get their leases, and no default route.
    extra = ["--internal"]
    if gateway:
        extra += ["--subnet", "10.99.0.0/16", "--gateway", segment.server_ip]
    net, _ = network(dockerd, segment, fastdhcp, *extra)
    name = run(dockerd, net, busybox)
    mac = docker_lab.container_mac(dockerd, name)
    address, prefix = docker_lab.container_ipv4(dockerd, name)
    wait_until(lambda: mac in server_leases(dnsmasq), f"a lease for {mac}")
    assert server_leases(dnsmasq)[mac] == address and prefix == 16
    assert fastdhcp.store_leases() == {address: mac}
    assert docker_lab.container_default_route(dockerd, name) is None
    dockerd.docker("rm", "-f", name, timeout=60)
    wait_until(lambda: server_leases(dnsmasq) == {}, "the lease released")


@pytest.mark.parametrize("docker_engine", since("29"))
def test_the_endpoint_name_is_the_client_id_and_host_name(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    fastdhcp: FastdhcpPlugin, tmp_path: Path,
) -> None:  # fmt: skip
    # 29+ (moby#50586) names the endpoint in every RequestAddress: with these
    # options the client id (RFC 2132 §9.14, type 0) and host name come from it.
    with lab.Kea(segment, workdir=tmp_path / "kea") as kea:
        net, _ = network(dockerd, segment, fastdhcp,
                         "--ipam-opt", "client_id=endpoint", "--ipam-opt", "hostname=endpoint")  # fmt: skip
        run(dockerd, net, busybox, name="web1")
        address = assert_container_matches_lease(dockerd, "web1", kea, segment)
        held = {lease.ip: lease for lease in kea.leases()}
        assert held[address].hostname == "web1"
        assert held[address].client_id == "00:" + b"web1".hex(":")
        dockerd.docker("rm", "-f", "web1", timeout=60)
        wait_until(lambda: server_leases(kea) == {}, "Kea's lease released")


@pytest.mark.parametrize("docker_engine", since("29"))
def test_a_recreated_container_gets_its_address_back_from_kea(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    fastdhcp: FastdhcpPlugin, tmp_path: Path,
) -> None:  # fmt: skip
    # Nothing ties the new container to the old one for Kea (a new MAC, no
    # client id): the plugin remembers the name's last address and asks for it
    # (option 50), and Kea gives it, where it would give the next free one.
    with lab.Kea(segment, workdir=tmp_path / "kea") as kea:
        net, _ = network(dockerd, segment, fastdhcp)
        run(dockerd, net, busybox, name="web1")
        first = assert_container_matches_lease(dockerd, "web1", kea, segment)
        dockerd.docker("rm", "-f", "web1", timeout=60)
        wait_until(lambda: server_leases(kea) == {}, "web1's lease released")
        other = run(dockerd, net, busybox)  # would take the first free address
        assert assert_container_matches_lease(dockerd, other, kea, segment) != first
        run(dockerd, net, busybox, name="web1")
        assert assert_container_matches_lease(dockerd, "web1", kea, segment) == first
        dockerd.docker("rm", "-f", "web1", other, timeout=60)
        wait_until(lambda: server_leases(kea) == {}, "Kea's leases released")


@pytest.mark.parametrize("docker_engine", since("28"))
def test_a_network_without_ipv4_asks_the_plugin_nothing(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    # 28+ (moby#48271): --ipv4=false makes no IPv4 IPAM call. A layer-2 only
    # macvlan network: the container runs with no IPv4 address, and the plugin
    # holds nothing.
    net, _ = network(dockerd, segment, fastdhcp, "--ipv4=false")
    name = run(dockerd, net, busybox)
    out = docker_lab.container_exec(dockerd, name, "ip", "-4", "-o", "addr", "show", "eth0")
    assert "inet " not in out, out
    assert fastdhcp.store_pools() == [] and fastdhcp.store_leases() == {}
    dockerd.docker("rm", "-f", name, timeout=60)
    dockerd.docker("network", "rm", net, timeout=60)
