"""packaging/systemd/fastdhcp.service, run by a real systemd (issue 14): the
unit as a host installs it, started, restarted and stopped with systemctl, an
address leased through its socket from dnsmasq on a veth moved into the machine,
and the least privilege it claims checked where the kernel keeps it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import lab
import pytest
from machine import Machine
from serve_process import MAC_OPTION, call

pytestmark = [pytest.mark.root, pytest.mark.packaging]

CAP_NET_RAW_MASK = 1 << 13  # linux/capability.h: CAP_NET_RAW is 13
UNIT = "fastdhcp.service"
MAC = "02:42:0a:63:00:07"


def ipam(sock: Path, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async def one() -> tuple[int, dict[str, Any]]:
        connector = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=connector) as session:
            return await call(session, method, body)

    return asyncio.run(one())


def wait_serving(machine: Machine, sock: Path) -> int:
    """The unit's main PID (as the machine numbers it), once its socket answers."""

    def answers() -> bool:
        try:
            return ipam(sock, "GetCapabilities", {})[0] == 200
        except (OSError, aiohttp.ClientError):
            return False

    try:
        lab.wait_for(answers, 30, f"{UNIT} answering on {sock}")
    except lab.LabError as exc:
        state = machine.systemctl("status", UNIT, check=False).stdout
        raise AssertionError(f"{exc}\n{state}\n{machine.journal(UNIT)[-4000:]}") from None
    return int(machine.show(UNIT, "MainPID"))


def proc_status(machine: Machine, pid: int) -> dict[str, str]:
    text = machine.run("cat", f"/proc/{pid}/status").stdout
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())
    }


def test_the_unit_under_systemd_leases_keeps_and_holds_least_privilege(
    machine: Machine, segment: lab.Segment, dnsmasq: lab.Dnsmasq, plugins_dir: Path
) -> None:
    sock = plugins_dir / "fastdhcp.sock"
    # A stand-in for dockerd's API socket, there before the unit starts, as on a host.
    machine.run(
        "python3", "-c", "import socket; socket.socket(socket.AF_UNIX).bind('/run/docker.sock')"
    )

    machine.systemctl("start", UNIT)
    pid = wait_serving(machine, sock)
    assert machine.show(UNIT, "ActiveState") == "active"

    # Least privilege, as the kernel keeps it: a user of its own, CAP_NET_RAW
    # and nothing else (not even in the bounding set), no new privileges, a
    # seccomp filter, Docker's socket masked, and the plugin socket owner-only.
    status = proc_status(machine, pid)
    uid = int(status["Uid"].split()[0])
    assert uid >= 61184, status["Uid"]  # systemd's DynamicUser= range (61184-65519)
    caps = {key: int(status[key], 16) for key in ("CapEff", "CapPrm", "CapAmb", "CapBnd")}
    assert caps == dict.fromkeys(caps, CAP_NET_RAW_MASK), caps
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")
    masked = machine.run("stat", "-c", "%a %U", f"/proc/{pid}/root/run/docker.sock").stdout.split()
    assert masked[0] == "0", masked
    # The socket is systemd's (fastdhcp.socket), in dockerd's 0700 directory,
    # which the service could not even enter.
    assert (sock.stat().st_uid, sock.stat().st_mode & 0o777) == (0, 0o600)
    assert plugins_dir.stat().st_mode & 0o777 == 0o700
    state = machine.run("stat", "-L", "-c", "%a %u", "/var/lib/fastdhcp").stdout.split()
    assert state == ["700", str(uid)], state  # the store: the service user's alone
    assert machine.show(UNIT, "IPAddressDeny") != ""
    # journald, the first unit with IPAddressDeny=, would have said so at boot.
    assert "firewalling is not supported" not in machine.log_text()

    # A pool whose server answers unicast to the container's MAC: the hardest
    # receive path (promiscuous membership), with CAP_NET_RAW alone.
    status_code, pool = ipam(sock, "RequestPool", {"Options": {
        "dhcp_interface": segment.host_if, "promiscuous": "true", "broadcast": "false"}})  # fmt: skip
    assert status_code == 200, pool
    body = {"PoolID": pool["PoolID"], "Address": "", "Options": {MAC_OPTION: MAC}}
    status_code, reply = ipam(sock, "RequestAddress", body)
    assert status_code == 200, reply
    address = reply["Address"].split("/")[0]
    assert [(lease.mac, lease.ip) for lease in dnsmasq.leases()] == [(MAC, address)]
    journal = machine.journal(UNIT)
    assert f"event=acquired mac={MAC} address={address}" in journal, journal

    # root beside it, as an operator: fastdhcp status and fastdhcp leases.
    up = machine.run("fastdhcp", "status")
    assert "daemon   up, on /run/docker/plugins/fastdhcp.sock" in up.stdout, up.stdout
    held = json.loads(machine.run("fastdhcp", "leases", "--json").stdout)
    assert [(row["mac"], row["address"]) for row in held] == [(MAC, address)], held

    # systemctl restart: a new process, the lease kept (Docker's replay gets
    # it). A call made while it restarts waits in the socket's queue.
    machine.systemctl("restart", "--no-block", UNIT)
    status_code, replay = ipam(sock, "RequestAddress", body)
    assert (status_code, replay["Address"].split("/")[0]) == (200, address), replay
    lab.wait_for(
        lambda: machine.show(UNIT, "MainPID") not in ("0", str(pid))
        and machine.show(UNIT, "ActiveState") == "active",
        30, f"{UNIT} restarted",
    )  # fmt: skip
    wait_serving(machine, sock)

    # systemctl stop: the lease is kept too (the container still runs), in the
    # store and at the server; nothing was released. (The socket stays, and a
    # call would start the service again: stop fastdhcp.socket too to prevent it.)
    machine.systemctl("stop", UNIT)
    assert machine.show(UNIT, "ActiveState") == "inactive"
    assert machine.show(UNIT, "Result") == "success"
    held = json.loads(machine.run("fastdhcp", "leases", "--json").stdout)
    assert [(row["mac"], row["address"]) for row in held] == [(MAC, address)], held
    assert [(lease.mac, lease.ip) for lease in dnsmasq.leases()] == [(MAC, address)]
    journal = machine.journal(UNIT)
    assert "event=released" not in journal and "leases are kept" in journal, journal
    print(f"\n{UNIT} under systemd: leased {address}, kept over restart and stop", file=sys.stderr)


