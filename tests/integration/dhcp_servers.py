"""The DHCP servers of the labs, dnsmasq and ISC Kea, run in a segment's
server namespace (labnet.py), and their lease files read back uniformly as
:class:`Lease` lists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from labnet import Segment, ServerNs
from labprocess import LabError, LabProcess, mkdtemp, rmtree, run, wait_for

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
