"""Integration-test lab: DHCP segments made of network namespaces and veth pairs,
real DHCP servers (dnsmasq, Kea) on them, and the reference peers (busybox
``udhcpc``, Kea's ``perfdhcp``) to check them with.

A plain module on purpose (no pytest import): it can be driven from a REPL or a
script when a test has to be debugged by hand, e.g.::

    import lab
    with lab.Segment() as seg, lab.Dnsmasq(seg) as srv, lab.Udhcpc(seg) as cl:
        print(cl.wait_bound(), srv.leases())

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
* Every external command goes through :func:`run` (timeout, logged to the
  ``fastdhcp.lab`` logger, stderr included in the error).

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
import functools
import ipaddress
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from labprocess import (  # noqa: F401  (DEFAULT_TIMEOUT, have_binary: for lab.* users)
    DEFAULT_TIMEOUT,
    LOG,
    LabError,
    LabProcess,
    at_exit,
    have_binary,
    mkdtemp,
    pid_alive,
    rmtree,
    run,
    wait_for,
)

PREFIX = "fdt"
STATE_DIR = Path("/run/fastdhcp-lab")


# --------------------------------------------------------------------------
# commands


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
            run(
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                uplink,
                "netns",
                hub,
            )
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
            run(
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                srv_if,
                "netns",
                ns,
            )
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
        run(
            "ip",
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            srv_if,
            "netns",
            ns,
            netns=self.hub_netns,
        )
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


# --------------------------------------------------------------------------
# leases


@dataclasses.dataclass
class Lease:
    """One lease, uniform across servers. ``expiry`` is a Unix time (0 = infinite
    for dnsmasq). Kea-only columns are None for dnsmasq."""

    expiry: int
    mac: str
    ip: str
    hostname: str | None = None
    client_id: str | None = None
    valid_lifetime: int | None = None
    subnet_id: int | None = None
    state: int | None = None


def parse_dnsmasq_leases(text: str) -> list[Lease]:
    """dnsmasq's lease file: ``expiry mac ip hostname client-id`` per line, with
    ``*`` for "none". dnsmasq rewrites the whole file on every change, so it is
    always the current set (RELEASE removes the line). It truncates the file and
    writes it again in place, so a read while a busy dnsmasq writes can see a
    partial or empty file: stop it before reading, when it is busy."""
    leases = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] == "duid":  # "duid ..." is the DHCPv6 header
            continue
        host = parts[3] if len(parts) > 3 and parts[3] != "*" else None
        cid = parts[4] if len(parts) > 4 and parts[4] != "*" else None
        leases.append(Lease(int(parts[0]), parts[1].lower(), parts[2], host, cid))
    return leases


def parse_kea_csv(text: str) -> list[dict[str, str]]:
    """Kea's memfile CSV, every row as a dict keyed by the file's own header (Kea
    2.2: address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,
    fqdn_rev,hostname,state,user_context; later versions append columns).
    Kea escapes commas inside fields (``&#x2c``), so a plain split is exact."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0].split(",")
    return [dict(zip(header, ln.split(","))) for ln in lines[1:]]


def kea_active_leases(rows: Iterable[dict[str, str]]) -> list[Lease]:
    """Replay Kea's append-only memfile (lfc-interval 0, so nothing compacts it).

    Observed with Kea 2.2 (see test_lab.py):

    * grant/renew appends ``<ip>,<mac>,<cid>,<valid>,<cltt+valid>,1,...,0,``;
    * RELEASE appends the same lease with ``valid_lifetime`` 0 and ``expire`` =
      its cltt (the grant time, *not* the release time): a deletion;
    * expiry: the reclaim timer appends the lease unchanged but ``state`` 2
      (expired-reclaimed), and ``hold-reclaimed-time`` later a ``valid_lifetime``
      0 row (deletion).

    So: the last row per address wins; valid_lifetime 0 means gone; only state 0
    ("default") is active (1 = declined, 2 = expired-reclaimed)."""
    last: dict[str, dict[str, str]] = {}
    for row in rows:
        last[row["address"]] = row
    out = []
    for row in last.values():
        if int(row["valid_lifetime"]) == 0 or int(row.get("state") or 0) != 0:
            continue
        out.append(
            Lease(
                expiry=int(row["expire"]),
                mac=row["hwaddr"].lower(),
                ip=row["address"],
                hostname=row.get("hostname") or None,
                client_id=row.get("client_id") or None,
                valid_lifetime=int(row["valid_lifetime"]),
                subnet_id=int(row["subnet_id"]),
                state=int(row.get("state") or 0),
            )
        )
    return out


# --------------------------------------------------------------------------
# daemons


class _Daemon(LabProcess):
    """A server process in a segment's server namespace with its output in a log
    file in its workdir. Subclasses fill in argv, readiness and lease parsing."""

    name = "daemon"
    binary = ""

    def __init__(
        self,
        segment: Segment,
        server: ServerNs | None,
        workdir: str | Path | None,
        ready_timeout: float,
    ) -> None:
        self.segment = segment
        self.server = server or segment.servers[0]
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else mkdtemp(f"fdt-{self.name}-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / f"{self.name}.out", netns=self.server.netns)
        self.ready_timeout = ready_timeout

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.name

    @property
    def server_ip(self) -> str:
        return self.server.ip

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            rmtree(self.workdir)

    def leases(self) -> list[Lease]:
        raise NotImplementedError


class Dnsmasq(_Daemon):
    """dnsmasq as the DHCP server (DNS off with --port=0).

    ``lease_time`` is seconds (dnsmasq refuses less than 120) or a dnsmasq string
    such as "infinite". Logs go to stderr (``--log-facility=-``), i.e. to
    :attr:`log_file`, instead of syslog, which the lab has none of.
    """

    name = "dnsmasq"

    def __init__(
        self,
        segment: Segment,
        *,
        server: ServerNs | None = None,
        range_start: str = "10.99.1.0",
        range_end: str = "10.99.250.255",
        netmask: str = "255.255.0.0",
        lease_time: int | str = 120,
        router: str | None = None,
        authoritative: bool = False,
        extra_args: Sequence[str] = (),
        workdir: str | Path | None = None,
        ready_timeout: float = 10.0,
        binary: str = "dnsmasq",
    ) -> None:
        super().__init__(segment, server, workdir, ready_timeout)
        self.binary = binary
        self.range = (range_start, range_end, netmask, str(lease_time))
        self.router = router or self.server.ip
        self.authoritative = authoritative
        self.extra_args = list(extra_args)
        self.lease_file = self.workdir / "dnsmasq.leases"

    def argv(self) -> list[str]:
        args = [
            self.binary,
            "--no-daemon",
            "--port=0",
            "--conf-file=/dev/null",
            f"--interface={self.server.ifname}",
            "--bind-interfaces",
            f"--dhcp-range={','.join(self.range)}",
            f"--dhcp-option=3,{self.router}",
            f"--dhcp-leasefile={self.lease_file}",
            "--dhcp-lease-max=100000",
            "--no-ping",
            "--log-dhcp",
            "--log-facility=-",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
        ]
        if self.authoritative:
            args.append("--dhcp-authoritative")
        return args + self.extra_args

    def _ready(self) -> bool:
        # dnsmasq's DHCP socket is 0.0.0.0:67 bound to the interface.
        out = run("ss", "-Hunl", "sport = :67", netns=self.server.netns).stdout
        return bool(out.strip())

    def restart(self, keep_leases: bool = True) -> None:
        """Stop and start again; dnsmasq reloads its lease file unless it is
        deleted first (``keep_leases=False``)."""
        self.stop()
        if not keep_leases:
            self.lease_file.unlink(missing_ok=True)
        self.start()

    def leases(self) -> list[Lease]:
        try:
            return parse_dnsmasq_leases(self.lease_file.read_text())
        except FileNotFoundError:
            return []


@functools.cache
def kea_version(binary: str = "kea-dhcp4") -> tuple[int, ...]:
    """``kea-dhcp4 -v`` as a tuple, e.g. (2, 2, 0); decides config spellings."""
    out = run(binary, "-v").stdout.strip()
    return tuple(int(x) for x in re.findall(r"\d+", out)[:3])


class Kea(_Daemon):
    """ISC Kea (kea-dhcp4) with raw sockets and a persisted memfile.

    Several instances can run at once: each gets its own ``KEA_PIDFILE_DIR``
    (default /run/kea, where Kea refuses to start if the pid file names a live
    process, and fails if the directory is missing) and ``KEA_LOCKFILE_DIR`` (the
    logger's ``logger_lockfile``; /run/lock/kea in Debian's unit), both set to
    :attr:`workdir`. With both set, Kea 2.2 needs nothing under /run (verified:
    it starts with /run/kea absent), so the lab does not create /run/kea. ``lfc-interval`` is 0, so ``kea-lfc`` never rewrites the lease file
    underneath a test: the file stays strictly append-only, see :meth:`leases`.

    ``extra`` is merged (shallowly) into the ``Dhcp4`` object; :attr:`config` is
    the dict that gets written, editable before :meth:`start`.
    """

    name = "kea"

    def __init__(
        self,
        segment: Segment,
        *,
        server: ServerNs | None = None,
        subnet: str = "10.99.0.0/16",
        pool: tuple[str, str] = ("10.99.1.0", "10.99.250.255"),
        routers: str | None = None,
        dns_servers: str | None = None,
        valid_lifetime: int = 120,
        renew_timer: int | None = None,
        rebind_timer: int | None = None,
        authoritative: bool = False,
        persist: bool = True,
        control_socket: bool = False,
        debug: bool = False,
        extra: dict[str, Any] | None = None,
        workdir: str | Path | None = None,
        ready_timeout: float = 15.0,
        binary: str = "kea-dhcp4",
    ) -> None:
        super().__init__(segment, server, workdir, ready_timeout)
        self.binary = binary
        self.lease_file = self.workdir / "kea-leases4.csv"
        self.kea_log = self.workdir / "kea.log"
        self.config_file = self.workdir / "kea-dhcp4.json"
        self.control_socket: Path | None = None
        if control_socket:
            # sun_path is 108 bytes: keep the socket in a short directory.
            self._sockdir = mkdtemp("fdtk-")
            self.control_socket = self._sockdir / "ctrl.sock"
        routers = routers or self.server.ip
        dns_servers = dns_servers or self.server.ip
        # Kea 2.5 renamed output_options to output-options.
        out_key = "output-options" if kea_version(binary) >= (2, 5) else "output_options"
        dhcp4: dict[str, Any] = {
            "interfaces-config": {
                "interfaces": [self.server.ifname],
                "dhcp-socket-type": "raw",
            },
            "lease-database": {
                "type": "memfile",
                "persist": persist,
                "name": str(self.lease_file),
                "lfc-interval": 0,
            },
            "valid-lifetime": valid_lifetime,
            "renew-timer": renew_timer if renew_timer is not None else valid_lifetime // 2,
            "rebind-timer": (rebind_timer if rebind_timer is not None else valid_lifetime * 7 // 8),
            "authoritative": authoritative,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": subnet,
                    "pools": [{"pool": f"{pool[0]} - {pool[1]}"}],
                    "option-data": [
                        {"name": "routers", "data": routers},
                        {"name": "domain-name-servers", "data": dns_servers},
                    ],
                }
            ],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    out_key: [{"output": str(self.kea_log)}],
                    "severity": "DEBUG" if debug else "INFO",
                    "debuglevel": 99 if debug else 0,
                }
            ],
        }
        if self.control_socket:
            dhcp4["control-socket"] = {
                "socket-type": "unix",
                "socket-name": str(self.control_socket),
            }
        dhcp4.update(extra or {})
        self.config: dict[str, Any] = {"Dhcp4": dhcp4}

    def argv(self) -> list[str]:
        return [self.binary, "-c", str(self.config_file)]

    def spawn_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KEA_PIDFILE_DIR": str(self.workdir),
            "KEA_LOCKFILE_DIR": str(self.workdir),
        }

    def _prepare(self) -> None:
        self.config_file.write_text(json.dumps(self.config, indent=2))
        self._log_offset = self.kea_log.stat().st_size if self.kea_log.exists() else 0

    def _ready(self) -> bool:
        text = self._kea_log_since_start()
        for bad in ("DHCP4_CONFIG_LOAD_FAIL", "DHCPSRV_OPEN_SOCKET_FAIL", "DHCP4_INIT_FAIL"):
            if bad in text:
                raise LabError(f"kea failed to start ({bad})")
        return "DHCP4_STARTED" in text

    def _kea_log_since_start(self) -> str:
        try:
            with open(self.kea_log, errors="replace") as f:
                f.seek(self._log_offset)
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in Kea's log since the last start (e.g. an
        HA state transition)."""
        wait_for(lambda: text in self._kea_log_since_start(), timeout, f"kea to log {text!r}")

    def log_text(self) -> str:
        """kea-dhcp4's stdout/stderr followed by its logger file."""
        main = self.kea_log.read_text(errors="replace") if self.kea_log.exists() else ""
        return super().log_text() + main

    def restart(self, keep_leases: bool = True) -> None:
        self.stop()
        if not keep_leases:
            self.lease_file.unlink(missing_ok=True)
        self.start()

    def close(self) -> None:
        super().close()
        if self.control_socket:
            rmtree(self._sockdir)

    def lease_rows(self) -> list[dict[str, str]]:
        """Every row of the memfile as written, oldest first (history view)."""
        try:
            return parse_kea_csv(self.lease_file.read_text())
        except FileNotFoundError:
            return []

    def leases(self) -> list[Lease]:
        """Active leases: see :func:`kea_active_leases` for the replay rules."""
        return kea_active_leases(self.lease_rows())

    def command(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """One control-channel command (needs ``control_socket=True``)."""
        if not self.control_socket:
            raise LabError("Kea was started without a control socket")
        req: dict[str, Any] = {"command": command}
        if arguments is not None:
            req["arguments"] = arguments
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_socket))
            s.sendall(json.dumps(req).encode())
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                with contextlib.suppress(ValueError):
                    return json.loads(buf)  # type: ignore[no-any-return]
        return json.loads(buf)  # type: ignore[no-any-return]


