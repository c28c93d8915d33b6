"""Fixtures for the integration lab (see lab.py for the primitives and topology).

Every fixture here needs root and real binaries. Where they are missing the test
is *skipped* with a reason naming exactly what is missing; set
``FASTDHCP_REQUIRE_LAB=1`` (CI, which runs as root with the packages installed)
to turn those skips into failures, so a broken lab cannot pass as "skipped".

When a test fails, the log tail of every DHCP server it used is attached to the
report ("dnsmasq log tail" / "kea log tail" sections).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab

REQUIRE_LAB = os.environ.get("FASTDHCP_REQUIRE_LAB") == "1"

# binary -> the Debian package that provides it (for the skip reason)
PACKAGES = {
    "ip": "iproute2",
    "ss": "iproute2",
    "dnsmasq": "dnsmasq-base",
    "kea-dhcp4": "kea-dhcp4-server",
    "perfdhcp": "kea-admin",
    "busybox": "busybox-static",
}


def _unavailable(reason: str) -> None:
    if REQUIRE_LAB:
        pytest.fail(f"FASTDHCP_REQUIRE_LAB=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        _unavailable(
            "integration lab needs root (network namespaces, veth, raw sockets); "
            f"running as uid {os.geteuid()}"
        )


def require_binaries(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pkgs = sorted({PACKAGES.get(n, n) for n in missing})
        _unavailable(
            f"integration lab needs {', '.join(missing)} on PATH (apt-get install {' '.join(pkgs)})"
        )


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    """Root check, and removal of leftovers from an earlier run that crashed."""
    require_root()
    require_binaries("ip", "ss")
    lab.cleanup_stale()
    yield


@pytest.fixture
def require(lab_session: None) -> Callable[..., None]:
    """``require("dnsmasq", ...)``: skip (or fail, see FASTDHCP_REQUIRE_LAB) unless
    those binaries are on PATH. Implies the root check."""
    return require_binaries


@pytest.fixture
def segment(lab_session: None) -> Iterator[lab.Segment]:
    """A fresh one-server segment: host_if (root ns, no address) <-veth-> server_if."""
    with lab.Segment() as seg:
        yield seg


def _attach(request: pytest.FixtureRequest, daemon: Any) -> None:
    request.node.__dict__.setdefault("_lab_daemons", []).append(daemon)


def _start_server(
    kind: str, request: pytest.FixtureRequest, segment: lab.Segment, tmp_path: Path
) -> lab.Dnsmasq | lab.Kea:
    """Start a server whose files live under tmp_path (kept after the test, for
    post-mortems); a start failure raises LabError carrying the log tail."""
    if kind == "dnsmasq":
        require_binaries("dnsmasq")
        server: lab.Dnsmasq | lab.Kea = lab.Dnsmasq(segment, workdir=tmp_path / "dnsmasq")
    elif kind == "kea":
        require_binaries("kea-dhcp4")
        server = lab.Kea(segment, workdir=tmp_path / "kea")
    else:
        raise ValueError(kind)
    _attach(request, server)
    server.start()
    return server


@pytest.fixture
def dnsmasq(
    request: pytest.FixtureRequest, segment: lab.Segment, tmp_path: Path
) -> Iterator[lab.Dnsmasq]:
    server = _start_server("dnsmasq", request, segment, tmp_path)
    yield server  # type: ignore[misc]
    server.close()


@pytest.fixture
def kea(request: pytest.FixtureRequest, segment: lab.Segment, tmp_path: Path) -> Iterator[lab.Kea]:
    server = _start_server("kea", request, segment, tmp_path)
    yield server  # type: ignore[misc]
    server.close()


@pytest.fixture(params=["dnsmasq", "kea"])
def dhcp_server(
    request: pytest.FixtureRequest, segment: lab.Segment, tmp_path: Path
) -> Iterator[lab.Dnsmasq | lab.Kea]:
    """Each test using it runs once per server. Common interface: ``.name``,
    ``.leases()`` -> [lab.Lease(expiry, mac, ip, ...)], ``.kill()``, ``.stop()``,
    ``.restart()``, ``.running``, ``.server_ip``, ``.log_text()``."""
    server = _start_server(request.param, request, segment, tmp_path)
    yield server
    server.close()


@pytest.fixture
def udhcpc(segment: lab.Segment) -> Iterator[lab.Udhcpc]:
    """busybox udhcpc in a new client namespace on ``segment`` (not started)."""
    require_binaries("busybox")
    client = lab.Udhcpc(segment)
    yield client
    client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for daemon in item.__dict__.get("_lab_daemons", []):
            report.sections.append(
                (f"{daemon.name} log tail ({daemon.log_file})", daemon.log_tail(60))
            )
