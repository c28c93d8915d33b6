"""The reference DHCP peers the labs check servers with: busybox ``udhcpc`` in
a client namespace and Kea's ``perfdhcp`` load generator on a segment's host
end.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from labnet import ClientNs, Segment
from labprocess import LabError, LabProcess, mkdtemp, rmtree, run, wait_for

_UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event hook written by tests/integration/dhcp_clients.py: configure the address
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
