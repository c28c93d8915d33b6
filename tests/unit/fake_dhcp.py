"""A socketpair transport and an in-process DHCP server, for the engine's unit tests.

The engine talks to a ``Transport`` (STYLE.md: "Inject the transport"). Here that
transport is one end of an ``AF_UNIX``/``SOCK_DGRAM`` socketpair, one datagram per
Ethernet frame; ``FakeServer`` sits on the other end, on the same asyncio loop, and
answers like a small RFC 2131 server. It records everything it receives, and has
knobs to misbehave in the ways real networks do.

Nothing here needs root or a network.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from fastdhcp import codec
from fastdhcp.engine import Engine, EngineConfig
from fastdhcp.spec import BOOTREPLY, BOOTREQUEST, FLAG_BROADCAST, MessageType, Option

BROADCAST_MAC = b"\xff" * 6
BROADCAST_IP = IPv4Address("255.255.255.255")
HOST_MAC = bytes.fromhex("02aabbccdd01")  # the transport's own MAC (the host's NIC)
SERVER_MAC = bytes.fromhex("525400000001")
SERVER_ID = IPv4Address("10.0.0.1")
OTHER_SERVER_ID = IPv4Address("10.0.0.2")
OTHER_SERVER_MAC = bytes.fromhex("525400000002")
ROGUE_SERVER_ID = IPv4Address("10.0.0.66")
NETWORK = IPv4Network("10.0.0.0/24")
ROUTER = IPv4Address("10.0.0.1")
DNS = (IPv4Address("10.0.0.53"), IPv4Address("10.0.0.54"))

# What a bogus reply sent ahead of a genuine one does to the engine (EngineStats).
BOGUS_COUNTER = {
    "wrong_xid": "not_ours",
    "wrong_chaddr": "not_ours",
    "bootrequest": "not_ours",  # op 1: a request, not a reply (RFC 951 §3)
    "wrong_type": "wrong_type",
    "wrong_server": "wrong_server",
    "no_type": "malformed",  # a BOOTP reply: no option 53
    "op3": "malformed",  # op neither 1 nor 2: the codec refuses it
    "bad_udp_checksum": "malformed",
    "bad_ip_checksum": "malformed",
    "truncated": "malformed",
    "garbage": "malformed",
    # RFC 2131 §4.3.1: option 54 is mandatory in an OFFER, ACK or NAK.
    "no_server_id": "malformed",
    "bad_mask": "malformed",  # 255.0.255.0: not contiguous
    # Values no server can mean (fastdhcp.sanity): ignored as unusable.
    "zero_address": "unusable",
    "network_address": "unusable",
    "broadcast_address": "unusable",
    "router_address": "unusable",
    "mask_32": "unusable",
    "mask_7": "unusable",
    "router_outside": "unusable",
    "lease_zero": "unusable",
    "lease_one": "unusable",
}

# Forged NAKs, sent just before a genuine ACK: what each does in REQUESTING.
FORGED_NAK_COUNTER = {
    "nak_no_server_id": "malformed",
    "nak_wrong_server": "wrong_server",
}


class SocketPairTransport:
    """The engine's ``Transport`` on one end of a non-blocking socketpair."""

    def __init__(self, sock: socket.socket, *, ifname: str = "fake0", mac: bytes = HOST_MAC):
        sock.setblocking(False)
        self.sock = sock
        self.ifname = ifname
        self.mac = mac
        self.closed = False
        self.frames_sent = 0
        self.send_error: OSError | None = None  # set to make every send_batch() raise it
        # Frames the "kernel" refuses one by one, as sendmmsg does an oversized
        # frame: an error if it is the first of a batch, else a short count.
        self.refuse: Callable[[bytes], bool] = lambda frame: False

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_batch(self) -> list[tuple[bytes, bool]]:
        # A socketpair carries no PACKET_AUXDATA: no checksum is ever left pending.
        frames: list[tuple[bytes, bool]] = []
        for _ in range(64):
            try:
                frames.append((self.sock.recv(65536), False))
            except (BlockingIOError, InterruptedError):
                break
        return frames

    def send_batch(self, frames: Sequence[bytes]) -> int:
        if self.send_error is not None:
            raise self.send_error
        sent = 0
        for frame in frames:
            if self.refuse(frame):
                if sent:
                    break
                raise OSError(90, "Message too long")  # EMSGSIZE
            try:
                self.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                break  # the peer's queue is full (net.unix.max_dgram_qlen): try later
            sent += 1
        self.frames_sent += sent
        return sent

    def close(self) -> None:
        self.closed = True
        self.sock.close()


