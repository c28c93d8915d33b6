"""The integration lab's network: DHCP segments made of network namespaces and
veth pairs (:class:`Segment`), and the cleanup of what a crashed run left
(:func:`cleanup_stale`).

Rules it keeps, because the lab runs as root on machines that have other work on
them:

* Every name it creates starts with ``fdt`` plus a random 6-hex-digit token, and
  a state file ``/run/fastdhcp-lab/<token>`` records the owning PID. Teardown
  deletes only what that token names, and :func:`cleanup_stale` removes only
  ``fdt*`` leftovers whose owner is dead, so two concurrent runs leave each other
  alone.
* All traffic stays on the veths/bridges/namespaces it creates. The host end of a
  segment has IPv6 disabled and no IPv4 address (unless asked), so the kernel
  sends nothing on it by itself; the same holds inside every lab namespace.
* Every external command goes through :func:`labprocess.run` (timeout, logged
  to the ``fastdhcp.lab`` logger, stderr included in the error).

Topology. ``Segment()`` (one server) is the LAB.md layout: a veth pair whose
server end lives in the server namespace. ``Segment(servers=N)`` with N > 1 (or
``bridged=True``) adds a *hub* namespace holding a Linux bridge; the host veth's
peer and one veth per server namespace are its ports, so the host end and all
servers share one L2 segment. Clients (:meth:`Segment.add_client`) are macvlan
sub-interfaces of the host end moved into their own namespace, which is what a
Docker macvlan container looks like to the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

from labprocess import LOG, LabError, at_exit, pid_alive, run

PREFIX = "fdt"
STATE_DIR = Path("/run/fastdhcp-lab")


# --------------------------------------------------------------------------
# namespaces and links


def _write_sysctl(netns: str | None, key: str, value: str) -> None:
    """Write /proc/sys/<key>: directly in the root namespace, through a shell
    started in ``netns`` otherwise (/proc/sys/net shows the network namespace of
    the process that opens it). No dependency on procps' sysctl."""
    path = "/proc/sys/" + key.replace(".", "/")
    if netns is None:
        LOG.debug("write %s = %s", path, value)
        Path(path).write_text(value)
    else:
        run("sh", "-c", 'echo "$1" > "$2"', "sh", value, path, netns=netns)


def _link_names(netns: str | None = None) -> dict[str, int]:
    """{ifname: ifindex} of a namespace."""
    out = run("ip", "-j", "link", "show", netns=netns).stdout
    return {link["ifname"]: link["ifindex"] for link in json.loads(out or "[]")}


def add_veth(name: str, peer: str, peer_netns: str, *, netns: str | None = None) -> None:
    """A veth pair: ``name`` in ``netns`` (the root namespace if None), its
    ``peer`` moved into ``peer_netns``."""
    run("ip", "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_netns,
        netns=netns)  # fmt: skip


def _link_mac(ifname: str, netns: str | None = None) -> str:
    out = run("ip", "-j", "link", "show", "dev", ifname, netns=netns).stdout
    return str(json.loads(out)[0]["address"]).lower()


def netns_list() -> list[str]:
    out = run("ip", "-j", "netns", "list").stdout.strip()
    return [ns["name"] for ns in json.loads(out)] if out else []


def _netns_pids(netns: str) -> list[int]:
    out = run("ip", "netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split()]


def _kill_netns_processes(netns: str) -> None:
    """SIGKILL whatever still runs in a lab namespace (only lab-started daemons
    can be there) so the namespace, and the veths in it, really go away."""
    for pid in _netns_pids(netns):
        LOG.debug("kill -9 %d (left in %s)", pid, netns)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------
# ownership and cleanup


_LIVE_SEGMENTS: set[Segment] = set()


def _owner_alive(token: str) -> bool:
    try:
        pid = int((STATE_DIR / token).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)


# Exactly the names Segment makes: fdt + token + (s<i> | c<i> | p<i> | hub | up | br)?.
# Anything else starting with "fdt" (someone's hand-made "fdtmanual") is not ours.
_LAB_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{6}})(?:s\d+|c\d+|p\d+|hub|up|br)?$")


def _token_of(name: str) -> str | None:
    m = _LAB_NAME.match(name)
    return m.group(1) if m else None


