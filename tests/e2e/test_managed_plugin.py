"""fastdhcp as a Docker *managed* plugin, end to end: ``scripts/build-plugin``
makes the plugin directory (a debootstrapped Debian rootfs with fastdhcp's
wheel, plus packaging/plugin/config.json), and a private dockerd (20.10, the
oldest engine, and 28.5) creates, enables, uses (across a dockerd restart),
disables and removes it, as a user would. Not 29.7: it runs a plugin in a time
namespace, which Debian 12's runc 1.1.5 cannot make ("namespace {"time" ""} does
not exist"; --feature time-namespaces=false covers containers only), and the
newer runc needs a newer glibc than this machine has.

The rootfs build is slow the first time on a machine (debootstrap, about 70 s)
and cached after that (build-plugin's cache); the build is timed and printed."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker_lab
import docker_plugins
import engines
import lab
import lab_pytest
import pytest
from fastdhcp_lab import assert_container_matches_lease, server_leases, wait_until

from fastdhcp.store import Store

pytestmark = [pytest.mark.root, pytest.mark.packaging]

ROOT = Path(__file__).resolve().parents[2]
BUILD_PLUGIN = ROOT / "scripts" / "build-plugin"
CAP_NET_RAW_MASK = 1 << 13  # linux/capability.h: CAP_NET_RAW is 13


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plugin directory, built once for this module."""
    lab_pytest.require_root("the managed-plugin build", "debootstrap and chroot")
    lab_pytest.require_binaries("the managed-plugin build", "debootstrap", "chroot", "tar")
    out = tmp_path_factory.mktemp("plugin") / "plugin"
    started = time.monotonic()
    # The wheel is built by the Python running the suite (3.11, like the rootfs's).
    lab.run(str(BUILD_PLUGIN), "--out", str(out), timeout=900,
            env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    print(f"\nscripts/build-plugin took {time.monotonic() - started:.1f} s", file=sys.stderr)
    yield out
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    # A bind-mount source must exist: runc does not create it (docs: mkdir first).
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def managed(
    dockerd: docker_lab.Dockerd, plugin_dir: Path, state_dir: Path
) -> Iterator[docker_plugins.ManagedPlugin]:
    """The plugin created (its state on ``state_dir``), not yet enabled. On the
    way out, containers and networks go first (they use it), then the plugin."""
    plugin = docker_plugins.ManagedPlugin(
        dockerd, plugin_dir, name=f"{dockerd.name}fastdhcp", settings=[f"state.source={state_dir}"]
    )
    try:
        yield plugin
    finally:
        if plugin.created and dockerd.running:
            dockerd.remove_objects()
        plugin.close()


@pytest.mark.parametrize(
    "docker_engine", [version for version in ("20.10", "28.5") if version in engines.VERSIONS]
)
def test_create_enable_use_disable_remove(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    managed: docker_plugins.ManagedPlugin, state_dir: Path,
) -> None:  # fmt: skip
    started = time.monotonic()
    managed.create()
    created = time.monotonic()
    managed.enable()
    enabled = time.monotonic()
    info = managed.inspect()
    assert info["Enabled"] is True
    assert info["Config"]["Interface"]["Types"] == ["docker.ipamdriver/1.0"]
    # dockerd 20.10 puts the socket in /run/docker/plugins/<id>/, not in its exec-root.
    socket = managed.socket()
    assert socket == docker_lab.PLUGIN_DIR / info["Id"] / "fastdhcp.sock"
    lab.wait_for(socket.exists, 10, f"the plugin's socket {socket}")
    # Least privilege: Docker gives a plugin its default capabilities plus those
    # config.json asks for; the entrypoint (setpriv) keeps CAP_NET_RAW alone.
    (pid,) = {p for d in docker_lab.cgroup_dirs(info["Id"]) for p in docker_lab.cgroup_pids(d)}
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["Name"].startswith("fastdhcp") or "python" in status["Name"], status["Name"]
    assert {key: int(status[key], 16) for key in ("CapEff", "CapPrm", "CapBnd")} == dict.fromkeys(
        ("CapEff", "CapPrm", "CapBnd"), CAP_NET_RAW_MASK
    )
    assert status["NoNewPrivs"].strip() == "1"

    net = dockerd.new_name("n")
    dockerd.docker(
        "network", "create", "-d", "macvlan", "-o", f"parent={segment.host_if}",
        "--ipam-driver", managed.driver, "--ipam-opt", f"dhcp_interface={segment.host_if}",
        net, timeout=60,
    )  # fmt: skip
    name = dockerd.new_name("c")
    dockerd.docker("run", "-d", "--restart", "always", "--name", name, "--network", net, busybox,
                   *docker_lab.SLEEPER, timeout=60)  # fmt: skip
    assert_container_matches_lease(dockerd, name, dnsmasq, segment)

    # dockerd restarts: the plugin is started again with it, before the container
    # (which gets a new random MAC, so a new lease; the old one was released as
    # dockerd stopped the container, the plugin still up).
    old_mac = docker_lab.container_mac(dockerd, name)
    dockerd.restart()
    restarted = time.monotonic()
    running = ("inspect", "-f", "{{.State.Running}}", name)
    wait_until(lambda: dockerd.docker(*running).stdout.strip() == "true", "the container back")
    assert managed.inspect()["Enabled"] is True
    address = assert_container_matches_lease(dockerd, name, dnsmasq, segment)
    mac = docker_lab.container_mac(dockerd, name)
    if mac != old_mac:
        wait_until(lambda: old_mac not in server_leases(dnsmasq), "the old MAC's release")
    # The lease store is the host's directory (the settable "state" mount).
    with Store.open(state_dir, readonly=True) as store:
        assert {str(lease.address): lease.mac.hex(":") for _, lease in store.leases()} == {
            address: mac
        }

    dockerd.docker("rm", "-f", name, timeout=60)
    wait_until(lambda: mac not in server_leases(dnsmasq), "the removed container's release")
    dockerd.docker("network", "rm", net, timeout=60)
    used = time.monotonic()

    managed.disable()
    managed.remove()
    managed.created = False
    assert not docker_lab.cgroup_dirs(info["Id"])  # the plugin's process is gone
    assert managed.name not in dockerd.docker("plugin", "ls", "--format", "{{.Name}}").stdout
    assert not socket.parent.exists()
    print(
        f"\nplugin create {created - started:.1f} s, enable {enabled - created:.1f} s, "
        f"network+container+dockerd restart {restarted - enabled:.1f} s, "
        f"container back+release {used - restarted:.1f} s, "
        f"disable+rm {time.monotonic() - used:.1f} s",
        file=sys.stderr,
    )