@dataclass
class Seen:
    """One frame the server received, with when it arrived."""

    at: float  # loop.time()
    wall: float  # time.time(), comparable with Lease.bound_at
    frame: Any  # codec.Frame

    @property
    def message(self) -> Any:
        return self.frame.message

    @property
    def type(self) -> MessageType | None:
        kind: MessageType | None = self.message.message_type
        return kind

    @property
    def xid(self) -> int:
        return int(self.message.xid)

    @property
    def ciaddr(self) -> IPv4Address:
        return IPv4Address(self.message.ciaddr)

    @property
    def chaddr(self) -> bytes:
        return bytes(self.message.chaddr)

    @property
    def secs(self) -> int:
        return int(self.message.secs)

    @property
    def broadcast_flag(self) -> bool:
        return bool(self.message.flags & FLAG_BROADCAST)

    @property
    def options(self) -> dict[int, bytes]:
        return dict(self.message.options)

    @property
    def src_mac(self) -> bytes:
        return bytes(self.frame.src_mac)

    @property
    def dst_mac(self) -> bytes:
        return bytes(self.frame.dst_mac)

    @property
    def src_ip(self) -> IPv4Address:
        return IPv4Address(self.frame.src_ip)

    @property
    def dst_ip(self) -> IPv4Address:
        return IPv4Address(self.frame.dst_ip)


@dataclass
class Sent:
    """One reply the server sent (genuine ones only)."""

    at: float
    kind: MessageType
    message: Any
    dst_mac: bytes
    dst_ip: IPv4Address


