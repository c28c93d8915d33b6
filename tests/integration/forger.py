"""A hostile host on a DHCP segment: answers client broadcasts (and, in
promiscuous mode, unicast RENEWs) at once with forged replies.

Run by ``hostile_lab.Forger`` inside its own network namespace, on a port of the
lab's bridge, with a packet socket; it never sends anywhere but that interface.
Parsing and the ordinary replies use the project's codec (``fastdhcp.codec``);
the flood frames are built by hand so that a hundred thousand cost little.

    python forger.py IFNAME MODE [VARIANT] --own-ip A --trusted-ip B [options]

Modes (every reply carries the request's xid and chaddr):

``ack-no-sid``, ``ack-other-sid``
    DHCPACK for another address (``--other-ip``), lease time 0, router = the
    forger; without option 54, or with option 54 = the forger's own address.
``nak-no-sid``, ``nak-other-sid``
    DHCPNAK, without option 54 or with the forger's own.
``ack-copy-sid [other|same]``
    option 54 = the trusted server's address. ``other`` (default): the same
    insane ACK as ``ack-no-sid``. ``same``: a perfectly sane ACK for the address
    asked for, but with the forger as router and DNS server and lease time
    ``--lease-time``: the one forgery that a server identifier cannot reveal.
``offer-bad VARIANT``
    answers DISCOVERs with an OFFER that is insane in one way (``VARIANTS``
    below; ``cycle`` picks the variant from the last byte of chaddr), and ACKs a
    REQUEST that takes it with the same values (counted ``ack:VARIANT``), and,
    when it copies the trusted identifier, every other REQUEST naming it too
    (``ack-trusted-request:VARIANT``). ``--sid own|trusted|none``
    chooses its option 54. Variant ``sane`` is a sane offer of ``--other-ip``.
``mixed``
    one reply per ignore reason for every REQUEST: not_ours (another chaddr),
    wrong_type (an OFFER), wrong_server (a sane ACK from the forger's own
    identifier), unusable (the trusted identifier, the right address, lease
    time 0), malformed (a sane ACK without option 54).
``flood``
    ``--count`` replies per request (once per xid and message type), with the
    right xid and chaddr and varying garbage: message types, option 54 values
    (a new one in every frame), lengths, lease times below 10 s, long texts.
``silent``
    answers nothing; only counts what it sees.

``--phases`` limits the requests answered: ``discover``, ``select`` (REQUEST
with option 54, SELECTING -> REQUESTING), ``renew`` (ciaddr set, unicast),
``rebind`` (ciaddr set, broadcast), ``reboot`` (option 50 without 54).

It prints ``ready`` once its socket is bound, and on SIGTERM one JSON line:
``{"seen": {phase: n}, "sent": {kind: n}, "frames": n}``.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import random
import select
import signal
import socket
import struct
import sys
import time

from fastdhcp import codec
from fastdhcp.errors import DecodeError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4

DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6
MAGIC = b"\x63\x82\x53\x63"

VARIANTS = (
    "yiaddr-network",
    "yiaddr-broadcast",
    "yiaddr-router",
    "yiaddr-server",
    "yiaddr-zero",
    "mask-0",
    "mask-32",
    "mask-noncontig",
    "router-outside",
    "lease-0",
    "lease-1",
)
PHASES = ("discover", "select", "renew", "rebind", "reboot")
MODES = (
    "ack-no-sid",
    "nak-no-sid",
    "ack-other-sid",
    "nak-other-sid",
    "ack-copy-sid",
    "offer-bad",
    "mixed",
    "flood",
    "silent",
)


def _ip(value: str | int) -> bytes:
    return ipaddress.IPv4Address(value).packed


class Forger:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode: str = args.mode
        self.variant: str | None = args.variant
        self.own_ip = ipaddress.IPv4Address(args.own_ip)
        self.trusted_ip = ipaddress.IPv4Address(args.trusted_ip)
        self.other_ip = ipaddress.IPv4Address(args.other_ip)
        self.net = ipaddress.IPv4Network(args.subnet)
        self.phases = set(args.phases.split(",")) if args.phases else set(PHASES)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind((args.ifname, 0))
        ifindex = socket.if_nametoindex(args.ifname)
        # struct packet_mreq: ifindex, type, alen, address[8]
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        with open(f"/sys/class/net/{args.ifname}/address") as f:
            self.own_mac = bytes.fromhex(f.read().strip().replace(":", ""))
        self.seen: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        self.frames = 0
        self.send_errors: list[str] = []
        self.busy = False  # answering a frame: a SIGTERM waits (see run)
        self.stopping = False
        self.flooded: set[tuple[int, int]] = set()
        self.rng = random.Random(args.seed)
        self.flood_serial = 0
        self._flood_pool: list[tuple[bytes, bytes, int, bytes]] | None = None

    # -- receiving --------------------------------------------------------------

    def run(self) -> None:
        print("ready", flush=True)
        while True:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
            except InterruptedError:
                continue
            if not ready:
                continue
            while True:
                try:
                    data, addr = self.sock.recvfrom(65535, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                # A SIGTERM while a frame is being answered waits for the answer
                # (main's on_term): the test stops the forger as soon as the
                # engine is done, which may be before a slow forger has sent.
                self.busy = True
                try:
                    self.on_frame(data)
                finally:
                    self.busy = False
                if self.stopping:
                    raise _Stop

    def on_frame(self, data: bytes) -> None:
        try:
            frame = codec.decode_frame(data, False)
        except DecodeError:
            return
        if frame.src_port != 68 or frame.dst_port != 67:
            return
        req = frame.message
        if req.op != 1:
            return
        try:
            kind = req.message_type
            sid = req.server_id
            requested = req.requested_ip
        except DecodeError:
            return
        if kind == DISCOVER:
            phase = "discover"
        elif kind == REQUEST:
            if sid is not None:
                phase = "select"
            elif int(req.ciaddr):
                phase = "rebind" if int(frame.dst_ip) == 0xFFFFFFFF else "renew"
            else:
                phase = "reboot"
        else:
            return
        self.seen[phase] += 1
        if phase not in self.phases or self.mode == "silent":
            return
        asked = requested if phase in ("select", "reboot") else req.ciaddr
        self.answer(req, kind, phase, sid, asked)

    # -- answering --------------------------------------------------------------

    def answer(self, req, kind, phase, sid, asked) -> None:  # type: ignore[no-untyped-def]
        mode = self.mode
        if mode == "flood":
            key = (req.xid, kind)
            if key not in self.flooded:
                self.flooded.add(key)
                self.flood(req)
            return
        if mode == "offer-bad":
            self.offer_bad(req, kind, sid, asked)
            return
        if mode == "mixed":
            if kind == REQUEST:
                self.mixed(req, asked)
            return
        if kind != REQUEST:
            return
        if mode.startswith("nak"):
            opts = {53: bytes([NAK]), 56: b"forged by the hostile lab"}
            if mode == "nak-other-sid":
                opts[54] = self.own_ip.packed
            self.send(req, 0, opts, mode)
            return
        if mode == "ack-copy-sid" and self.variant == "same":
            opts = self.sane_options(ACK)
            opts[54] = self.trusted_ip.packed
            self.send(req, asked or self.other_ip, opts, "ack-copy-sid-same")
            return
        opts = {
            53: bytes([ACK]),
            51: (0).to_bytes(4, "big"),
            1: self.net.netmask.packed,
            3: self.own_ip.packed,
            6: self.own_ip.packed,
        }
        if mode == "ack-other-sid":
            opts[54] = self.own_ip.packed
        elif mode == "ack-copy-sid":
            opts[54] = self.trusted_ip.packed
        self.send(req, self.other_ip, opts, mode)

    def sane_options(self, kind: int) -> dict[int, bytes]:
        return {
            53: bytes([kind]),
            51: self.args.lease_time.to_bytes(4, "big"),
            1: self.net.netmask.packed,
            3: self.own_ip.packed,
            6: self.own_ip.packed,
        }

    def offer_bad(self, req, kind, sid, asked) -> None:  # type: ignore[no-untyped-def]
        variant = self.variant or "cycle"
        if variant == "cycle":
            variant = VARIANTS[req.chaddr[5] % len(VARIANTS)]
        sid_mode = self.args.sid
        own_sid = {"own": self.own_ip, "trusted": self.trusted_ip, "none": None}[sid_mode]
        yiaddr = self.other_ip
        mask = self.net.netmask.packed
        router = self.own_ip.packed
        lease = self.args.lease_time
        if variant == "yiaddr-network":
            yiaddr = self.net.network_address
        elif variant == "yiaddr-broadcast":
            yiaddr = self.net.broadcast_address
        elif variant == "yiaddr-router":
            yiaddr = self.net.network_address + 1
            router = yiaddr.packed
        elif variant == "yiaddr-server":
            yiaddr = own_sid or self.own_ip
        elif variant == "yiaddr-zero":
            yiaddr = ipaddress.IPv4Address(0)
        elif variant == "mask-0":
            mask = _ip(0)
        elif variant == "mask-32":
            mask = _ip("255.255.255.255")
        elif variant == "mask-noncontig":
            mask = _ip("255.0.255.0")
        elif variant == "router-outside":
            router = _ip("192.0.2.1")
        elif variant == "lease-0":
            lease = 0
        elif variant == "lease-1":
            lease = 1
        elif variant != "sane":
            raise SystemExit(f"unknown offer-bad variant {variant}")
        what = "offer"
        if kind == DISCOVER:
            reply = OFFER
        elif asked == yiaddr and sid == own_sid:
            reply, what = ACK, "ack"  # the engine took the forged offer: complete the attack
        elif sid is not None and sid == own_sid:
            # A REQUEST naming the server identifier the forger copies, for the
            # trusted server's offer: ACK it first, with the same insane values.
            reply, what = ACK, "ack-trusted-request"
        else:
            return
        opts = {
            53: bytes([reply]),
            51: lease.to_bytes(4, "big"),
            1: mask,
            3: router,
            6: self.own_ip.packed,
        }
        if own_sid is not None:
            opts[54] = own_sid.packed
        self.send(req, yiaddr, opts, f"{what}:{variant}")

    def mixed(self, req, asked) -> None:  # type: ignore[no-untyped-def]
        asked = asked or self.other_ip
        other_chaddr = bytes([req.chaddr[0] ^ 0x80]) + req.chaddr[1:]
        opts = self.sane_options(ACK)
        opts[54] = self.trusted_ip.packed
        self.send(req, asked, opts, "not_ours", chaddr=other_chaddr)
        opts = self.sane_options(OFFER)
        opts[54] = self.trusted_ip.packed
        self.send(req, asked, opts, "wrong_type")
        opts = self.sane_options(ACK)
        opts[54] = self.own_ip.packed
        self.send(req, asked, opts, "wrong_server")
        opts = self.sane_options(ACK)
        opts[54] = self.trusted_ip.packed
        opts[51] = (0).to_bytes(4, "big")
        self.send(req, asked, opts, "unusable")
        opts = self.sane_options(ACK)
        self.send(req, asked, opts, "malformed")

    def send(self, req, yiaddr, options, what, chaddr=None) -> None:  # type: ignore[no-untyped-def]
        msg = codec.Message(
            op=2,
            xid=req.xid,
            flags=req.flags,
            ciaddr=req.ciaddr,
            yiaddr=yiaddr,
            chaddr=chaddr or req.chaddr,
            options=options,
        )
        frame = self.frame_for(req, msg)
        for attempt in range(3):
            try:
                self.sock.send(frame)
                break
            except OSError as exc:  # ENOBUFS on a busy veth: said in the report
                self.send_errors.append(f"{what}: {exc}")
                time.sleep(0.01 * (attempt + 1))
        else:
            return
        self.sent[what] += 1
        self.frames += 1

    def frame_for(self, req, msg) -> bytes:  # type: ignore[no-untyped-def]
        # Where a real server would send it (RFC 2131 §4.1): a renewal to ciaddr
        # at chaddr, everything else broadcast.
        if int(req.ciaddr):
            dst_mac, dst_ip = req.chaddr, req.ciaddr
        else:
            dst_mac, dst_ip = b"\xff" * 6, 0xFFFFFFFF
        return codec.build_frame(
            msg,
            src_mac=self.own_mac,
            dst_mac=dst_mac,
            src_ip=self.own_ip,
            dst_ip=dst_ip,
            src_port=67,
            dst_port=68,
        )

    # -- the flood --------------------------------------------------------------

    def _pool(self) -> list[tuple[bytes, bytes, int, bytes]]:
        """Templates: (bootp bytes 8..27, bootp bytes 44..235 + magic + options
        before option 54, option 54's length (-1: none), options after it).
        Every template is unusable by at least one rule (lease time < 10 s or
        malformed), so no engine may take one."""
        if self._flood_pool is not None:
            return self._flood_pool
        rng = self.rng
        net = self.net
        pool = []
        for _ in range(1024):
            kind = rng.choice([OFFER, ACK, NAK, OFFER, ACK, NAK, 0, 4, 7, 9, 18, 200, 255])
            yiaddr = rng.choice(
                [0, int(net.network_address), int(net.broadcast_address),
                 int(net.network_address) + rng.randrange(2, net.num_addresses - 2),
                 rng.getrandbits(32)]
            )  # fmt: skip
            mid = struct.pack("!HHIIII", 0, 0x8000, 0, yiaddr, 0, 0)  # secs flags ci yi si gi
            post = bytes(64) + bytes(128) + MAGIC  # sname, file
            opts = b""
            if kind != 0:
                opts += b"\x35\x01" + bytes([kind])
            sid_len = rng.choice([4, 4, 4, 4, 0, 3, 5, 8, -1])  # -1: no option 54
            after = b""
            lease = rng.choice(
                [struct.pack("!I", rng.randrange(0, 10)), b"", b"\x00", b"\x00\x00\x00\x00\x01"]
            )
            after += b"\x33" + bytes([len(lease)]) + lease
            if rng.random() < 0.7:
                mask = rng.choice([b"\xff\xff\x00\x00", b"\xff\x00\xff\x00", b"\x00" * 4,
                                   b"\xff" * 4, b"\xff\xff", rng.randbytes(4)])  # fmt: skip
                after += b"\x01" + bytes([len(mask)]) + mask
            if rng.random() < 0.5:
                routers = rng.randbytes(4 * rng.randrange(0, 8) + rng.choice([0, 0, 1]))
                after += b"\x03" + bytes([len(routers)]) + routers
            if rng.random() < 0.5:
                text = bytes(rng.randrange(32, 127) for _ in range(rng.randrange(0, 256)))
                after += b"\x38" + bytes([len(text)]) + text  # option 56, message
            if rng.random() < 0.3:
                text = bytes(rng.randrange(0, 256) for _ in range(rng.randrange(1, 256)))
                after += b"\x0c" + bytes([len(text)]) + text  # a binary host name
            for _ in range(rng.randrange(0, 4)):
                code = rng.randrange(60, 250)
                val = rng.randbytes(rng.randrange(0, 40))
                after += bytes([code, len(val)]) + val
            if rng.random() < 0.1:
                after += b"\x36\x04" + rng.randbytes(4)  # a second option 54 (RFC 3396)
            ending = rng.choice([b"\xff", b"\xff", b"\xff", b"", b"\x07"])  # none, truncated
            pool.append((mid, post + opts, sid_len, after + ending))
        self._flood_pool = pool
        return pool

    def flood(self, req) -> None:  # type: ignore[no-untyped-def]
        # Unlike one answer, a flood may be cut short between any two frames.
        self.busy = False
        if self.stopping:
            raise _Stop
        pool = self._pool()
        count = self.args.count
        rate = self.args.rate
        xid = struct.pack("!I", req.xid)
        chaddr = req.chaddr + bytes(16 - len(req.chaddr))
        eth = b"\xff" * 6 + self.own_mac + b"\x08\x00"
        src_ip = self.own_ip.packed
        head = b"\x02\x01\x06\x00" + xid
        started = time.monotonic()
        sock = self.sock
        for i in range(count):
            mid, post, sid_len, after = pool[i % len(pool)]
            self.flood_serial += 1
            if sid_len < 0:
                sid = b""
            else:
                value = struct.pack("!I", 0x0B000000 + self.flood_serial % 0x00FFFFFF)
                sid = b"\x36" + bytes([sid_len]) + (value * 2)[:sid_len]
            payload = head + mid + chaddr + post + sid + after
            udp_len = 8 + len(payload)
            ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0,
                                 src_ip, b"\xff" * 4)  # fmt: skip
            ip_hdr = ip_hdr[:10] + struct.pack("!H", _checksum(ip_hdr)) + ip_hdr[12:]
            udp = struct.pack("!HHHH", 67, 68, udp_len, 0)  # RFC 768: checksum 0 = none
            while True:
                try:
                    sock.send(eth + ip_hdr + udp + payload)
                    break
                except BlockingIOError:
                    time.sleep(0.0005)
            self.frames += 1
            self.sent["flood"] += 1  # per frame: a SIGTERM may end the flood
            if rate and i % 64 == 63:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

    def report(self) -> str:
        report = {"seen": self.seen, "sent": self.sent, "frames": self.frames}
        if self.send_errors:
            report["send_errors"] = self.send_errors[:10]
        return json.dumps(report)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return int(~total & 0xFFFF)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ifname")
    p.add_argument("mode", choices=MODES)
    p.add_argument("variant", nargs="?", default=None)
    p.add_argument("--own-ip", required=True)
    p.add_argument("--trusted-ip", required=True)
    p.add_argument("--other-ip", default="10.99.255.77", help="the forged address")
    p.add_argument("--subnet", default="10.99.0.0/16")
    p.add_argument("--phases", default="", help=f"comma-separated subset of {PHASES}")
    p.add_argument("--sid", choices=("own", "trusted", "none"), default="own")
    p.add_argument("--lease-time", type=int, default=7777)
    p.add_argument("--count", type=int, default=1000, help="flood: replies per request")
    p.add_argument("--rate", type=float, default=0.0, help="flood: frames/s (0: at once)")
    p.add_argument("--seed", type=int, default=2131)
    args = p.parse_args(argv)
    if args.variant and args.mode not in ("offer-bad", "ack-copy-sid"):
        p.error(f"mode {args.mode} takes no variant")
    if args.mode == "offer-bad" and args.variant not in (*VARIANTS, "cycle", "sane"):
        p.error(f"offer-bad needs a variant: {', '.join(VARIANTS)}, cycle or sane")
    return args


class _Stop(Exception):
    """Raised by the SIGTERM handler: ends a select() at once (PEP 475 would
    otherwise resume it) and a flood between two frames."""


def main(argv: list[str] | None = None) -> int:
    forger = Forger(parse_args(argv))

    def on_term(signum: int, frame: object) -> None:
        forger.stopping = True
        if not forger.busy:
            raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        forger.run()
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(forger.report(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
