"""A hostile DHCP segment: the engine, a trusted DHCP server behind a slow path,
and a forger that answers first, all on one L2 segment.

Topology (every name from :mod:`labnet`'s ``fdt<token>`` scheme, so labnet.Segment's
teardown and ``labnet.cleanup_stale`` remove it all)::

    root ns                     hub ns (bridge fdt<t>br, a hub: ageing_time 0)
    fdt<t> (engine) <-veth-> fdt<t>up ─┐
                                       ├─ fdt<t>p0 <-veth-> fdt<t>s0  forger ns (10.99.0.66)
                                       └─ fdt<t>p3 <-veth-> fdt<t>p2 ─ delay forwarder ─
                                                                     fdt<t>p1 <-veth-> fdt<t>s1
                                                                     trusted ns (10.99.0.2)

The trusted server's veth does not end on the bridge: its hub end ``p1`` and
``p2`` (whose peer ``p3`` is a bridge port) are joined by :func:`forward`, a
small process with one packet socket on each. It copies frames client→server at
once and holds every server→client frame for ``delay`` seconds (the kernel has
no netem), so the forger, one bridge hop from the engine, always wins the race.
It recomputes each IPv4/UDP checksum on the way (a frame sent by the server's
own stack arrives with the checksum left to offload, and ethtool is not
installed to turn that off), and SIGUSR1 toggles a *cut*: nothing passes, the
trusted server is gone from the segment until the next SIGUSR1.

The bridge's ageing time is 0, so it learns no MAC and floods every frame to
every port: the forger sees the engine's unicast RENEWs to the trusted server
too.

As :mod:`lab`, a plain module: ``python hostile_lab.py forward IF_A IF_B
DELAY_A_TO_B DELAY_B_TO_A`` is the forwarder's entry point (run in the hub
namespace by :class:`HostileSegment`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, Self

import labnet
from labprocess import LabError, LabProcess, mkdtemp, rmtree, run

HERE = Path(__file__).resolve().parent
FORGER = HERE / "forger.py"

TRUSTED_CIDR = "10.99.0.2/16"
FORGER_CIDR = "10.99.0.66/16"
SUBNET = "10.99.0.0/16"
FORGED_ADDRESS = "10.99.255.77"  # in the subnet, outside both servers' pools
DEFAULT_DELAY = 0.3

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


# --------------------------------------------------------------------------
# the delaying forwarder (runs as its own process)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return total


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fix_udp_checksum(frame: bytes) -> bytes:
    """The frame with its IPv4/UDP checksum computed in full (unchanged if it is
    not an unfragmented IPv4/UDP frame, or carries no UDP checksum)."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return frame
    ihl = (frame[14] & 0x0F) * 4
    if struct.unpack("!H", frame[20:22])[0] & 0x3FFF:  # MF or fragment offset
        return frame
    udp = 14 + ihl
    if len(frame) < udp + 8:
        return frame
    udp_len = struct.unpack("!H", frame[udp + 4 : udp + 6])[0]
    if udp_len < 8 or udp + udp_len > len(frame):
        return frame
    if frame[udp + 6 : udp + 8] == b"\0\0":
        return frame  # RFC 768: no checksum
    segment = frame[udp : udp + 6] + b"\0\0" + frame[udp + 8 : udp + udp_len]
    pseudo = frame[26:34] + struct.pack("!BBH", 0, 17, udp_len)
    checksum = ~_fold(_sum16(pseudo) + _sum16(segment)) & 0xFFFF
    return frame[: udp + 6] + struct.pack("!H", checksum or 0xFFFF) + frame[udp + 8 :]


