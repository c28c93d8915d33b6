"""The ``fastdhcp`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .daemon import DEFAULT_SOCKET, DEFAULT_STATE_DIR, serve
from .engine import EngineConfig, probe
from .errors import FastDHCPError
from .ipam.driver import DriverConfig

_PROBE_FIELDS = ("subnet", "router", "server_id", "lease_time", "dns", "domain", "offered")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdhcp",
        description="Docker IPAM from the LAN's own DHCP server.",
    )
    parser.add_argument("--version", action="version", version=f"fastdhcp {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "probe",
        help="ask the DHCP server on IFACE what it would offer (DISCOVER only)",
        description=(
            "Send a DHCPDISCOVER from a throwaway MAC on IFACE and print what the first "
            "DHCPOFFER says: subnet, router, server, lease time, DNS. Never requests "
            "the address, so nothing is leased."
        ),
    )
    p.add_argument("interface", metavar="IFACE")
    p.add_argument("--timeout", type=_positive, default=10.0, help="seconds (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--promiscuous",
        action="store_true",
        help="also receive unicast replies, for servers that ignore the broadcast flag",
    )
    s = commands.add_parser(
        "serve",
        help="serve Docker's IPAM plugin API on a unix socket",
        description=(
            "Run the IPAM plugin: dockerd finds it at /run/docker/plugins/fastdhcp.sock. "
            "Leases live in STATE_DIR and survive restarts."
        ),
    )
    s.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help=f"default {DEFAULT_SOCKET}")
    s.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=f"default {DEFAULT_STATE_DIR}"
    )
    s.add_argument(
        "--acquire-timeout",
        type=_positive,
        default=30.0,
        help="seconds a docker run waits for a lease before failing (default 30)",
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    config = DriverConfig(acquire_timeout=args.acquire_timeout)
    asyncio.run(serve(args.socket, args.state_dir, config))
    return 0


def _probe(args: argparse.Namespace) -> int:
    # Retransmit faster than RFC 2131's 4 s: a probe is interactive, and its
    # deadline is short.
    config = EngineConfig(retransmit_initial=min(2.0, args.timeout / 4), timeout=args.timeout)
    report = asyncio.run(
        probe(args.interface, timeout=args.timeout, config=config, promiscuous=args.promiscuous)
    )
    if args.json:
        print(json.dumps(report))
    else:
        for key in _PROBE_FIELDS:
            value = report[key]
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key:<11}{'-' if value is None else value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "probe":
            return _probe(args)
        if args.command == "serve":
            return _serve(args)
    except FastDHCPError as exc:
        print(f"fastdhcp {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
