"""Tests of the lab itself: segments, dnsmasq/Kea, udhcpc, perfdhcp.

They use busybox udhcpc (and a hand-built DISCOVER probe) as the client, never
fastdhcp's engine, so a failure here means the lab is broken, not the project.
The parser tests at the bottom need neither root nor binaries.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dhcp_clients
import dhcp_probe
import dhcp_servers
import labnet
import labprocess
import pytest

Require = Callable[..., None]

root = pytest.mark.root


def _addr_info(ifname: str, netns: str | None = None) -> list[dict[str, object]]:
    out = labprocess.run("ip", "-j", "addr", "show", "dev", ifname, netns=netns).stdout
    return json.loads(out)[0]["addr_info"]  # type: ignore[no-any-return]


def _wait_gone(
    server: dhcp_servers.Dnsmasq | dhcp_servers.Kea, ip: str, timeout: float = 5.0
) -> None:
    labprocess.wait_for(
        lambda: all(le.ip != ip for le in server.leases()),
        timeout,
        f"{server.name} to drop the lease of {ip}",
    )


# --------------------------------------------------------------------------
# segments


@root
def test_segment_topology(segment: labnet.Segment) -> None:
    names = [segment.host_if, segment.server_if, segment.netns]
    assert all(n.startswith("fdt") and len(n) <= 15 for n in names), names
    # host end: root namespace, up, IPv6 off, no IPv4 address
    assert segment.host_if in labnet._link_names()
    ipv6 = Path(f"/proc/sys/net/ipv6/conf/{segment.host_if}/disable_ipv6")
    assert ipv6.read_text().strip() == "1"
    assert _addr_info(segment.host_if) == []
    assert segment.host_mac == labnet._link_mac(segment.host_if)
    # server end: in its namespace with the default address
    assert segment.netns in labnet.netns_list()
    assert segment.server_ip == "10.99.0.2"
    addrs = [(a["local"], a["prefixlen"]) for a in _addr_info(segment.server_if, segment.netns)]
    assert addrs == [("10.99.0.2", 16)]
    assert (
        segment.run_in_ns("cat", f"/sys/class/net/{segment.server_if}/address").stdout.strip()
        == segment.server_mac
    )
    # static ARP entry in the server namespace
    segment.neigh_add("10.99.7.7", "02:00:00:00:07:07")
    neigh = segment.run_in_ns("ip", "neigh", "show", "10.99.7.7").stdout
    assert "02:00:00:00:07:07" in neigh and "PERMANENT" in neigh
    # a plain segment has no bridge to add servers to
    with pytest.raises(labprocess.LabError):
        segment.add_server()


@root
def test_segment_is_silent(segment: labnet.Segment) -> None:
    """Neither the host end nor the server namespace sends anything by itself
    (no IPv6 RS/DAD/MLD, no IPv4 on the host end) - captures stay clean."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)) as s:
        s.bind((segment.host_if, 0))
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            frame = s.recv(2048)
            pytest.fail(f"unexpected frame on {segment.host_if}: {frame[:64].hex()}")


@root
def test_segment_with_host_address(lab_session: None) -> None:
    with labnet.Segment(host_address="10.99.0.1/16") as seg:
        assert [(a["local"], a["prefixlen"]) for a in _addr_info(seg.host_if)] == [
            ("10.99.0.1", 16)
        ]


@root
def test_teardown_leaves_nothing(lab_session: None) -> None:
    """Namespaces, veths, bridge, macvlan, state file and stray processes all go,
    also when the body raised."""
    with pytest.raises(RuntimeError, match="boom"), labnet.Segment(servers=2) as seg:
        seg.add_client()
        sleeper = subprocess.Popen(["ip", "netns", "exec", seg.servers[1].netns, "sleep", "60"])
        assert len(labnet.lab_leftovers(seg.token)) == 5  # hub, s0, s1, c0 + host link
        raise RuntimeError("boom")
    assert labnet.lab_leftovers(seg.token) == []
    assert sleeper.wait(5) == -9
    assert not (labnet.STATE_DIR / seg.token).exists()
    # and nobody else's interfaces were touched: only lab names ever vanish
    seg.close()  # idempotent