@dataclass
class FakeServer:
    """An in-process DHCP server on the far end of the socketpair.

    Answers DISCOVER with OFFER and REQUEST with ACK or NAK (RFC 2131 §4.3), takes
    RELEASE and DECLINE silently, and records every frame in ``received``.
    """

    sock: socket.socket
    server_id: IPv4Address = SERVER_ID
    mac: bytes = SERVER_MAC
    network: IPv4Network = NETWORK
    pool_start: int = 10  # host number of the first address handed out
    router: IPv4Address | None = ROUTER
    dns: tuple[IPv4Address, ...] = DNS
    domain: str | None = "test.example"
    lease_time: int | None = 3600  # None: omit option 51 (a broken server)
    t1: int | None = None  # option 58; None: omitted
    t2: int | None = None  # option 59; None: omitted

    # -- knobs ------------------------------------------------------------------------
    silent: bool = False  # never answer anything
    ignore: set[MessageType] = field(default_factory=set)  # never answer these types
    drop: collections.Counter[MessageType] = field(default_factory=collections.Counter)
    delay: dict[MessageType, float] = field(default_factory=dict)  # reply after n s
    nak: int = 0  # NAK the next n REQUESTs
    nak_message: str | None = "requested address not available"  # option 56
    offer_address: IPv4Address | None = None  # offer this instead of the pool's
    ack_address: IPv4Address | None = None  # ACK with this yiaddr instead
    malformed_router: bool = False  # a 3-byte option 3 in ACKs (RFC 2132 §3.5 says 4n)
    # Bogus replies sent just before each genuine reply of a type, in order.
    bogus: dict[MessageType, list[str]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # the wall clock (Seen.wall)

    # -- records ----------------------------------------------------------------------
    received: list[Seen] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    offers: dict[bytes, IPv4Address] = field(default_factory=dict)
    bindings: dict[bytes, IPv4Address] = field(default_factory=dict)
    declined: set[IPv4Address] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.setblocking(False)
        self.drop = collections.Counter(self.drop)  # tests pass a plain dict
        self._loop = asyncio.get_running_loop()
        self._outbox: collections.deque[bytes] = collections.deque()
        self._writing = False
        self._closed = False
        self._next_host = self.pool_start
        self._changed = asyncio.Event()
        self._rng = random.Random(2131)
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    # -- public helpers -----------------------------------------------------------------

    def become(self, server_id: IPv4Address, mac: bytes) -> None:
        """Answer from now on as another server sharing the same lease database
        (a failover peer: what a REBINDING client may reach, RFC 2131 §4.4.5)."""
        self.server_id = server_id
        self.mac = mac

    def seen(self, kind: MessageType | None = None) -> list[Seen]:
        return [s for s in self.received if kind is None or s.type == kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until ``predicate()`` holds, re-checking on every received frame."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_seen(self, kind: MessageType, count: int = 1, timeout: float = 2.0) -> None:
        await self.wait_for(lambda: len(self.seen(kind)) >= count, timeout)

    def inject(self, kinds: Iterable[str], xid: int = 0, chaddr: bytes = b"\x02" * 6) -> None:
        """Send junk frames now (before or between exchanges)."""
        template = codec.Message(
            op=BOOTREPLY, xid=xid, chaddr=chaddr,
            options={Option.MESSAGE_TYPE: bytes((MessageType.OFFER,))},
        )  # fmt: skip
        for kind in kinds:
            self._send_raw(self._corrupt(kind, template, BROADCAST_MAC, BROADCAST_IP))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.sock.fileno())
        if self._writing:
            self._loop.remove_writer(self.sock.fileno())
        self.sock.close()

    # -- receiving ----------------------------------------------------------------------

    def _on_readable(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            try:
                self._on_frame(data)
            except Exception as exc:  # noqa: BLE001 - a test failure, not a server crash
                self.errors.append(exc)
        self._changed.set()

    def _on_frame(self, data: bytes) -> None:
        frame = codec.decode_frame(data)  # a client frame must always decode
        seen = Seen(self._loop.time(), self.clock(), frame)
        self.received.append(seen)
        message = frame.message
        kind = message.message_type
        if message.op != BOOTREQUEST or kind is None or self.silent or kind in self.ignore:
            return
        if self.drop[kind] > 0:
            self.drop[kind] -= 1
            return
        if kind == MessageType.DISCOVER:
            reply = self._offer(message)
        elif kind == MessageType.REQUEST:
            reply = self._ack_or_nak(message)
        elif kind == MessageType.RELEASE:
            self.bindings.pop(bytes(message.chaddr), None)
            return
        elif kind == MessageType.DECLINE:
            if message.requested_ip is not None:
                self.declined.add(message.requested_ip)
            self.bindings.pop(bytes(message.chaddr), None)
            return
        else:
            return
        if reply is None:
            return
        wait = self.delay.get(kind)
        if wait:
            self._loop.call_later(wait, self._reply, message, *reply)
        else:
            self._reply(message, *reply)

    # -- the server's decisions (RFC 2131 §4.3) -------------------------------------------

    def _allocate(self, chaddr: bytes, wanted: IPv4Address | None) -> IPv4Address:
        if chaddr in self.bindings:
            return self.bindings[chaddr]
        if chaddr in self.offers:
            return self.offers[chaddr]
        taken = set(self.bindings.values()) | set(self.offers.values()) | self.declined
        if wanted is not None and wanted in self.network and wanted not in taken:
            return wanted
        while True:
            address = self.network.network_address + self._next_host
            self._next_host += 1
            if address not in self.network or address == self.network.broadcast_address:
                raise RuntimeError("the fake server's pool is exhausted")
            if address not in taken:
                return address

    def _offer(self, request: Any) -> tuple[MessageType, IPv4Address] | None:
        chaddr = bytes(request.chaddr)
        address = self._allocate(chaddr, request.requested_ip)
        if self.offer_address is not None:
            address = self.offer_address
        self.offers[chaddr] = address
        return MessageType.OFFER, address

    def _ack_or_nak(self, request: Any) -> tuple[MessageType, IPv4Address] | None:
        chaddr = bytes(request.chaddr)
        server = request.server_id
        if server is not None and server != self.server_id:
            return None  # SELECTING, and the client took another server's offer
        if self.nak > 0:
            self.nak -= 1
            return MessageType.NAK, IPv4Address(0)
        if server is not None:  # SELECTING: options 50 and 54 name our offer
            wanted = request.requested_ip
            # A retransmitted REQUEST for what is already bound is ACKed again.
            ok = wanted is not None and wanted in (
                self.offers.get(chaddr),
                self.bindings.get(chaddr),
            )
        elif int(request.ciaddr):  # RENEWING / REBINDING: ciaddr is the lease
            wanted = IPv4Address(request.ciaddr)
            ok = self.bindings.get(chaddr) == wanted
        else:  # INIT-REBOOT: option 50 only
            wanted = request.requested_ip
            ok = wanted is not None and self.bindings.get(chaddr) == wanted
        if not ok or wanted is None:
            return MessageType.NAK, IPv4Address(0)
        self.bindings[chaddr] = wanted
        self.offers.pop(chaddr, None)
        return MessageType.ACK, self.ack_address or wanted

    # -- sending -------------------------------------------------------------------------

    def _options(self, kind: MessageType) -> dict[int, bytes]:
        options: dict[int, bytes] = {
            Option.MESSAGE_TYPE: bytes((kind,)),
            Option.SERVER_ID: self.server_id.packed,
        }
        if kind == MessageType.NAK:
            if self.nak_message is not None:
                options[Option.MESSAGE] = self.nak_message.encode()
            return options
        if self.lease_time is not None:
            options[Option.LEASE_TIME] = self.lease_time.to_bytes(4, "big")
        if self.t1 is not None:
            options[Option.RENEWAL_TIME] = self.t1.to_bytes(4, "big")
        if self.t2 is not None:
            options[Option.REBINDING_TIME] = self.t2.to_bytes(4, "big")
        options[Option.SUBNET_MASK] = self.network.netmask.packed
        if self.malformed_router and kind == MessageType.ACK:
            options[Option.ROUTER] = b"\x0a\x00\x00"
        elif self.router is not None:
            options[Option.ROUTER] = self.router.packed
        if self.dns:
            options[Option.DNS_SERVERS] = b"".join(a.packed for a in self.dns)
        if self.domain is not None:
            options[Option.DOMAIN_NAME] = self.domain.encode()
        return options

    def _reply(self, request: Any, kind: MessageType, yiaddr: IPv4Address) -> None:
        if self._closed:
            return
        fields: dict[str, Any] = {
            "op": BOOTREPLY,
            "xid": request.xid,
            "flags": request.flags,
            "ciaddr": request.ciaddr if kind != MessageType.NAK else 0,
            "yiaddr": yiaddr,
            "giaddr": request.giaddr,
            "chaddr": request.chaddr,
            "options": self._options(kind),
        }
        # RFC 2131 §4.1, "the server ... sends": to ciaddr when the client has one;
        # NAKs and replies with the BROADCAST bit set are broadcast; else unicast
        # to chaddr and yiaddr.
        if kind == MessageType.NAK or (not int(request.ciaddr) and request.flags & FLAG_BROADCAST):
            dst_mac, dst_ip = BROADCAST_MAC, BROADCAST_IP
        elif int(request.ciaddr):
            dst_mac, dst_ip = bytes(request.chaddr), IPv4Address(request.ciaddr)
        else:
            dst_mac, dst_ip = bytes(request.chaddr), yiaddr
        for bogus in self.bogus.get(kind, ()):
            template = codec.Message(**self._mutate(bogus, kind, fields))
            self._send_raw(self._corrupt(bogus, template, dst_mac, dst_ip))
        message = codec.Message(**fields)
        self._send_raw(self._frame(message, dst_mac, dst_ip))
        self.sent.append(Sent(self._loop.time(), kind, message, dst_mac, dst_ip))

    def _mutate(self, bogus: str, kind: MessageType, fields: dict[str, Any]) -> dict[str, Any]:
        changed = dict(fields)
        options = dict(fields["options"])
        if bogus == "wrong_xid":
            changed["xid"] = (fields["xid"] + 1) & 0xFFFFFFFF
        elif bogus == "wrong_chaddr":
            changed["chaddr"] = bytes(b ^ 0xFF for b in fields["chaddr"])
        elif bogus == "bootrequest":
            changed["op"] = BOOTREQUEST
        elif bogus == "wrong_type":
            other = MessageType.ACK if kind == MessageType.OFFER else MessageType.OFFER
            options[Option.MESSAGE_TYPE] = bytes((other,))
        elif bogus == "wrong_server":
            options[Option.SERVER_ID] = ROGUE_SERVER_ID.packed
        elif bogus == "no_type":
            del options[Option.MESSAGE_TYPE]
        elif bogus in ("no_server_id", "nak_no_server_id"):
            del options[Option.SERVER_ID]
        elif bogus == "bad_mask":
            options[Option.SUBNET_MASK] = bytes((255, 0, 255, 0))
        elif bogus == "zero_address":
            changed["yiaddr"] = IPv4Address(0)
        elif bogus == "network_address":
            changed["yiaddr"] = self.network.network_address
        elif bogus == "broadcast_address":
            changed["yiaddr"] = self.network.broadcast_address
        elif bogus == "router_address":
            changed["yiaddr"] = self.router
        elif bogus == "mask_32":
            options[Option.SUBNET_MASK] = b"\xff\xff\xff\xff"
        elif bogus == "mask_7":
            options[Option.SUBNET_MASK] = bytes((254, 0, 0, 0))
        elif bogus == "router_outside":
            options[Option.ROUTER] = IPv4Address("192.0.2.1").packed
        elif bogus in ("lease_zero", "lease_one"):
            options[Option.LEASE_TIME] = (0 if bogus == "lease_zero" else 1).to_bytes(4, "big")
        if bogus.startswith("nak_"):
            options[Option.MESSAGE_TYPE] = bytes((MessageType.NAK,))
            options[Option.MESSAGE] = b"forged"
            if bogus == "nak_wrong_server":
                options[Option.SERVER_ID] = ROGUE_SERVER_ID.packed
        changed["options"] = options
        return changed

    def _frame(self, message: Any, dst_mac: bytes, dst_ip: IPv4Address) -> bytes:
        # ``message``: a codec.Message, or raw BOOTP bytes.
        return codec.build_frame(
            message, src_mac=self.mac, dst_mac=dst_mac, src_ip=self.server_id,
            dst_ip=dst_ip, src_port=67, dst_port=68,
        )  # fmt: skip

    def _corrupt(self, kind: str, message: Any, dst_mac: bytes, dst_ip: IPv4Address) -> bytes:
        """The frame for a bogus reply ``kind`` (see BOGUS_COUNTER)."""
        if kind == "garbage":
            return self._rng.randbytes(self._rng.randrange(1, 600))
        frame = bytearray(self._frame(message, dst_mac, dst_ip))
        if kind == "op3":
            # Ethernet 14 + IPv4 20 + UDP 8 = 42: the BOOTP op byte. Reframed so
            # that both checksums hold and only the op is wrong.
            payload = bytearray(frame[42:])
            payload[0] = 3
            return self._frame(bytes(payload), dst_mac, dst_ip)
        if kind == "bad_udp_checksum":
            frame[40] ^= 0x55  # UDP checksum, RFC 768
        elif kind == "bad_ip_checksum":
            frame[24] ^= 0x55  # IPv4 header checksum, RFC 791 §3.1
        elif kind == "truncated":
            del frame[len(frame) // 2 :]
        return bytes(frame)

    def _send_raw(self, frame: bytes) -> None:
        if self._closed:
            return
        self._outbox.append(frame)
        self._drain()

    def _drain(self) -> None:
        while self._outbox and not self._closed:
            try:
                self.sock.send(self._outbox[0])
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self.sock.fileno(), self._drain)
                return
            except OSError:  # the engine closed its end
                self._outbox.clear()
                break
            self._outbox.popleft()
        if self._writing and not self._closed:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())


@contextlib.asynccontextmanager
async def dhcp_pair(
    config: EngineConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    **server_options: Any,
) -> AsyncIterator[tuple[Engine, FakeServer]]:
    """An engine on a socketpair with a FakeServer on the other end; both closed
    on exit. The server must have met no frame it could not decode. ``clock``
    is the wall clock of both (a VirtualTimeLoop's ``wall``)."""
    client_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport = SocketPairTransport(client_end)
    server = FakeServer(server_end, clock=clock, **server_options)
    engine = Engine(transport, config, clock=clock)
    try:
        yield engine, server
    finally:
        engine.close()
        server.close()
    if server.errors:
        raise server.errors[0]


def pending_timers(engine: Engine) -> list[asyncio.TimerHandle]:
    """The engine's live timers on the running loop (asyncio keeps cancelled handles
    in its heap until they come due, so filter on ``cancelled()``)."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = getattr(loop, "_scheduled", [])
    return [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and getattr(getattr(handle, "_callback", None), "__self__", None) is engine._runner
    ]