SCRAPE = """
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=3) as reply:
        print(reply.read().decode())
except OSError as exc:
    sys.exit(f"no scrape: {exc}")
"""


def drop_in(machine: Machine, text: str) -> None:
    """A runtime drop-in (gone at the next boot), as `systemctl edit --runtime`."""
    machine.run("sh", "-c", "mkdir -p /run/systemd/system/fastdhcp.service.d && "
                "cat > /run/systemd/system/fastdhcp.service.d/metrics.conf", input=text)  # fmt: skip
    machine.systemctl("daemon-reload")


def test_metrics_take_the_readme_drop_in_and_no_other_ip_traffic_passes(
    machine: Machine, plugins_dir: Path
) -> None:
    sock = plugins_dir / "fastdhcp.sock"
    serve = machine.show(UNIT, "ExecStart").split("argv[]=")[1].split(" ;")[0]
    # --metrics and the IP family it needs, but no IPAddressAllow=: the unit's
    # IPAddressDeny=any drops the scrape, even from the machine itself.
    drop_in(machine, f"[Service]\nExecStart=\nExecStart={serve} --metrics 127.0.0.1:9464\n"
                     "RestrictAddressFamilies=AF_INET\n")  # fmt: skip
    machine.systemctl("start", UNIT)
    wait_serving(machine, sock)
    fenced = machine.run("python3", "-c", SCRAPE, check=False)
    assert fenced.returncode != 0, fenced.stdout[:200]
    # The README's drop-in: IPAddressAllow= for the scraper's address.
    drop_in(machine, f"[Service]\nExecStart=\nExecStart={serve} --metrics 127.0.0.1:9464\n"
                     "RestrictAddressFamilies=AF_INET\nIPAddressAllow=localhost\n")  # fmt: skip
    machine.systemctl("restart", UNIT)
    wait_serving(machine, sock)
    scraped = machine.run("python3", "-c", SCRAPE, check=False)
    assert scraped.returncode == 0, scraped.stderr
    assert 'fastdhcp_lease_events_total{event="acquired"} 0.0' in scraped.stdout
