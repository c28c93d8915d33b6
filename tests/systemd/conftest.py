"""Fixtures for the systemd test: a Debian rootfs with systemd and fastdhcp's
wheel (scripts/build-plugin --include, cached like the managed plugin's base),
booted by systemd-nspawn (machine.py) with one end of a lab segment moved in.

Same rules as the other labs: root and real binaries, a skip naming what is
missing, a failure instead under ``FASTDHCP_REQUIRE_LAB=1``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))
import dhcp_servers
import lab_pytest
import labnet
import labprocess
from machine import Machine

WHO = "the systemd lab"
ROOT = HERE.parents[1]
UNITS = ROOT / "packaging" / "systemd"
SYSTEM_PACKAGES = "systemd,systemd-sysv,dbus,iproute2"


@pytest.fixture(scope="module")
def system_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bookworm with systemd as init, fastdhcp installed as the README installs
    it (a venv in /opt/fastdhcp, /usr/local/bin/fastdhcp), and the units in
    /etc/systemd/system, not enabled: the test starts them."""
    lab_pytest.require_root(WHO, "debootstrap, chroot and systemd-nspawn")
    lab_pytest.require_binaries(WHO, "debootstrap", "chroot", "systemd-nspawn", "nsenter", "ip")
    labnet.cleanup_stale()
    out = tmp_path_factory.mktemp("system") / "system"
    started = time.monotonic()
    labprocess.run(str(ROOT / "scripts" / "build-plugin"), "--include", SYSTEM_PACKAGES,
            "--out", str(out), timeout=900,
            env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    print(f"\nthe systemd rootfs took {time.monotonic() - started:.1f} s", file=sys.stderr)
    rootfs = out / "rootfs"
    for unit in ("fastdhcp.service", "fastdhcp.socket"):
        shutil.copy(UNITS / unit, rootfs / "etc" / "systemd" / "system" / unit)
    yield rootfs
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def segment(system_rootfs: Path) -> Iterator[labnet.Segment]:
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
def plugins_dir() -> Iterator[Path]:
    """The container's /run/docker/plugins, on a host path short enough for a
    unix socket address (108 bytes), and as dockerd makes it: root's, 0700."""
    path = Path(tempfile.mkdtemp(prefix="fdt-sd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def machine(
    request: pytest.FixtureRequest, system_rootfs: Path, segment: labnet.Segment,
    plugins_dir: Path, tmp_path: Path,
) -> Iterator[Machine]:  # fmt: skip
    """The rootfs booted, the segment's host end inside it and up. Its poweroff
    takes that end (and so the whole veth pair) away with the container's
    network namespace; the segment's teardown expects that."""
    booted = Machine(
        system_rootfs, f"fdt-{segment.token}"[:64], segment.host_if,
        {plugins_dir: "/run/docker/plugins"}, tmp_path / "nspawn.log",
    )  # fmt: skip
    lab_pytest.attach(request, booted)
    try:
        seconds = booted.boot()
        print(f"\nsystemd booted in {seconds:.2f} s", file=sys.stderr)
        booted.run("ip", "link", "set", segment.host_if, "up")
        yield booted
    finally:
        booted.poweroff()
