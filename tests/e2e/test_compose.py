"""The README's compose.yaml, run as written (bar the interface, the plugin's
name and the image) against a private dockerd, with the Compose Debian ships
for that engine: docker-compose 1.29 (bookworm) with 20.10, Compose v2 (sid)
with 28.5."""

from __future__ import annotations

import re
from pathlib import Path

import docker_lab
import docker_plugins
import engines
import lab
import lab_pytest
import pytest
from fastdhcp_lab import FastdhcpPlugin, assert_container_matches_lease, server_leases, wait_until

pytestmark = pytest.mark.root

COMPOSE_ENGINES = [version for version in ("20.10", "28.5") if version in engines.VERSIONS]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_compose_file() -> str:
    """The compose.yaml block under the README's "Docker Compose" paragraph."""
    text = README.read_text()
    found = re.search(r"\*\*Docker Compose\.\*\*.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert found, "README.md has no compose.yaml example"
    return found.group(1)


@pytest.fixture
def fastdhcp(
    request: pytest.FixtureRequest, plugins: list[docker_plugins.PluginProcess], tmp_path: Path,
    segment: lab.Segment,
) -> FastdhcpPlugin:  # fmt: skip
    """serve as the README says to run it for Compose v2, which sends a network's
    IPAM driver without its options (docker/compose#13785): --dhcp-interface."""
    plugin = FastdhcpPlugin(tmp_path / "fastdhcp")
    plugin.extra_args = ("--dhcp-interface", segment.host_if)
    plugins.append(plugin)
    lab_pytest.attach(request, plugin)
    plugin.start()
    return plugin


@pytest.mark.parametrize("docker_engine", COMPOSE_ENGINES)
def test_the_readme_compose_file_gets_a_lease_per_service(
    docker_engine: str, dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment,
    dnsmasq: lab.Dnsmasq, fastdhcp: FastdhcpPlugin, tmp_path: Path,
) -> None:  # fmt: skip
    compose = dockerd.engine.compose
    if compose is None:
        lab_pytest.unavailable(
            f"no docker-compose for Docker {docker_engine} (Debian's docker-compose)"
        )
        return
    version = lab.run(str(compose), "version", env=dockerd.env()).stdout
    print(f"\nDocker {docker_engine} with {version.splitlines()[0]}")
    text = readme_compose_file()
    text = text.replace("parent: eth0", f"parent: {segment.host_if}")
    text = text.replace("dhcp_interface: eth0", f"dhcp_interface: {segment.host_if}")
    text = text.replace("driver: fastdhcp", f"driver: {fastdhcp.name}")
    text = text.replace("image: busybox", f"image: {busybox}")
    (tmp_path / "compose.yaml").write_text(text)
    project = dockerd.new_name("p")

    def compose_run(*args: str) -> str:
        return lab.run(compose, "-p", project, "-f", str(tmp_path / "compose.yaml"), *args,
                       env=dockerd.env(), timeout=120).stdout  # fmt: skip

    compose_run("up", "-d")
    ids = compose_run("ps", "-q").split()
    assert len(ids) == 2
    addresses = {assert_container_matches_lease(dockerd, cid, dnsmasq, segment) for cid in ids}
    assert len(addresses) == 2 and set(fastdhcp.store_leases()) == addresses
    compose_run("down")
    wait_until(lambda: server_leases(dnsmasq) == {}, "every service's lease released")
    assert fastdhcp.store_leases() == {} and fastdhcp.store_pools() == []
