"""A stand-in Docker remote IPAM plugin that records what dockerd sends.

It exists only to prove the e2e lab (tests/e2e/docker_lab.py) and to pin down,
on the machine's real dockerd, the request shapes fastdhcp's IPAM layer must
handle: empty bodies, the MAC option, replays, the RequestPool overlap loop.
It is *not* a model for fastdhcp's plugin (no DHCP, no persistence).

Standard library only, one process::

    python3 probe_plugin.py --socket /run/docker/plugins/NAME.sock --log calls.jsonl

Every request is appended to ``--log`` as one JSON object per line, written and
flushed before the reply is sent::

    {"seq": 3, "t": 1700000000.123, "method": "RequestPool",
     "path": "/IpamDriver.RequestPool",
     "headers": {"Content-Length": "96", "Accept": "...", ...},
     "body_raw": "{...}",   # exactly the bytes received, decoded as UTF-8
     "body": {...} | null,  # body_raw parsed, null when empty or not JSON
     "status": 200, "reply": {...}}

Replies (see /work/shared/DOCKER-IPAM-NOTES.md for the protocol):

* RequestPool: ``--pool`` (default 10.99.0.0/16) with a new PoolID per call and
  ``Data {"com.docker.network.gateway": --gateway}``, whatever ``Pool`` asks
  for. After ``--pool-limit`` successful auto-pool calls (``Pool`` empty), or
  ``--pool-seconds`` after the first one (0 = no limit), every further auto-pool
  call gets ``500 {"Err": ...}``: this bounds dockerd's overlap loop, which
  only auto pools enter.
* RequestAddress: a gateway request (``Options.RequestAddressType``) gets its
  ``Address`` or ``--gateway``; a request with a preferred ``Address`` (a
  replay) gets exactly that; otherwise the next ``--address-base``.N (N = 1, 2,
  ...) with the pool's prefix length.
* Release*: ``{}``. Unknown paths: 404.
"""

from __future__ import annotations

import argparse
import http.server
import ipaddress
import itertools
import json
import os
import signal
import socketserver
import sys
import threading
import time
from typing import Any

GATEWAY_KEY = "com.docker.network.gateway"
ADDRESS_TYPE_KEY = "RequestAddressType"


class ProbeState:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pool = ipaddress.ip_network(args.pool)
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.pool_ids = itertools.count(1)
        self.pool_requests = 0
        self.first_pool_request: float | None = None
        self.next_host = 1
        self.log = open(args.log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log.flush()

    def pool_reply(self) -> dict[str, Any]:
        return {
            "PoolID": f"probe-pool-{next(self.pool_ids)}",
            "Pool": str(self.pool),
            "Data": {GATEWAY_KEY: self.args.gateway},
        }

    # -- handlers: (status, reply object)
    def handle(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        a = self.args
        if method == "Plugin.Activate":
            return 200, {"Implements": ["IpamDriver"]}
        if method == "IpamDriver.GetCapabilities":
            return 200, {
                "RequiresMACAddress": a.requires_mac,
                "RequiresRequestReplay": a.request_replay,
            }
        if method == "IpamDriver.GetDefaultAddressSpaces":
            return 200, {
                "LocalDefaultAddressSpace": "probe-local",
                "GlobalDefaultAddressSpace": "probe-global",
            }
        if method == "IpamDriver.RequestPool":
            if body.get("Pool"):  # a given (or replayed) pool: never the overlap loop
                return 200, self.pool_reply()
            with self.lock:
                self.pool_requests += 1
                n = self.pool_requests
                if self.first_pool_request is None:
                    self.first_pool_request = time.monotonic()
                elapsed = time.monotonic() - self.first_pool_request
            if a.pool_limit and n > a.pool_limit:
                return 500, {"Err": f"probe: RequestPool limit {a.pool_limit} reached (call {n})"}
            if a.pool_seconds and elapsed > a.pool_seconds:
                return 500, {
                    "Err": f"probe: RequestPool time limit {a.pool_seconds}s reached (call {n})"
                }
            return 200, self.pool_reply()
        if method == "IpamDriver.RequestAddress":
            opts = body.get("Options") or {}
            preferred = body.get("Address") or ""
            if opts.get(ADDRESS_TYPE_KEY) == GATEWAY_KEY:
                addr = f"{preferred}/{self.pool.prefixlen}" if preferred else a.gateway
                return 200, {"Address": addr, "Data": {}}
            if preferred:
                return 200, {"Address": f"{preferred}/{self.pool.prefixlen}", "Data": {}}
            with self.lock:
                host = self.next_host
                self.next_host += 1
            return 200, {"Address": f"{a.address_base}{host}/{self.pool.prefixlen}", "Data": {}}
        if method in ("IpamDriver.ReleaseAddress", "IpamDriver.ReleasePool"):
            return 200, {}
        return 404, {"Err": f"probe: unknown method {method}"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # dockerd keeps connections alive
    server: ProbeServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        method = self.path.lstrip("/")
        state = self.server.state
        status, reply = state.handle(method, body if isinstance(body, dict) else {})
        state.record(
            {
                "seq": next(state.seq),
                "t": time.time(),
                "method": method.split(".", 1)[-1],
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body_raw": text,
                "body": body,
                "status": status,
                "reply": reply,
            }
        )
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes client_address[0], which a unix socket does not have.
        pass


class ProbeServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    state: ProbeState


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--pool", default="10.99.0.0/16")
    p.add_argument("--gateway", default="10.99.0.2/16")
    p.add_argument("--address-base", default="10.99.201.")
    p.add_argument("--pool-limit", type=int, default=0)
    p.add_argument("--pool-seconds", type=float, default=0.0)
    p.add_argument("--no-mac", dest="requires_mac", action="store_false")
    p.add_argument("--no-replay", dest="request_replay", action="store_false")
    args = p.parse_args(argv)

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    os.makedirs(os.path.dirname(args.socket), exist_ok=True)
    server = ProbeServer(args.socket, Handler)
    server.state = ProbeState(args)

    def stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns: call it off-thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # An orphan (the test run was SIGKILLed) has nobody to record for: go, and
    # take the socket along, so that no stale plugin lingers in /run/docker/plugins.
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        server.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()
    print(f"probe plugin listening on {args.socket}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