KEA_HOOKS_DIR = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")  # Debian's kea-dhcp4-server


def kea_ha_hot_standby(
    this: str,
    primary: ServerNs,
    standby: ServerNs,
    *,
    port: int = 8001,
    heartbeat_delay_ms: int = 1000,
    max_response_delay_ms: int = 3000,
    hooks_dir: Path = KEA_HOOKS_DIR,
) -> dict[str, Any]:
    """The ``extra`` for :class:`Kea` that makes it one of a hot-standby HA pair
    (``this`` is "primary" or "standby").

    No kea-ctrl-agent: with Kea 2.2's HA+MT (core and HA multi-threading, the HA
    hook's dedicated HTTP listener) each server answers its peer's commands
    (ha-heartbeat, lease4-update, lease4-get-page) itself, on
    ``http://<its segment address>:port/``; each namespace has its own port
    space. ``max-unacked-clients`` 0: the standby goes partner-down as soon as
    the primary misses heartbeats for ``max_response_delay_ms``, without first
    watching clients go unanswered. Observed with Kea 2.2.0: both servers log
    ``HA_STATE_TRANSITION ... to HOT-STANDBY state`` about 4 s after start.
    """
    peers = [
        {"name": "primary", "url": f"http://{primary.ip}:{port}/", "role": "primary"},
        {"name": "standby", "url": f"http://{standby.ip}:{port}/", "role": "standby"},
    ]
    for peer in peers:
        peer["auto-failover"] = True
    return {
        "multi-threading": {
            "enable-multi-threading": True,
            "thread-pool-size": 2,
            "packet-queue-size": 256,
        },
        "hooks-libraries": [
            {"library": str(hooks_dir / "libdhcp_lease_cmds.so")},
            {
                "library": str(hooks_dir / "libdhcp_ha.so"),
                "parameters": {
                    "high-availability": [
                        {
                            "this-server-name": this,
                            "mode": "hot-standby",
                            "heartbeat-delay": heartbeat_delay_ms,
                            "max-response-delay": max_response_delay_ms,
                            "max-ack-delay": 1000,
                            "max-unacked-clients": 0,
                            "sync-timeout": 10000,
                            "multi-threading": {
                                "enable-multi-threading": True,
                                "http-dedicated-listener": True,
                                "http-listener-threads": 2,
                                "http-client-threads": 2,
                            },
                            "peers": peers,
                        }
                    ]
                },
            },
        ],
    }


