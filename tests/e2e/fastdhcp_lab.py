"""fastdhcp under a real dockerd: the plugin process and the steps every
end-to-end test takes (a network, a container, its lease on the server)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker_lab
import docker_plugins
import labnet
import labprocess

from fastdhcp.store import Store


class FastdhcpPlugin(docker_plugins.PluginProcess):
    """``fastdhcp serve`` under a unique plugin name, its store in its workdir."""

    kind = "fastdhcp"
    extra_args: tuple[str, ...] = ()  # more serve options, set before start()

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "fastdhcp", "--log-level", "info", "serve",
            "--socket", str(self.socket), "--state-dir", str(self.state_dir),
            "--acquire-timeout", "15", *self.extra_args,
        ]  # fmt: skip

    def store_leases(self) -> dict[str, str]:
        """address -> MAC, as the plugin's store holds them."""
        with Store.open(self.state_dir, readonly=True) as store:
            return {str(lease.address): lease.mac.hex(":") for _, lease in store.leases()}

    def store_pools(self) -> list[str]:
        with Store.open(self.state_dir, readonly=True) as store:
            return [pool.pool_id for pool in store.pools()]


def network(dockerd: docker_lab.Dockerd, segment: labnet.Segment, plugin: FastdhcpPlugin,
            *extra: str, check: bool = True) -> tuple[str, Any]:  # fmt: skip
    name = dockerd.new_name("n")
    result = dockerd.docker(
        "network", "create", "-d", "macvlan", "-o", f"parent={segment.host_if}",
        "--ipam-driver", plugin.name, "--ipam-opt", f"dhcp_interface={segment.host_if}",
        *extra, name, check=check, timeout=60,
    )  # fmt: skip
    return name, result


def run(
    dockerd: docker_lab.Dockerd, net: str, image: str, *extra: str, name: str | None = None
) -> str:
    """``docker run -d`` of a sleeper on ``net``; returns its name (a fresh one
    unless ``name`` is given)."""
    name = name or dockerd.new_name("c")
    dockerd.docker("run", "-d", "--name", name, "--network", net, *extra, image,
                   "sleep", "600", timeout=60)  # fmt: skip
    return name


def server_leases(server: Any) -> dict[str, str]:
    return {record.mac: record.ip for record in server.leases()}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    labprocess.wait_for(predicate, timeout, what)


def assert_container_matches_lease(
    dockerd: docker_lab.Dockerd, name: str, server: Any, segment: labnet.Segment
) -> str:
    mac = docker_lab.container_mac(dockerd, name)
    address, prefix = docker_lab.container_ipv4(dockerd, name)
    wait_until(lambda: mac in server_leases(server), f"a lease for {mac}")
    assert server_leases(server)[mac] == address
    assert prefix == 16
    assert docker_lab.container_default_route(dockerd, name) == segment.server_ip
    return address