def _is_server_reply(frame: bytes) -> bool:
    """An IPv4/UDP frame from port 67 to port 68."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    udp = 14 + (frame[14] & 0x0F) * 4
    return frame[udp : udp + 4] == b"\x00\x43\x00\x44"


# Classic BPF (linux/filter.h) for the bridge-side socket: drop IPv4/UDP 67->68
# in the kernel, so a forger's flood costs the forwarder nothing. Jump offsets
# count from the next instruction.
_REPLY_DROP_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]            ethertype
    (0x15, 0, 9, 0x0800),  # jeq IPv4, else accept
    (0x30, 0, 0, 23),  # ldb [23]            IP protocol
    (0x15, 0, 7, 17),  # jeq UDP, else accept
    (0x28, 0, 0, 20),  # ldh [20]            flags and fragment offset
    (0x45, 5, 0, 0x1FFF),  # jset fragment -> accept
    (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)   IP header length
    (0x48, 0, 0, 14),  # ldh [x+14]          UDP source port
    (0x15, 0, 2, 67),  # jeq 67, else accept
    (0x48, 0, 0, 16),  # ldh [x+16]          UDP destination port
    (0x15, 1, 0, 68),  # jeq 68 -> drop
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)


def _attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    code = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, bytes(prog))  # SO_ATTACH_FILTER


def forward(if_a: str, if_b: str, delay_ab: float, delay_ba: float) -> None:
    """Copy frames between two interfaces; a->b after ``delay_ab`` s, b->a after
    ``delay_ba`` s. Prints ``ready``, then on SIGTERM a JSON line of counts."""
    socks = {}
    for name in (if_a, if_b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    sa, sb = socks[if_a], socks[if_b]
    _attach_filter(sb, _REPLY_DROP_FILTER)
    while True:  # frames queued before the filter was attached
        try:
            sb.recv(65535)
        except BlockingIOError:
            break
    # One FIFO per direction: its delay is constant, so it stays in time order.
    queues: dict[str, collections.deque[tuple[float, bytes]]] = {
        "a_to_b": collections.deque(),
        "b_to_a": collections.deque(),
    }
    route = {sa.fileno(): (sb, delay_ab, "a_to_b"), sb.fileno(): (sa, delay_ba, "b_to_a")}
    outs = {"a_to_b": sb, "b_to_a": sa}
    counts: collections.Counter[str] = collections.Counter()
    state = {"stop": False, "cut": False}

    def on_term(signum: int, frame: object) -> None:
        state["stop"] = True

    def on_cut(signum: int, frame: object) -> None:
        state["cut"] = not state["cut"]

    def send(key: str, data: bytes) -> None:
        if state["cut"]:
            counts[f"{key}_cut"] += 1
            return
        try:
            outs[key].send(data)
            counts[key] += 1
        except OSError:
            counts[f"{key}_error"] += 1

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_cut)
    print("ready", flush=True)
    while not state["stop"]:
        now = time.monotonic()
        for key, queue in queues.items():
            while queue and queue[0][0] <= now:
                send(key, queue.popleft()[1])
        heads = [queue[0][0] for queue in queues.values() if queue]
        wait = min(max(0.0, min(heads) - now), 0.2) if heads else 0.2
        try:
            ready, _, _ = select.select([sa, sb], [], [], wait)
        except InterruptedError:
            continue
        for s in ready:
            _, delay, key = route[s.fileno()]
            for _ in range(256):  # then serve the queues again
                try:
                    data, addr = s.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                if key == "b_to_a" and _is_server_reply(data):
                    # Another server's (the forger's) reply: nothing the trusted
                    # server could use; dropping it keeps a flood off its path.
                    counts["b_to_a_dropped_replies"] += 1
                    continue
                data = fix_udp_checksum(data)
                if delay <= 0:
                    send(key, data)
                else:
                    queues[key].append((time.monotonic() + delay, data))
    print(json.dumps(counts), flush=True)


# --------------------------------------------------------------------------
# processes


class _Child(LabProcess):
    """A helper process in a lab namespace that prints ``ready`` when it is set
    up and one JSON line of counts when SIGTERM stops it (:meth:`stop` returns
    that, and keeps it in :attr:`report`). Its output goes to a log file in a
    directory of its own, removed by :meth:`close`."""

    label = "child"
    # The verdict is the report: one that outlives SIGTERM is killed, and then
    # has none, which stop() says.
    strict_stop = False

    def __init__(self, netns: str) -> None:
        self.workdir = mkdtemp(f"fdt-{self.label.split()[-1]}-")
        super().__init__(self.workdir / "out", netns=netns)
        self.report: dict[str, Any] | None = None

    def _this_run(self) -> str:
        return self.log_text().rsplit("--- start ", 1)[-1]

    def _ready(self) -> bool:
        return "ready" in self._this_run().splitlines()

    def stop(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        """SIGTERM; returns (and keeps in :attr:`report`) the process's counts."""
        if self.proc is None:
            return self.report or {}
        code = super().stop(timeout)
        self.proc = None
        lines = [ln for ln in self._this_run().splitlines() if ln.startswith("{")]
        if not lines:
            raise LabError(f"{self.label} exited {code} without a report:\n{self.log_tail()}")
        self.report = json.loads(lines[-1])
        return self.report

    def close(self) -> None:
        try:
            with contextlib.suppress(LabError):
                self.stop()
        finally:
            rmtree(self.workdir)


class Forwarder(_Child):
    label = "delay forwarder"

    def __init__(self, netns: str, if_a: str, if_b: str, delay_ab: float, delay_ba: float) -> None:
        super().__init__(netns)
        self.args = [if_a, if_b, str(delay_ab), str(delay_ba)]

    def argv(self) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "forward", *self.args]

    def toggle_cut(self) -> None:
        if self.proc is None:
            raise LabError("the forwarder is not running")
        self.proc.send_signal(signal.SIGUSR1)


