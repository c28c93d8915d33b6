"""What the integration and end-to-end labs share on the pytest side: the
prerequisite checks and the daemons whose logs a failed test shows.

Where a prerequisite is missing the test is *skipped* with a reason naming exactly
what is missing; ``FASTDHCP_REQUIRE_LAB=1`` (CI, which runs as root with the
packages installed) turns those skips into failures, so a broken lab cannot pass
as "skipped".
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import dhcp_servers
import labnet
import pytest

REQUIRE_LAB = os.environ.get("FASTDHCP_REQUIRE_LAB") == "1"

# binary -> the Debian package that provides it (for the skip reason)
PACKAGES = {
    "ip": "iproute2",
    "ss": "iproute2",
    "umount": "mount",
    "dnsmasq": "dnsmasq-base",
    "kea-dhcp4": "kea-dhcp4-server",
    "perfdhcp": "kea-admin",
    "busybox": "busybox-static",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "containerd": "containerd",
    "runc": "runc",
    "systemd-nspawn": "systemd-container",
}


def unavailable(reason: str) -> None:
    if REQUIRE_LAB:
        pytest.fail(f"FASTDHCP_REQUIRE_LAB=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_root(who: str, why: str) -> None:
    """``who``: "integration lab" or "the e2e lab"; ``why``: what root is for."""
    if os.geteuid() != 0:
        unavailable(f"{who} needs root ({why}); running as uid {os.geteuid()}")


def require_binaries(who: str, *names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pkgs = sorted({PACKAGES.get(n, n) for n in missing})
        unavailable(f"{who} needs {', '.join(missing)} on PATH (apt-get install {' '.join(pkgs)})")


def start_dhcp_server(
    who: str, kind: str, request: pytest.FixtureRequest, segment: labnet.Segment, tmp_path: Path
) -> dhcp_servers.Dnsmasq | dhcp_servers.Kea:
    """Start dnsmasq or Kea on ``segment``, its files under tmp_path (kept after
    the test, for post-mortems), its log shown if the test fails; a start
    failure raises LabError carrying the log tail."""
    if kind == "dnsmasq":
        require_binaries(who, "dnsmasq")
        server: dhcp_servers.Dnsmasq | dhcp_servers.Kea = dhcp_servers.Dnsmasq(
            segment, workdir=tmp_path / "dnsmasq"
        )
    elif kind == "kea":
        require_binaries(who, "kea-dhcp4")
        server = dhcp_servers.Kea(segment, workdir=tmp_path / "kea")
    else:
        raise ValueError(kind)
    attach(request, server)
    server.start()
    return server


def attach(request: pytest.FixtureRequest, daemon: Any) -> None:
    """Show ``daemon``'s log tail if the test fails (tests/conftest.py's hook)."""
    request.node.__dict__.setdefault("_lab_daemons", []).append(daemon)