# --------------------------------------------------------------------------
# peers: udhcpc, perfdhcp, a raw DISCOVER probe

_UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event hook written by tests/integration/lab.py: configure the address
# (RELEASE and RENEW are sent from a kernel UDP socket bound to it) and record
# every event for the test to read.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
printf 'event=%s ip=%s mask=%s serverid=%s lease=%s router=%s\\n' \
  "$1" "$ip" "$mask" "$serverid" "$lease" "$router" >> "$UDHCPC_EVENTS"
"""


class Udhcpc(LabProcess):
    """busybox ``udhcpc`` in a client namespace (a macvlan on the segment's host
    end): the reference client docker-net-dhcp runs per container.

    :meth:`start` (also ``__enter__``) runs it in the background, in foreground
    mode with ``-R`` (release on exit), so :meth:`stop` (SIGTERM) sends a
    DHCPRELEASE; :meth:`wait_bound` returns the ``bound`` event's fields (ip,
    mask, serverid, lease, router). :meth:`once` is the one-shot ``-n -q`` form.
    The event hook configures the leased address inside the client namespace,
    because udhcpc sends RELEASE/RENEW from a UDP socket bound to it.
    """

    label = "udhcpc"
    mark_start = False  # once() rewrites the log with its own output
    strict_stop = False  # the client is not under test: just SIGKILL a stuck one

    def __init__(
        self,
        segment: Segment,
        client: ClientNs | None = None,
        *,
        release_on_exit: bool = True,
        broadcast: bool = False,
        extra_args: Sequence[str] = (),
        busybox: str = "busybox",
    ) -> None:
        self.segment = segment
        self.client = client or segment.add_client()
        self.release_on_exit = release_on_exit
        self.broadcast = broadcast
        self.extra_args = list(extra_args)
        self.busybox = busybox
        self.workdir = mkdtemp("fdt-udhcpc-")
        self.script = self.workdir / "hook.sh"
        self.script.write_text(_UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        self.events_file = self.workdir / "events"
        super().__init__(self.workdir / "udhcpc.out", netns=self.client.netns)

    @property
    def mac(self) -> str:
        return self.client.mac

    def argv(self, *more: str) -> list[str]:
        args = [
            self.busybox,
            "udhcpc",
            "-f",
            "-i",
            self.client.ifname,
            "-s",
            str(self.script),
            "-t",
            "5",
            "-T",
            "1",
        ]
        if self.release_on_exit:
            args.append("-R")
        if self.broadcast:
            args.append("-B")
        return args + self.extra_args + list(more)

    def spawn_env(self) -> dict[str, str]:
        return {**os.environ, "UDHCPC_EVENTS": str(self.events_file)}

    def close(self) -> None:
        self.stop()
        rmtree(self.workdir)

    def _check_idle(self) -> None:
        # Two udhcpc on one interface would both run DORA with the same MAC.
        if self.running:
            raise LabError("udhcpc is already running on this client; stop() it first")

    def start(self) -> None:
        """Run in the background (``with Udhcpc(...)`` does this); no wait."""
        self._check_idle()
        super().start()

    def once(self, timeout: float = 15.0) -> dict[str, str]:
        """``udhcpc -n -q``: get one lease and exit (releasing it if -R). Not
        together with :meth:`start`; use ``contextlib.closing(Udhcpc(...))`` rather
        than ``with Udhcpc(...)``, which starts a background client."""
        self._check_idle()
        proc = run(
            *self.argv("-n", "-q"),
            netns=self.client.netns,
            timeout=timeout,
            env=self.spawn_env(),
            check=False,
        )
        self.log_file.write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            raise LabError(f"udhcpc got no lease (exit {proc.returncode}):\n{self.log_text()}")
        return self.events("bound")[-1]

    def events(self, kind: str | None = None) -> list[dict[str, str]]:
        try:
            lines = self.events_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        evs = [dict(kv.split("=", 1) for kv in ln.split()) for ln in lines]
        return [e for e in evs if kind is None or e["event"] == kind]

    def wait_bound(self, timeout: float = 15.0) -> dict[str, str]:
        def bound() -> dict[str, str] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"udhcpc exited {self.proc.returncode}:\n{self.log_text()}")
            evs = self.events("bound")
            return evs[-1] if evs else None

        try:
            return wait_for(bound, timeout, "udhcpc to bind")
        except LabError as exc:
            raise LabError(f"{exc}\n--- udhcpc log:\n{self.log_text()}") from None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM; with ``-R`` udhcpc sends DHCPRELEASE before it exits."""
        return super().stop(timeout)


