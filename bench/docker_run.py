#!/usr/bin/env python3
"""Container start-up cost of fastdhcp: ``docker run --rm IMAGE true`` on a macvlan
network with fastdhcp, against the same network with Docker's default IPAM.

    sudo .venv/bin/python bench/docker_run.py [--runs 20] [--json OUT]

One private dockerd 20.10 (vfs) and two macvlan networks, each on its own veth
(Docker allows one macvlan network per parent): one with ``--ipam-driver``
fastdhcp (discovery) and dnsmasq in a namespace behind it, one with the default
IPAM and ``--subnet``. The runs alternate between the two, so drift in the machine
hits both alike. Reports the median, and fastdhcp's median over the default's
(target: at most 1.1x).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "tests" / "integration"),
    str(Path(__file__).resolve().parents[1] / "tests" / "e2e"),
]

import docker_lab
import docker_plugins
import lab


class Fastdhcp(docker_plugins.PluginProcess):
    kind = "fastdhcp"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "fastdhcp", "serve", "--socket", str(self.socket),
            "--state-dir", str(self.workdir / "state"),
        ]  # fmt: skip


def timed_run(dockerd: docker_lab.Dockerd, network: str, image: str) -> float:
    started = time.perf_counter()
    dockerd.docker("run", "--rm", "--network", network, image, "true", timeout=120)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    lab.cleanup_stale()
    docker_lab.cleanup_stale()
    with (
        lab.Segment() as segment,
        lab.Segment() as plain,
        lab.Dnsmasq(segment),
        Fastdhcp() as plugin,
        docker_lab.Dockerd() as dockerd,
    ):
        image = docker_lab.busybox_image(dockerd)
        parent = segment.host_if
        dhcp = dockerd.new_name("n")
        dockerd.docker("network", "create", "-d", "macvlan", "-o", f"parent={parent}",
                       "--ipam-driver", plugin.name, "--ipam-opt",
                       f"dhcp_interface={parent}", dhcp)  # fmt: skip
        default = dockerd.new_name("n")
        dockerd.docker("network", "create", "-d", "macvlan", "-o",
                       f"parent={plain.host_if}", "--subnet", "10.98.0.0/16",
                       default)  # fmt: skip
        for network in (dhcp, default):  # warm both paths once
            timed_run(dockerd, network, image)
        times: dict[str, list[float]] = {"fastdhcp": [], "default IPAM": []}
        for _ in range(args.runs):
            times["fastdhcp"].append(timed_run(dockerd, dhcp, image))
            times["default IPAM"].append(timed_run(dockerd, default, image))
        for network in (dhcp, default):
            dockerd.docker("network", "rm", network)

    medians = {peer: statistics.median(values) for peer, values in times.items()}
    print(f"docker run --rm ... true on macvlan, {args.runs} runs each, interleaved")
    print(f"{'IPAM':<14}{'median s':>10}{'min s':>9}{'max s':>9}")
    for peer, values in times.items():
        print(f"{peer:<14}{medians[peer]:>10.3f}{min(values):>9.3f}{max(values):>9.3f}")
    ratio = medians["fastdhcp"] / medians["default IPAM"]
    verdict = "PASS" if ratio <= 1.1 else "MISS"
    print(f"\n  {verdict}  {ratio:.2f}x  fastdhcp median <= 1.1x the default IPAM's")
    if args.json:
        args.json.write_text(json.dumps({"times": times, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
