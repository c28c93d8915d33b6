"""Fixtures for the end-to-end lab: a real dockerd (see docker_lab.py) beside
the integration lab's segments (tests/integration/lab.py, imported, not copied).

Same rules as tests/integration/conftest.py: every fixture needs root and real
binaries; where they are missing the test is *skipped* with a reason naming what
is missing, and ``FASTDHCP_REQUIRE_LAB=1`` (CI) turns those skips into failures.

Scope. ``dockerd`` is function-scoped: on this kind of machine a private
dockerd answers ``docker version`` about 0.2 s after exec, and its teardown
(containers, networks, stop, unmounts) takes about 1 s; the busybox image
imports in about 0.2 s. So every test gets a fresh daemon, and no test can see
another's networks, containers or cached plugin capabilities.

Order. Plugins must outlive the dockerd that uses them: removing a network whose
IPAM plugin is gone makes dockerd retry the plugin for up to 30 s. So
``dockerd`` depends on ``plugins`` (set up first, torn down last), and every
plugin a test starts through ``probe_plugin`` is registered there.

When a test fails, the tails of dockerd's log and of each plugin's log (for the
probe: every request it recorded) are attached to the report.

Engines. ``dockerd`` runs the system's 20.10 unless a test parametrizes
``docker_engine`` (``@pytest.mark.parametrize("docker_engine", engines.VERSIONS)``):
then the engine (engines.py) is fetched or built on first use, cached, and the
time that took is printed. An engine the machine cannot have is a skip like any
missing prerequisite (a failure under ``FASTDHCP_REQUIRE_LAB=1``), except the
one built from the shared engines dir (29.7): without that dir, on a user's
machine, its cases skip in every mode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))
import dhcp_servers
import docker_lab
import docker_plugins
import engines
import lab_pytest
import labnet
import labprocess
from fastdhcp_lab import FastdhcpPlugin

WHO = "the e2e lab"


def require_busybox(path: str = "/bin/busybox") -> str:
    if not os.access(path, os.X_OK):
        lab_pytest.unavailable(
            f"the e2e lab builds its image from a static {path} (apt-get install busybox-static)"
        )
    return path


@pytest.fixture(scope="session")
def e2e_session() -> Iterator[None]:
    """Root and binaries check, and removal of what a crashed earlier run left
    (segments, dockerd roots, plugin sockets whose owner is dead)."""
    lab_pytest.require_root(WHO, "dockerd, namespaces, veth")
    lab_pytest.require_binaries(WHO, "ip", "umount", "dockerd", "docker", "containerd", "runc")
    labnet.cleanup_stale()
    docker_lab.cleanup_stale()
    yield


@pytest.fixture
def segment(e2e_session: None) -> Iterator[labnet.Segment]:
    """A fresh one-server segment (tests/integration/lab.py): host_if in the
    root namespace, no address <-veth-> server_if (10.99.0.2/16) in ``netns``."""
    with labnet.Segment() as seg:
        yield seg


@pytest.fixture
def plugins(e2e_session: None) -> Iterator[list[docker_plugins.PluginProcess]]:
    """Plugins started for this test; closed after dockerd (see module doc)."""
    started: list[docker_plugins.PluginProcess] = []
    yield started
    errors = []
    for plugin in reversed(started):
        try:
            plugin.close()
        except Exception as exc:  # noqa: BLE001 (close every plugin, then report)
            errors.append(f"{plugin.name}: {exc}")
    if errors:
        raise labprocess.LabError(f"plugin teardown failed: {errors}")


def require_engine(version: str) -> None:
    """Skip (see the module doc) if this machine cannot have the engine."""
    reason = engines.unavailable_reason(version)
    if reason is None:
        return
    what = f"Docker {engines.spec(version).upstream} ({version}) is unavailable: {reason}"
    if engines.spec(version).source == "build":
        pytest.skip(what)
    lab_pytest.unavailable(what)


@pytest.fixture
def docker_engine() -> str:
    """Which engine ``dockerd`` runs: the system's unless a test parametrizes it."""
    return engines.SYSTEM


@pytest.fixture
def dockerd(
    request: pytest.FixtureRequest,
    plugins: list[docker_plugins.PluginProcess],
    tmp_path: Path,
    docker_engine: str,
) -> Iterator[docker_lab.Dockerd]:
    """A private dockerd, started; its log stays in ``tmp_path/dockerd``.
    Indirect parametrization gives extra dockerd arguments (``["--live-restore"]``)."""
    extra = list(getattr(request, "param", None) or ())
    require_engine(docker_engine)
    d = docker_lab.Dockerd(log_dir=tmp_path / "dockerd", extra_args=extra, engine=docker_engine)
    if d.engine.seconds:
        print(f"\nDocker {docker_engine}: fetched or built in {d.engine.seconds:.1f} s",
              file=sys.stderr)  # fmt: skip
    lab_pytest.attach(request, d)
    try:
        d.start()
        yield d
    finally:
        d.close()


@pytest.fixture
def busybox(dockerd: docker_lab.Dockerd) -> str:
    """The tag of the offline busybox image on ``dockerd``."""
    return docker_lab.busybox_image(dockerd, busybox=require_busybox())


@pytest.fixture
def probe_plugin(
    request: pytest.FixtureRequest,
    plugins: list[docker_plugins.PluginProcess],
    tmp_path: Path,
) -> Callable[..., docker_plugins.ProbePlugin]:
    """Factory: ``probe_plugin(**ProbePlugin options)`` starts a recording
    IPAM plugin (probe_plugin.py) with a unique name and returns it. Its
    ``calls.jsonl`` stays in ``tmp_path/probe<N>``."""

    def start(**options: Any) -> docker_plugins.ProbePlugin:
        plugin = docker_plugins.ProbePlugin(tmp_path / f"probe{len(plugins)}", **options)
        plugins.append(plugin)
        lab_pytest.attach(request, plugin)
        plugin.start()
        return plugin

    return start


@pytest.fixture
def fastdhcp(
    request: pytest.FixtureRequest, plugins: list[docker_plugins.PluginProcess], tmp_path: Path
) -> FastdhcpPlugin:
    plugin = FastdhcpPlugin(tmp_path / "fastdhcp")
    plugins.append(plugin)
    lab_pytest.attach(request, plugin)
    plugin.start()
    return plugin


@pytest.fixture
def dnsmasq(segment: labnet.Segment, tmp_path: Path) -> Iterator[dhcp_servers.Dnsmasq]:
    with dhcp_servers.Dnsmasq(segment, workdir=tmp_path / "dnsmasq") as server:
        yield server
