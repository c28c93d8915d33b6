"""The ``fastdhcp`` command line."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

from . import __version__, logs
from .daemon import DEFAULT_SOCKET, DEFAULT_STATE_DIR, serve
from .engine import EngineConfig, probe
from .errors import FastDHCPError, StoreError
from .ipam import options as pool_options
from .ipam.driver import DriverConfig
from .logs import FORMATS
from .report import daemon_status, lease_table, leases_report, status_report
from .store import Store

_PROBE_FIELDS = ("subnet", "router", "server_id", "lease_time", "dns", "domain", "offered")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _interface_name(text: str) -> str:
    """--dhcp-interface: checked as RequestPool checks dhcp_interface, at start."""
    name = text.strip()  # as RequestPool strips the option
    if not name:
        raise argparse.ArgumentTypeError("give the interface on the DHCP server's segment")
    try:
        pool_options.check_interface_name(name, given="--dhcp-interface")
    except FastDHCPError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _listen_address(text: str) -> tuple[str, int]:
    """ADDR:PORT for --metrics: 127.0.0.1:9464, [::1]:9464, or :9464 (every address)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]"), int(port_text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdhcp",
        description="Docker IPAM from the LAN's own DHCP server.",
    )
    parser.add_argument("--version", action="version", version=f"fastdhcp {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=FORMATS,
        help="text (default), or one JSON object per line; lease events carry their fields",
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
    p.add_argument(
        "--server",
        metavar="ADDRESS",
        type=IPv4Address,
        help="take an offer only from this DHCP server (as --ipam-opt dhcp_server does)",
    )
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
    s.add_argument(
        "--dhcp-interface",
        type=_interface_name,
        metavar="IFACE",
        help="dhcp_interface for networks that give none (Compose v2 drops ipam options)",
    )
    s.add_argument(
        "--metrics",
        type=_listen_address,
        metavar="ADDR:PORT",
        help="serve Prometheus metrics on http://ADDR:PORT/metrics (default: off)",
    )

    def state_dir_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=f"default {DEFAULT_STATE_DIR}"
        )

    ls = commands.add_parser(
        "leases",
        help="list the leases held (safe while serve runs)",
        description=(
            "List every lease in the store: pool, address, MAC, client id, server, state "
            "(bound, renewing, rebinding, expired; requesting while an acquisition runs) "
            "and time to expiry. Reads the store read-only."
        ),
    )
    state_dir_option(ls)
    ls.add_argument("--json", action="store_true", help="print a JSON list")

    rel = commands.add_parser(
        "release",
        help="release one lease by hand: a DHCPRELEASE, then removal from the store",
        description=(
            "For an orphan lease no container uses: send a DHCPRELEASE for ADDRESS to "
            "the server that leased it, then remove it from the store. Needs CAP_NET_RAW. "
            "If the release cannot be sent, the lease stays in the store."
        ),
    )
    rel.add_argument("address", metavar="ADDRESS", type=IPv4Address)
    state_dir_option(rel)

    st = commands.add_parser(
        "status",
        help="is the daemon up, its pools, and its leases by state",
        description="Report whether serve answers on its socket, its pools, and lease counts.",
    )
    st.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help=f"default {DEFAULT_SOCKET}")
    state_dir_option(st)
    st.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _leases(args: argparse.Namespace) -> int:
    with Store.open(args.state_dir, readonly=True) as store:
        rows = leases_report(store, time.time())
    print(json.dumps(rows, indent=2) if args.json else lease_table(rows))
    return 0


async def _release_lease(state_dir: Path, address: IPv4Address) -> str:
    from .engine import Engine

    with Store.open(state_dir) as store:
        held = store.lease_by_address(address)
        if held is None:
            raise FastDHCPError(
                f"no lease for {address} in {store.path}; `fastdhcp leases` lists them"
            )
        pool_id, lease = held
        pool = store.get_pool(pool_id)
        if pool is None:  # the schema's foreign key makes this impossible
            raise FastDHCPError(f"lease {address} names a pool {pool_id!r} that is not stored")
        opts = pool_options.parse(pool.options)
        config = EngineConfig(broadcast=opts.broadcast, server_id=opts.dhcp_server)
        engine = await Engine.open(opts.interface, config, promiscuous=opts.promiscuous)
        try:
            await engine.release(lease)
        finally:
            engine.close()
        store.remove_lease(address)
        return (
            f"released {address} of {lease.mac.hex(':')} to {lease.server_id}"
            f" (pool {pool_id}, {opts.interface})"
        )


def _release(args: argparse.Namespace) -> int:
    print(asyncio.run(_release_lease(args.state_dir, args.address)))
    return 0


def _status(args: argparse.Namespace) -> int:
    daemon = asyncio.run(daemon_status(args.socket))
    try:
        with Store.open(args.state_dir, readonly=True) as store:
            report = status_report(store, daemon, time.time())
    except StoreError as exc:  # still worth saying whether the daemon is up
        report = {"daemon": daemon, "store": str(args.state_dir), "store_error": str(exc),
                  "pools": [], "leases": {}}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if daemon["up"]:
            print(f"daemon   up, on {daemon['socket']}")
        else:
            print(f"daemon   DOWN: nothing answers on {daemon['socket']} ({daemon['error']})")
        print(f"store    {report.get('store_error') or report['store']}")
        if report["leases"]:
            counts = ", ".join(f"{count} {state}" for state, count in report["leases"].items())
            print(f"leases   {counts}")
        for pool in report["pools"]:
            print(
                f"pool     {pool['pool']}: {pool['subnet']} on {pool['interface']},"
                f" gateway {pool['gateway'] or '-'}, {pool['leases']} lease(s)"
            )
    # 3, like `systemctl status` of a unit that is not running
    return 0 if daemon["up"] and "store_error" not in report else 3


def _serve(args: argparse.Namespace) -> int:
    # A daemon that crashes or hangs says where: every thread's stack goes to
    # stderr (the journal) on a fatal signal, SIGABRT included (`kill -ABRT`).
    faulthandler.enable()
    config = DriverConfig(
        acquire_timeout=args.acquire_timeout, default_interface=args.dhcp_interface
    )
    asyncio.run(serve(args.socket, args.state_dir, config, metrics=args.metrics))
    return 0


def _probe(args: argparse.Namespace) -> int:
    # Retransmit faster than RFC 2131's 4 s: a probe is interactive, and its
    # deadline is short.
    config = EngineConfig(
        retransmit_initial=min(2.0, args.timeout / 4), timeout=args.timeout, server_id=args.server
    )
    offer = asyncio.run(
        probe(args.interface, timeout=args.timeout, config=config, promiscuous=args.promiscuous)
    )
    report = offer.as_json()
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
    logs.configure(args.log_level, args.log_format)
    try:
        if args.command == "probe":
            return _probe(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "leases":
            return _leases(args)
        if args.command == "release":
            return _release(args)
        if args.command == "status":
            return _status(args)
    except FastDHCPError as exc:
        print(f"fastdhcp {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