@root
def test_cleanup_stale_removes_dead_owners_only(lab_session: None) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed = labnet.Segment()
    crashed.open()
    # pretend its owner crashed: the state file names a pid that is gone
    (labnet.STATE_DIR / crashed.token).write_text(f"{dead.pid}\n")
    labnet._LIVE_SEGMENTS.discard(crashed)
    with labnet.Segment() as alive:
        removed = labnet.cleanup_stale()
        assert f"netns {crashed.netns}" in removed
        assert labnet.lab_leftovers(crashed.token) == []
        assert len(labnet.lab_leftovers(alive.token)) == 2  # untouched


@root
def test_two_servers_on_one_segment(require: Require, tmp_path: Path) -> None:
    """Segment(servers=2): both servers see the same broadcast and both answer;
    a real client gets a lease from one of them."""
    require("dnsmasq", "kea-dhcp4", "busybox")
    with labnet.Segment(servers=2) as seg:
        assert [s.ip for s in seg.servers] == ["10.99.0.2", "10.99.0.3"]
        s0, s1 = seg.servers
        with (
            dhcp_servers.Dnsmasq(
                seg,
                server=s0,
                range_start="10.99.1.0",
                range_end="10.99.100.255",
                workdir=tmp_path / "dnsmasq",
            ) as dnsmasq,
            dhcp_servers.Kea(
                seg, server=s1, pool=("10.99.101.0", "10.99.200.255"), workdir=tmp_path / "kea"
            ) as kea,
        ):
            offers = dhcp_probe.probe_offers(seg, timeout=1.5)
            by_server = {o.server_id: o for o in offers}
            assert set(by_server) == {"10.99.0.2", "10.99.0.3"}, offers
            assert by_server["10.99.0.2"].src_mac == s0.mac
            assert by_server["10.99.0.3"].src_mac == s1.mac
            assert ipaddress.IPv4Address(by_server["10.99.0.3"].yiaddr) >= ipaddress.IPv4Address(
                "10.99.101.0"
            )

            with dhcp_clients.Udhcpc(seg) as client:
                bound = client.wait_bound()
                winner = dnsmasq if bound["serverid"] == s0.ip else kea
                assert [le.ip for le in winner.leases() if le.mac == client.mac] == [bound["ip"]]
            _wait_gone(winner, bound["ip"])
        # add_server on a live bridged segment
        s2 = seg.add_server()
        assert s2.ip == "10.99.0.4"
        seg.servers[0].run("busybox", "ping", "-c1", "-W2", s2.ip)


# --------------------------------------------------------------------------
# servers (each test runs against dnsmasq and Kea)


@root
def test_server_starts_and_stops(dhcp_server: dhcp_servers.Dnsmasq | dhcp_servers.Kea) -> None:
    assert dhcp_server.running
    assert dhcp_server.server_ip == "10.99.0.2"
    assert dhcp_server.leases() == []
    assert dhcp_server.stop() == 0, dhcp_server.log_tail()
    assert not dhcp_server.running
    dhcp_server.restart()
    assert dhcp_server.running
    dhcp_server.kill()
    assert not dhcp_server.running
    assert dhcp_server.proc is not None and dhcp_server.proc.returncode == -9