def cleanup_stale() -> list[str]:
    """Remove ``fdt*`` namespaces and root-namespace links left by a crashed run
    (and SIGKILL daemons still running inside such a namespace).

    Only names of exactly the shape :class:`Segment` creates (``fdt`` + 6 hex
    digits + an optional lab suffix) whose owning process, per
    ``/run/fastdhcp-lab/<token>``, is gone are touched: a concurrent lab run and
    anyone's hand-made ``fdt-something`` are left alone. Returns what was removed.
    """
    removed: list[str] = []
    for ns in netns_list():
        tok = _token_of(ns)
        if tok and not _owner_alive(tok):
            _kill_netns_processes(ns)
            run("ip", "netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
    for name in _link_names():
        tok = _token_of(name)
        if tok and not _owner_alive(tok):
            run("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    if STATE_DIR.is_dir():
        for f in STATE_DIR.iterdir():
            if not _owner_alive(f.name):
                f.unlink(missing_ok=True)
    if removed:
        LOG.warning("cleanup_stale removed: %s", ", ".join(removed))
    return removed


def lab_leftovers(token: str) -> list[str]:
    """Namespaces and root links still named after ``token`` (should be none
    after teardown)."""
    tag = PREFIX + token
    return [f"netns {n}" for n in netns_list() if n.startswith(tag)] + [
        f"link {n}" for n in _link_names() if n.startswith(tag)
    ]


def _close_live_segments() -> None:
    """The safety net's part for namespaces (see labprocess.at_exit): after the
    processes are killed, before the temporary directories go."""
    for seg in list(_LIVE_SEGMENTS):
        with contextlib.suppress(Exception):
            seg.close()


at_exit(_close_live_segments)


# --------------------------------------------------------------------------
# topology


@dataclasses.dataclass
class ServerNs:
    """One server's namespace on a segment: where a DHCP daemon runs."""

    netns: str
    ifname: str
    cidr: str  # e.g. "10.99.0.2/16"
    mac: str = ""

    @property
    def ip(self) -> str:
        return self.cidr.split("/")[0]

    def run(self, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run(*cmd, netns=self.netns, **kw)

    def neigh_add(self, ip: str, mac: str) -> None:
        """Static ARP entry, for a server unicasting to an address that no real
        host answers ARP for (an address leased on behalf of a container)."""
        self.run(
            "ip", "neigh", "replace", ip, "lladdr", mac, "dev", self.ifname, "nud", "permanent"
        )

    def neigh_add_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """:meth:`neigh_add` for many (ip, mac) pairs in one ``ip -batch`` run: a
        thousand leases would otherwise cost a thousand ``ip netns exec`` calls."""
        lines = [
            f"neigh replace {ip} lladdr {mac} dev {self.ifname} nud permanent\n"
            for ip, mac in pairs
        ]
        self.run("ip", "-batch", "-", input="".join(lines), timeout=60)


@dataclasses.dataclass
class ClientNs:
    """A client namespace holding a macvlan sub-interface of the host end."""

    netns: str
    ifname: str
    mac: str

    def run(self, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run(*cmd, netns=self.netns, **kw)

    def addresses(self) -> list[str]:
        """IPv4 addresses (CIDR) currently on the client interface."""
        out = self.run("ip", "-j", "-4", "addr", "show", "dev", self.ifname).stdout
        return [
            f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(out or "[]")
            for a in link.get("addr_info", [])
        ]


class Segment:
    """One L2 DHCP segment: the host end (in the root namespace) plus server
    namespaces.

    ``servers=1`` (default, not bridged): ``host_if`` <-veth-> ``server_if`` in
    ``netns``. ``servers>1`` or ``bridged=True``: ``host_if`` <-veth-> port of a
    bridge in ``hub_netns``; every server namespace hangs off the same bridge, and
    :meth:`add_server` adds more later. ``netns``/``server_if``/``server_ip``/
    ``server_mac`` always describe ``servers[0]``.
    """

    def __init__(
        self,
        servers: int = 1,
        *,
        server_address: str = "10.99.0.2/16",
        host_address: str | None = None,
        bridged: bool | None = None,
    ) -> None:
        if servers < 1:
            raise ValueError("a segment needs at least one server namespace")
        self.token = secrets.token_hex(3)
        tag = PREFIX + self.token  # 9 chars; every name below stays <= 15
        self.host_if = tag
        self.host_address = host_address
        self.bridged = servers > 1 if bridged is None else bridged
        self.hub_netns: str | None = f"{tag}hub" if self.bridged else None
        self.bridge_if = f"{tag}br"
        self.servers: list[ServerNs] = []
        self.clients: list[ClientNs] = []
        self.host_mac = ""
        self._n_servers = servers
        self._server_address = server_address
        self._namespaces: list[str] = []
        self._host_ifindex: int | None = None
        self._opened = False

    # -- convenience views of servers[0]
    @property
    def netns(self) -> str:
        return self.servers[0].netns

    @property
    def server_if(self) -> str:
        return self.servers[0].ifname

    @property
    def server_ip(self) -> str:
        return self.servers[0].ip

    @property
    def server_mac(self) -> str:
        return self.servers[0].mac

    def __repr__(self) -> str:
        return f"<Segment {self.host_if} servers={[s.cidr for s in self.servers]}>"

    # -- lifecycle
    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / self.token).write_text(f"{os.getpid()}\n")
        _LIVE_SEGMENTS.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _new_netns(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self._namespaces.append(name)
        # Nothing in a lab namespace may chatter on the segment (RS, DAD, MLD).
        _write_sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
        _write_sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")
        run("ip", "link", "set", "lo", "up", netns=name)
        return name

    def _build(self) -> None:
        if self.bridged:
            hub = self._new_netns(self.hub_netns)  # type: ignore[arg-type]
            uplink = f"{PREFIX}{self.token}up"
            add_veth(self.host_if, uplink, hub)
            # STP off (the default) means ports forward at once; no multicast
            # snooping so broadcasts and anything else just flood.
            run(
                "ip",
                "link",
                "add",
                self.bridge_if,
                "type",
                "bridge",
                "stp_state",
                "0",
                "mcast_snooping",
                "0",
                netns=hub,
            )
            run("ip", "link", "set", uplink, "master", self.bridge_if, "up", netns=hub)
            run("ip", "link", "set", self.bridge_if, "up", netns=hub)
        else:
            ns = self._new_netns(f"{PREFIX}{self.token}s0")
            srv_if = f"{PREFIX}{self.token}s0"
            add_veth(self.host_if, srv_if, ns)
            self._setup_server(ServerNs(ns, srv_if, self._server_address))
        self._host_ifindex = _link_names()[self.host_if]
        _write_sysctl(None, f"net.ipv6.conf.{self.host_if}.disable_ipv6", "1")
        if self.host_address:
            run("ip", "addr", "add", self.host_address, "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        self.host_mac = _link_mac(self.host_if)
        if self.bridged:
            for _ in range(self._n_servers):
                self.add_server()

    def _setup_server(self, srv: ServerNs) -> ServerNs:
        srv.run("ip", "addr", "add", srv.cidr, "dev", srv.ifname)
        srv.run("ip", "link", "set", srv.ifname, "up")
        srv.mac = _link_mac(srv.ifname, srv.netns)
        self.servers.append(srv)
        return srv

    def _next_server_cidr(self) -> str:
        iface = ipaddress.ip_interface(self._server_address)
        return f"{iface.ip + len(self.servers)}/{iface.network.prefixlen}"

    def add_server(self, ip_cidr: str | None = None) -> ServerNs:
        """Another server namespace on the same L2 segment (bridged segments only).

        Default address: the next one after the previous server's
        (10.99.0.2/16, 10.99.0.3/16, ...).
        """
        if not self.bridged:
            raise LabError("add_server needs Segment(servers>1) or Segment(bridged=True)")
        i = len(self.servers)
        ns = self._new_netns(f"{PREFIX}{self.token}s{i}")
        port, srv_if = f"{PREFIX}{self.token}p{i}", f"{PREFIX}{self.token}s{i}"
        add_veth(port, srv_if, ns, netns=self.hub_netns)
        run("ip", "link", "set", port, "master", self.bridge_if, "up", netns=self.hub_netns)
        return self._setup_server(ServerNs(ns, srv_if, ip_cidr or self._next_server_cidr()))

    def add_client(self, mac: str | None = None) -> ClientNs:
        """A client namespace with a macvlan (bridge mode) on the host end, like a
        Docker macvlan container; the DHCP client runs there so whatever address
        it configures never reaches the root namespace."""
        i = len(self.clients)
        ns = self._new_netns(f"{PREFIX}{self.token}c{i}")
        ifname = f"{PREFIX}{self.token}c{i}"
        args = ["ip", "link", "add", "link", self.host_if, "name", ifname]
        if mac:
            args += ["address", mac]
        run(*args, "netns", ns, "type", "macvlan", "mode", "bridge")
        run("ip", "link", "set", ifname, "up", netns=ns)
        client = ClientNs(ns, ifname, _link_mac(ifname, ns))
        self.clients.append(client)
        return client

    def run_in_ns(
        self, *cmd: str, netns: str | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the (first) server namespace, or in ``netns``."""
        return run(*cmd, netns=netns or self.netns, **kw)

    def neigh_add(self, ip: str, mac: str, server: int = 0) -> None:
        """Static ARP entry in a server namespace; see :meth:`ServerNs.neigh_add`."""
        self.servers[server].neigh_add(ip, mac)

    def close(self) -> None:
        """Delete everything this segment created, and nothing else.

        Idempotent; raises :class:`LabError` if something is still there
        afterwards (a leak is a bug worth failing a test for).
        """
        if not self._opened:
            return
        self._opened = False
        for ns in self._namespaces:
            _kill_netns_processes(ns)
        # Deleting our veth end also removes its peer and the macvlans on it at
        # once; namespace teardown alone is asynchronous in the kernel.
        links = _link_names()
        if self.host_if in links and links[self.host_if] == self._host_ifindex:
            run("ip", "link", "del", self.host_if, check=False)
        for ns in reversed(self._namespaces):
            run("ip", "netns", "del", ns, check=False)
        _LIVE_SEGMENTS.discard(self)
        leftovers = lab_leftovers(self.token)
        if not leftovers:
            (STATE_DIR / self.token).unlink(missing_ok=True)
        else:
            raise LabError(f"segment teardown left {leftovers}")
