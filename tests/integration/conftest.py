"""Fixtures for the integration lab (see lab.py for the primitives and topology).

Every fixture here needs root and real binaries. Where they are missing the test
is *skipped* with a reason naming exactly what is missing; set
``FASTDHCP_REQUIRE_LAB=1`` (CI, which runs as root with the packages installed)
to turn those skips into failures, so a broken lab cannot pass as "skipped".

When a test fails, the log tail of every DHCP server it used is attached to the
report ("dnsmasq log tail" / "kea log tail" sections).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dhcp_clients
import dhcp_servers
import lab_pytest
import labnet
from serve_process import Serve

WHO = "integration lab"


def require_binaries(*names: str) -> None:
    lab_pytest.require_binaries(WHO, *names)


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    """Root check, and removal of leftovers from an earlier run that crashed."""
    lab_pytest.require_root(WHO, "network namespaces, veth, raw sockets")
    require_binaries("ip", "ss")
    labnet.cleanup_stale()
    yield


@pytest.fixture
def require(lab_session: None) -> Callable[..., None]:
    """``require("dnsmasq", ...)``: skip (or fail, see FASTDHCP_REQUIRE_LAB) unless
    those binaries are on PATH. Implies the root check."""
    return require_binaries


@pytest.fixture
def segment(lab_session: None) -> Iterator[labnet.Segment]:
    """A fresh one-server segment: host_if (root ns, no address) <-veth-> server_if."""
    with labnet.Segment() as seg:
        yield seg


@pytest.fixture
def dnsmasq(
    request: pytest.FixtureRequest, segment: labnet.Segment, tmp_path: Path
) -> Iterator[dhcp_servers.Dnsmasq]:
    server = lab_pytest.start_dhcp_server(WHO, "dnsmasq", request, segment, tmp_path)
    yield server  # type: ignore[misc]
    server.close()


@pytest.fixture
def kea(
    request: pytest.FixtureRequest, segment: labnet.Segment, tmp_path: Path
) -> Iterator[dhcp_servers.Kea]:
    server = lab_pytest.start_dhcp_server(WHO, "kea", request, segment, tmp_path)
    yield server  # type: ignore[misc]
    server.close()


@pytest.fixture(params=["dnsmasq", "kea"])
def dhcp_server(
    request: pytest.FixtureRequest, segment: labnet.Segment, tmp_path: Path
) -> Iterator[dhcp_servers.Dnsmasq | dhcp_servers.Kea]:
    """Each test using it runs once per server. Common interface: ``.name``,
    ``.leases()`` -> [dhcp_servers.Lease(expiry, mac, ip, ...)], ``.kill()``, ``.stop()``,
    ``.restart()``, ``.running``, ``.server_ip``, ``.log_text()``."""
    server = lab_pytest.start_dhcp_server(WHO, request.param, request, segment, tmp_path)
    yield server
    server.close()


@pytest.fixture
def udhcpc(segment: labnet.Segment) -> Iterator[dhcp_clients.Udhcpc]:
    """busybox udhcpc in a new client namespace on ``segment`` (not started)."""
    require_binaries("busybox")
    client = dhcp_clients.Udhcpc(segment)
    yield client
    client.close()


@pytest.fixture
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Serve]:
    """``fastdhcp serve`` as a process (not started), its state under tmp_path."""
    daemon = Serve(tmp_path / "state", tmp_path / "serve.log")
    lab_pytest.attach(request, daemon)
    yield daemon
    daemon.close()