@root
def test_udhcpc_lease_and_release(
    dhcp_server: dhcp_servers.Dnsmasq | dhcp_servers.Kea, udhcpc: dhcp_clients.Udhcpc
) -> None:
    udhcpc.start()
    bound = udhcpc.wait_bound()
    assert bound["serverid"] == dhcp_server.server_ip
    assert bound["router"] == dhcp_server.server_ip
    ip = bound["ip"]
    assert (
        ipaddress.IPv4Address("10.99.1.0")
        <= ipaddress.IPv4Address(ip)
        <= ipaddress.IPv4Address("10.99.250.255")
    )
    assert f"{ip}/16" in udhcpc.client.addresses()

    leases = dhcp_server.leases()
    assert [(le.mac, le.ip) for le in leases] == [(udhcpc.mac, ip)]
    assert leases[0].expiry >= time.time() + 60  # 120 s lease

    assert udhcpc.stop() == 0  # -R: DHCPRELEASE on exit
    _wait_gone(dhcp_server, ip)
    if isinstance(dhcp_server, dhcp_servers.Kea):
        # append-only memfile: the release is a new row for the address with
        # valid_lifetime 0 and expire = the lease's cltt (grant time), not a
        # removed line and not the release time
        rows = [r for r in dhcp_server.lease_rows() if r["address"] == ip]
        assert [r["valid_lifetime"] for r in rows] == ["120", "0"]
        assert int(rows[1]["expire"]) == int(rows[0]["expire"]) - 120


@root
def test_kea_restart_keeps_leases(kea: dhcp_servers.Kea, udhcpc: dhcp_clients.Udhcpc) -> None:
    udhcpc.release_on_exit = False
    ip = udhcpc.once()["ip"]
    assert [le.ip for le in kea.leases()] == [ip]
    kea.restart(keep_leases=True)
    assert [le.ip for le in kea.leases()] == [ip]
    kea.restart(keep_leases=False)
    assert kea.leases() == []


@root
def test_kea_control_socket(require: Require, segment: labnet.Segment, tmp_path: Path) -> None:
    require("kea-dhcp4")
    with dhcp_servers.Kea(segment, control_socket=True, workdir=tmp_path / "kea") as kea:
        reply = kea.command("status-get")
        assert reply["result"] == 0, reply
        assert reply["arguments"]["pid"] == kea.pid


@root
def test_kea_expiry_is_reclaimed(require: Require, tmp_path: Path) -> None:
    """An expired lease: Kea appends a state-2 (expired-reclaimed) row, later a
    valid_lifetime-0 row; leases() drops it as soon as the state-2 row exists."""
    require("kea-dhcp4", "busybox")
    fast = {
        "expired-leases-processing": {
            "reclaim-timer-wait-time": 1,
            "flush-reclaimed-timer-wait-time": 1,
            "hold-reclaimed-time": 1,
        }
    }
    with (
        labnet.Segment() as seg,
        dhcp_servers.Kea(seg, valid_lifetime=2, extra=fast, workdir=tmp_path / "kea") as kea,
        contextlib.closing(dhcp_clients.Udhcpc(seg, release_on_exit=False)) as client,
    ):
        ip = client.once()["ip"]  # exits holding the lease: no renew, no release
        assert [le.ip for le in kea.leases()] == [ip]
        labprocess.wait_for(
            lambda: [r["valid_lifetime"] for r in kea.lease_rows()] == ["2", "2", "0"],
            10,
            "Kea to reclaim and then flush the lease",
        )
        rows = kea.lease_rows()
        assert [r["state"] for r in rows[:2]] == ["0", "2"]
        assert kea.leases() == []
        assert dhcp_servers.kea_active_leases(rows[:2]) == []


@root
def test_perfdhcp_against_kea(require: Require, tmp_path: Path) -> None:
    require("kea-dhcp4", "perfdhcp")
    # perfdhcp works as a relay and needs an address on the host end
    with (
        labnet.Segment(host_address="10.99.0.1/16") as seg,
        dhcp_servers.Kea(seg, persist=False, workdir=tmp_path / "kea"),
    ):
        report = dhcp_clients.Perfdhcp(seg).run(rate=100, seconds=3)
    assert report["exchange"] == "4-way"
    assert report["rate"] > 0
    for kind in ("DISCOVER-OFFER", "REQUEST-ACK"):
        stats = report["exchanges"][kind]
        assert stats["sent_packets"] > 0
        assert stats["received_packets"] > 0
        assert stats["drops"] <= stats["sent_packets"]


