"""A smoke test per Docker engine (engines.py: the system's 20.10, trixie's 26.1,
sid's 28.5, and 29.7 built from source): the private dockerd starts, reports
the version the registry names, and runs one container on a fastdhcp macvlan
network whose address comes from dnsmasq, as in test_fastdhcp_docker.py.

The first run on a machine fetches 26.1 and 28.5 (about 15 s each) and builds
29.7 (minutes); the ``dockerd`` fixture prints what that took. 29.7's case
skips where the shared engines dir is absent (conftest.py).
"""

from __future__ import annotations

import sys
import time

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


@pytest.mark.parametrize("docker_engine", engines.VERSIONS)
def test_engine_runs_a_container_with_a_dhcp_lease(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    dnsmasq: lab.Dnsmasq, fastdhcp: FastdhcpPlugin,
) -> None:  # fmt: skip
    phases: list[tuple[str, float]] = []
    mark = time.monotonic()

    def phase(what: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases.append((what, now - mark))
        mark = now

    spec = engines.spec(docker_engine)
    server = dockerd.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert server.startswith(spec.upstream), f"{docker_engine}: docker version says {server!r}"

    # Discovery (no --subnet; the parent has no host address, so every engine's
    # overlap check passes), and the endpoint name as host name where the
    # engine sends one (29+, moby#50586).
    phase("version")
    net, _ = network(dockerd, segment, fastdhcp, "--ipam-opt", "hostname=endpoint")
    phase("network create")
    name = run(dockerd, net, busybox)
    phase("run")
    address = assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    assert fastdhcp.store_leases() == {address: docker_lab.container_mac(dockerd, name)}
    hostnames = {lease.ip: lease.hostname for lease in dnsmasq.leases()}
    if int(spec.upstream.split(".")[0]) >= 29:
        assert hostnames[address] == name
    else:
        assert hostnames[address] is None

    phase("lease checks")
    dockerd.docker("rm", "-f", name, timeout=60)
    wait_until(lambda: server_leases(dnsmasq) == {}, "the lease released")
    phase("rm and release")
    print(f"\nDocker {server}: " + ", ".join(f"{w} {s:.2f} s" for w, s in phases),
          file=sys.stderr)  # fmt: skip