# perfdhcp's report (Kea 2.2), after a "Running: ..." banner:
#
#   ***Rate statistics***
#   Rate: 99.6371 4-way exchanges/second, expected rate: 100
#
#   ***Malformed Packets***
#   Malformed packets: 0
#   ***Statistics for: DISCOVER-OFFER***
#   sent packets: 299
#   received packets: 299
#   drops: 0
#   drops ratio: 0 %
#   orphans: 0
#   rejected leases: 0
#   non unique addresses: 0
#
#   min delay: 0.230 ms
#   avg delay: 0.446 ms
#   max delay: 0.901 ms
#   std deviation: 0.069 ms
#   collected packets: 0
#
#   ***Statistics for: REQUEST-ACK***
#   ... (same keys)
_PERF_SECTION = re.compile(r"^\*\*\*Statistics for: (\S+)\*\*\*", re.MULTILINE)
_PERF_RATE = re.compile(
    r"^Rate: ([\d.]+) (\S+) exchanges/second(?:, expected rate: ([\d.]+))?", re.MULTILINE
)
_PERF_MALFORMED = re.compile(r"^Malformed packets: (\d+)", re.MULTILINE)
_PERF_KV = re.compile(r"^([A-Za-z][A-Za-z ]*?): ([-\d.]+)(?: (%|ms))?\s*$", re.MULTILINE)


