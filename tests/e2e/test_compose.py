"""The README's compose.yaml, run as written (bar the interface, the plugin's
name and the image) with Debian's docker-compose against a private dockerd."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import docker_lab
import lab
import lab_pytest
import pytest
from fastdhcp_lab import FastdhcpPlugin, assert_container_matches_lease, server_leases, wait_until

pytestmark = pytest.mark.root

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_compose_file() -> str:
    """The compose.yaml block under the README's "Docker Compose" paragraph."""
    text = README.read_text()
    found = re.search(r"\*\*Docker Compose\.\*\*.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert found, "README.md has no compose.yaml example"
    return found.group(1)


def test_the_readme_compose_file_gets_a_lease_per_service(
    dockerd: docker_lab.Dockerd, busybox: str, segment: lab.Segment, dnsmasq: lab.Dnsmasq,
    fastdhcp: FastdhcpPlugin, tmp_path: Path,
) -> None:  # fmt: skip
    compose = shutil.which("docker-compose")
    if compose is None:
        lab_pytest.unavailable("docker-compose is not installed (Debian's docker-compose)")
        return
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