# --------------------------------------------------------------------------
# parsers (no root needed)

DNSMASQ_LEASES = """\
1795869816 FA:BC:12:1b:0f:f1 10.99.65.237 * 01:fa:bc:12:1b:0f:f1
0 02:00:00:00:00:02 10.99.1.2 box *
"""

KEA_CSV = """\
address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context
10.99.1.0,e6:58:1d:26:4f:13,01:e6:58:1d:26:4f:13,120,1795869827,1,0,0,,0,
10.99.1.1,aa:00:00:00:00:01,,120,1795869830,1,0,0,a&#x2cb,0,
10.99.1.0,e6:58:1d:26:4f:13,01:e6:58:1d:26:4f:13,0,1795869707,1,0,0,,0,
10.99.1.2,aa:00:00:00:00:02,,4,1795869718,1,0,0,,2,
"""


def test_parse_dnsmasq_leases() -> None:
    a, b = dhcp_servers.parse_dnsmasq_leases(DNSMASQ_LEASES)
    assert (a.expiry, a.mac, a.ip, a.hostname, a.client_id) == (
        1795869816,
        "fa:bc:12:1b:0f:f1",
        "10.99.65.237",
        None,
        "01:fa:bc:12:1b:0f:f1",
    )
    assert (b.expiry, b.hostname, b.client_id) == (0, "box", None)


def test_kea_replay() -> None:
    """Last row per address wins; valid_lifetime 0 = released/deleted; state 2 =
    expired-reclaimed (not active either)."""
    leases = dhcp_servers.kea_active_leases(dhcp_servers.parse_kea_csv(KEA_CSV))
    assert [(le.ip, le.mac, le.expiry, le.hostname) for le in leases] == [
        ("10.99.1.1", "aa:00:00:00:00:01", 1795869830, "a&#x2cb")
    ]


PERFDHCP_REPORT = """\
Running: perfdhcp -4 -l fdt12f54b -r 100 -p 3
Scenario: basic.
Multi-thread mode enabled.
***Rate statistics***
Rate: 99.6371 4-way exchanges/second, expected rate: 100

***Malformed Packets***
Malformed packets: 0
***Statistics for: DISCOVER-OFFER***
sent packets: 299
received packets: 299
drops: 0
drops ratio: 0 %
orphans: 0
rejected leases: 0
non unique addresses: 0

min delay: 0.230 ms
avg delay: 0.446 ms
max delay: 0.901 ms
std deviation: 0.069 ms
collected packets: 0

***Statistics for: REQUEST-ACK***
sent packets: 299
received packets: 297
drops: 2
drops ratio: 0.669 %
orphans: 0
rejected leases: 0
non unique addresses: 0

min delay: 0.119 ms
avg delay: 0.252 ms
max delay: 0.606 ms
std deviation: 0.086 ms
collected packets: 0
"""


def test_parse_perfdhcp() -> None:
    r = dhcp_clients.parse_perfdhcp(PERFDHCP_REPORT)
    assert (r["rate"], r["expected_rate"], r["exchange"], r["malformed_packets"]) == (
        99.6371,
        100.0,
        "4-way",
        0,
    )
    assert set(r["exchanges"]) == {"DISCOVER-OFFER", "REQUEST-ACK"}
    ra = r["exchanges"]["REQUEST-ACK"]
    assert (ra["sent_packets"], ra["received_packets"], ra["drops"]) == (299, 297, 2)
    assert ra["drops_ratio_pct"] == 0.669
    assert r["exchanges"]["DISCOVER-OFFER"]["avg_delay_ms"] == 0.446


def test_discover_probe_frame() -> None:
    frame = dhcp_probe.build_discover("02:fd:00:00:00:01", 0x12345678)
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("02fd00000001")
    assert dhcp_probe._ip_checksum(frame[14:34]) == 0  # header checksum verifies
    assert frame[14 + 20 + 8 + 10 : 14 + 20 + 8 + 12] == b"\x80\x00"  # BROADCAST flag