def parse_perfdhcp(text: str) -> dict[str, Any]:
    """perfdhcp's report as a dict::

        {"rate": 99.6, "expected_rate": 100.0, "exchange": "4-way",
         "malformed_packets": 0,
         "exchanges": {"DISCOVER-OFFER": {"sent_packets": 299, "received_packets": 299,
                                          "drops": 0, "drops_ratio_pct": 0.0,
                                          "orphans": 0, ..., "avg_delay_ms": 0.446},
                       "REQUEST-ACK": {...}}}

    Keys are perfdhcp's labels in snake_case with the unit appended (``_pct``,
    ``_ms``); counters are int, ratios and delays float. A missing rate line (run
    aborted) leaves ``rate`` None and ``exchanges`` possibly empty.
    """
    result: dict[str, Any] = {
        "rate": None,
        "expected_rate": None,
        "exchange": None,
        "malformed_packets": None,
        "exchanges": {},
    }
    if m := _PERF_RATE.search(text):
        result["rate"] = float(m.group(1))
        result["exchange"] = m.group(2)
        result["expected_rate"] = float(m.group(3)) if m.group(3) else None
    if m := _PERF_MALFORMED.search(text):
        result["malformed_packets"] = int(m.group(1))
    sections = list(_PERF_SECTION.finditer(text))
    for i, sec in enumerate(sections):
        end = sections[i + 1].start() if i + 1 < len(sections) else len(text)
        body = text[sec.end() : end].split("\n***", 1)[0]  # stop at any other heading
        stats: dict[str, int | float] = {}
        for label, value, unit in _PERF_KV.findall(body):
            key = label.strip().lower().replace(" ", "_")
            if unit:
                stats[f"{key}_{'pct' if unit == '%' else 'ms'}"] = float(value)
            else:
                stats[key] = float(value) if "." in value else int(value)
        result["exchanges"][sec.group(1)] = stats
    return result


