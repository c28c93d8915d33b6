"""``--ipam-opt conflict_check=arp`` through a real dockerd: ``docker run`` on a
segment where a squatter holds, statically, the address Kea would lease first.

The segment is bridged so that the squatter (its own namespace) hears the
plugin's probes; see tests/integration/test_conflict_real.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker_lab
import lab
import lab_pytest
import pytest
from fastdhcp_lab import FastdhcpPlugin, network, run

pytestmark = pytest.mark.root

# Kea's iterative allocator: network create's discovery takes the first address
# of the pool, so the first container is offered the second.
POOL = ("10.99.1.10", "10.99.1.12")
FIRST_OFFER = "10.99.1.11"


@pytest.fixture
def bridged(e2e_session: None) -> Iterator[lab.Segment]:
    with lab.Segment(bridged=True) as segment:
        yield segment


@pytest.fixture
def kea(request: pytest.FixtureRequest, bridged: lab.Segment, tmp_path: Path) -> Iterator[lab.Kea]:
    lab_pytest.require_binaries("the e2e lab", "kea-dhcp4")
    server = lab.Kea(bridged, workdir=tmp_path / "kea", pool=POOL)
    lab_pytest.attach(request, server)
    server.start()
    yield server
    server.close()


def test_docker_run_skips_a_squatted_address(
    dockerd: docker_lab.Dockerd, busybox: str, bridged: lab.Segment, kea: lab.Kea,
    fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    bridged.add_server(f"{FIRST_OFFER}/16")  # the squatter, unknown to Kea
    net, _ = network(dockerd, bridged, fastdhcp, "--ipam-opt", "conflict_check=arp",
                     "--ipam-opt", "conflict_wait=0.5")  # fmt: skip
    started = time.monotonic()
    name = run(dockerd, net, busybox)
    took = time.monotonic() - started
    mac = docker_lab.container_mac(dockerd, name)
    address, prefix = docker_lab.container_ipv4(dockerd, name)
    assert (address, prefix) == ("10.99.1.12", 16)
    assert {lease.mac: lease.ip for lease in kea.leases()} == {mac: address}
    assert f"DHCPDECLINE for addr {FIRST_OFFER} from client [hwtype=1 {mac}]" in kea.log_text()
    log = fastdhcp.log_text()
    assert f"address conflict: {FIRST_OFFER} was leased to {mac}" in log
    # For comparison, docker run on a network without the check (one macvlan
    # network per parent: the first goes).
    dockerd.docker("rm", "-f", name, timeout=60)
    dockerd.docker("network", "rm", net, timeout=60)
    plain, _ = network(dockerd, bridged, fastdhcp)
    started = time.monotonic()
    run(dockerd, plain, busybox)
    baseline = time.monotonic() - started
    print(f"docker run: {took:.2f} s with conflict_check=arp (0.5 s wait, one conflict), "
          f"{baseline:.2f} s without")  # fmt: skip

    # A typo in the options fails at network create, with the accepted range.
    _, result = network(dockerd, bridged, fastdhcp, "--ipam-opt", "conflict_check=arp",
                        "--ipam-opt", "conflict_wait=forever", check=False)  # fmt: skip
    assert result.returncode != 0 and "from 0.05 to 10" in result.stderr