class Forger(_Child):
    """forger.py in the forger's namespace; see its docstring for the modes.

    ``with seg.forger("ack-no-sid", phases="select") as f: ...``; after the
    block ``f.report`` holds ``{"seen": {...}, "sent": {...}, "frames": n}``.
    """

    label = "forger"

    def __init__(self, segment: HostileSegment, mode: str, *args: str, **options: Any) -> None:
        super().__init__(segment.forger_ns.netns)
        self.segment = segment
        self.mode = mode
        self.args = list(args)
        self.options = options
        self.last_log = ""  # the log's tail when the block ended

    def argv(self) -> list[str]:
        seg = self.segment
        argv = [sys.executable, str(FORGER), seg.forger_ns.ifname, self.mode, *self.args,
                "--own-ip", seg.forger_ip, "--trusted-ip", seg.trusted_ip,
                "--other-ip", FORGED_ADDRESS, "--subnet", SUBNET]  # fmt: skip
        for key, value in self.options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        return argv

    def __exit__(self, *exc: object) -> None:
        # stop(), not close()'s quiet one: a forger without a report fails the test.
        try:
            self.stop()
        finally:
            self.last_log = self.log_tail(40)  # for a test's message: the dir goes
            rmtree(self.workdir)

    def sent(self, kind: str | None = None) -> int:
        report = self.report or {}
        sent = report.get("sent", {})
        return int(sum(sent.values()) if kind is None else sent.get(kind, 0))

    def seen(self, phase: str) -> int:
        return int((self.report or {}).get("seen", {}).get(phase, 0))


# --------------------------------------------------------------------------
# the segment


class HostileSegment:
    """labnet.Segment (bridged, hub mode) with the forger as ``servers[0]`` on the
    bridge and the trusted server as ``servers[1]`` behind the delay forwarder.

    ``host_if`` is the engine's interface. Start the trusted DHCP server with
    ``dhcp_servers.Dnsmasq(seg.segment, server=seg.trusted_ns)`` or ``dhcp_servers.Kea(...)``.
    """

    def __init__(self, delay: float = DEFAULT_DELAY, upstream_delay: float = 0.0) -> None:
        self.delay = delay
        self.upstream_delay = upstream_delay
        self.segment = labnet.Segment(servers=1, bridged=True, server_address=FORGER_CIDR)
        self.forwarder: Forwarder | None = None  # made once the hub exists
        self._cut = False

    # views
    @property
    def host_if(self) -> str:
        return self.segment.host_if

    @property
    def forger_ns(self) -> labnet.ServerNs:
        return self.segment.servers[0]

    @property
    def trusted_ns(self) -> labnet.ServerNs:
        return self.segment.servers[1]

    @property
    def forger_ip(self) -> str:
        return self.forger_ns.ip

    @property
    def trusted_ip(self) -> str:
        return self.trusted_ns.ip

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        seg = self.segment
        seg.open()
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        seg = self.segment
        hub = seg.hub_netns
        assert hub is not None
        tag = labnet.PREFIX + seg.token
        # A hub: no learning, every frame to every port (the forger sees unicasts).
        run("ip", "link", "set", "dev", seg.bridge_if, "type", "bridge", "ageing_time", "0",
                netns=hub)  # fmt: skip
        # The trusted server's namespace; labnet.Segment owns it (teardown, stale cleanup).
        ns = seg._new_netns(f"{tag}s1")
        srv_if, far, near, port = f"{tag}s1", f"{tag}p1", f"{tag}p2", f"{tag}p3"
        labnet.add_veth(far, srv_if, ns, netns=hub)
        run("ip", "link", "add", near, "type", "veth", "peer", "name", port, netns=hub)
        run("ip", "link", "set", port, "master", seg.bridge_if, "up", netns=hub)
        for name in (far, near):
            run("ip", "link", "set", name, "up", netns=hub)
        seg._setup_server(labnet.ServerNs(ns, srv_if, TRUSTED_CIDR))
        self.forwarder = Forwarder(hub, far, near, self.delay, self.upstream_delay)
        self.forwarder.start()

    def set_cut(self, cut: bool) -> None:
        """Cut the trusted server off the segment (True) or join it again."""
        if cut != self._cut:
            if self.forwarder is None:
                raise LabError("the forwarder is not running")
            self.forwarder.toggle_cut()
            self._cut = cut
            time.sleep(0.05)  # the signal is handled between two select() calls

    @contextlib.contextmanager
    def trusted_cut(self) -> Any:
        self.set_cut(True)
        try:
            yield
        finally:
            self.set_cut(False)

    def forger(self, mode: str, *args: str, **options: Any) -> Forger:
        return Forger(self, mode, *args, **options)

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
        self.segment.close()


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "forward":
        forward(argv[1], argv[2], float(argv[3]), float(argv[4]))
        return 0
    print(f"usage: {Path(__file__).name} forward IF_A IF_B DELAY_A_TO_B DELAY_B_TO_A",
          file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