class Perfdhcp:
    """Kea's load generator on the segment's host end (root namespace): full DORA
    exchanges from random MACs, as in LAB.md.

    perfdhcp -4 behaves as a *relay*: it sends from <host address>:67 to
    255.255.255.255:67 with giaddr set, and the server answers by unicast to
    <host address>:67. So it refuses to run ("There is no address for interface")
    unless the host end has an IPv4 address: use
    ``Segment(host_address="10.99.0.1/16")``. Exit status 3 ("some exchanges were
    unsuccessful", i.e. drops) is a measurement, not an error.

    Because it binds <host address>:67 in the root namespace, two perfdhcp runs
    with the same host address (two lab runs at once) collide: "Failed to bind
    socket ... port=67".
    """

    def __init__(self, segment: Segment, binary: str = "perfdhcp") -> None:
        self.segment = segment
        self.binary = binary
        self.last_output = ""

    def run(
        self,
        rate: int = 100,
        clients: int | None = None,
        seconds: int = 3,
        extra_args: Sequence[str] = (),
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One perfdhcp run; returns :func:`parse_perfdhcp`'s dict plus
        ``returncode`` and ``raw`` (the full report)."""
        if not self.segment.host_address:
            raise LabError(
                "perfdhcp needs an IPv4 address on the host end (it acts as a "
                "relay); create Segment(host_address='10.99.0.1/16')"
            )
        args = [self.binary, "-4", "-l", self.segment.host_if, "-r", str(rate), "-p", str(seconds)]
        if clients:
            args += ["-R", str(clients)]
        proc = run(*args, *extra_args, timeout=timeout or seconds + 15, check=False)
        self.last_output = proc.stdout + proc.stderr
        if proc.returncode not in (0, 3):
            raise LabError(f"perfdhcp exit {proc.returncode}:\n{self.last_output}")
        report = parse_perfdhcp(proc.stdout)
        report["returncode"] = proc.returncode
        report["raw"] = proc.stdout
        return report


@dataclasses.dataclass
class Offer:
    server_id: str
    yiaddr: str
    src_mac: str
    src_ip: str


def _ip_checksum(header: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(header) // 2}H", header)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def build_discover(mac: str, xid: int) -> bytes:
    """A broadcast DHCPDISCOVER frame with the BROADCAST flag set, so every
    server answers with a broadcast OFFER the probe can see without an address.
    Hand-built so the lab depends on nothing but the standard library (and not on
    the codec under test)."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        chaddr,
        b"",
        b"",
    )
    opts = (
        b"\x63\x82\x53\x63"
        + b"\x35\x01\x01"
        + b"\x3d\x07\x01"
        + chaddr
        + b"\x37\x04\x01\x03\x06\x36"
        + b"\xff"
    )
    payload = bootp + opts
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    eth = b"\xff" * 6 + chaddr + b"\x08\x00"
    return eth + ip + udp


def probe_offers(segment: Segment, timeout: float = 2.0, mac: str | None = None) -> list[Offer]:
    """Send one DISCOVER from the host end and collect every OFFER for it within
    ``timeout``: shows which servers on the segment answer. Stays on host_if."""
    mac = mac or "02:fd:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
    xid = secrets.randbits(32)
    offers: list[Offer] = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as s:
        s.bind((segment.host_if, 0x0800))
        s.settimeout(0.1)
        LOG.debug("probe: DISCOVER xid=%08x chaddr=%s on %s", xid, mac, segment.host_if)
        s.send(build_discover(mac, xid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = s.recv(4096)
            except TimeoutError:
                continue
            offer = _parse_offer(frame, xid)
            if offer:
                offers.append(offer)
    return offers


def _parse_offer(frame: bytes, xid: int) -> Offer | None:
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] != 68:
        return None
    bootp = udp + 8
    if frame[bootp] != 2 or struct.unpack("!I", frame[bootp + 4 : bootp + 8])[0] != xid:
        return None
    yiaddr = socket.inet_ntoa(frame[bootp + 16 : bootp + 20])
    opts = frame[bootp + 240 :]
    i, msg_type, server_id = 0, None, None
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        code, length = opts[i], opts[i + 1]
        val = opts[i + 2 : i + 2 + length]
        if code == 53:
            msg_type = val[0]
        elif code == 54 and length == 4:
            server_id = socket.inet_ntoa(val)
        i += 2 + length
    if msg_type != 2 or server_id is None:
        return None
    src_mac = ":".join(f"{b:02x}" for b in frame[6:12])
    return Offer(server_id, yiaddr, src_mac, socket.inet_ntoa(frame[26:30]))
