"""``fastdhcp serve``: the IPAM plugin daemon on its unix socket.

The socket is owner-only. A socket file left by a crash is replaced; one that a
live process still serves is not. Under systemd, the socket is systemd's
(socket activation): serve takes it as passed and leaves it in place at exit.
SIGTERM (and SIGINT) stop accepting, let the requests in flight finish, and
exit; leases are kept, never released, since the containers holding them still
run.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from pathlib import Path

from aiohttp import web

from .errors import FastDHCPError
from .ipam.driver import Driver, DriverConfig
from .ipam.http import make_app
from .metrics import CONTENT_TYPE, METRICS
from .owner import StateDirOwner
from .store import Store

_log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/run/docker/plugins/fastdhcp.sock")
DEFAULT_STATE_DIR = Path("/var/lib/fastdhcp")
DRAIN_SECONDS = 30.0
# A scrape loses nothing when cut short, so serve waits little for one at exit:
# a stop must stay well inside systemd's TimeoutStopSec while Prometheus scrapes.
SCRAPE_DRAIN_SECONDS = 2.0
# Connections the kernel queues before serve accepts them. A unix socket whose
# queue is full refuses connect() with EAGAIN, which Go's net package (dockerd)
# returns as an error and asyncio mistakes for a connect in progress: so queue as
# many as the kernel allows (net.core.somaxconn caps it), for bursts of
# concurrent container starts while serve is busy, or just started.
LISTEN_BACKLOG = 4096


class DaemonError(FastDHCPError):
    """The daemon cannot start; the message says why and what to do."""


# sd_listen_fds(3): the first socket systemd passes is file descriptor 3.
SD_LISTEN_FDS_START = 3


def systemd_socket(path: Path) -> socket.socket | None:
    """The listening socket systemd made for this process (socket activation,
    packaging/systemd/fastdhcp.socket), or None when it made none.

    systemd, as root, makes it where dockerd looks, whatever the directory's
    owner and mode; serve then needs no right to /run/docker at all, and the
    socket stays up across a restart, so dockerd's calls wait in its queue
    instead of failing. It must be the one --socket names, since `fastdhcp
    status` looks there."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None  # not ours: passed to some other process in a chain of execs
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # for no child of ours to claim
    if count != 1:
        raise DaemonError(f"systemd passed {count} sockets; fastdhcp.socket passes one")
    listener = socket.socket(fileno=SD_LISTEN_FDS_START)
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        raise DaemonError("the socket systemd passed is not a unix stream socket (ListenStream=)")
    if Path(listener.getsockname()) != Path(os.path.abspath(path)):
        raise DaemonError(
            f"systemd passed a socket on {listener.getsockname()}, but --socket is {path}: "
            "make them the same"
        )
    os.set_inheritable(listener.fileno(), False)
    return listener


def claim_socket(path: Path) -> socket.socket:
    """A listening unix socket at ``path``, owner-only, replacing a stale file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DaemonError(f"cannot make {path.parent} for --socket: {exc.strerror}") from None
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                raise DaemonError(f"cannot check {path}: {exc.strerror}") from None
            _log.info("replacing the stale socket %s", path)
            path.unlink(missing_ok=True)
        else:
            raise DaemonError(
                f"{path} is served by another running process (another fastdhcp?): "
                "stop it first, or give --socket another path"
            )
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # created 0600: only root (dockerd) may talk to us
    try:
        listener.bind(str(path))
    except OSError as exc:
        listener.close()
        raise DaemonError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    listener.listen(LISTEN_BACKLOG)
    return listener


class _SharedExposition:
    """One exposition at a time, shared by the scrapes that arrive while it runs.

    It runs one grouped query over every lease (about 90 ms at 100,000), in a
    worker thread, off the loop. Scrapes that overlap it get its result instead
    of queueing a query each behind it: what they would read is the same."""

    def __init__(self) -> None:
        self._running: asyncio.Future[bytes] | None = None

    async def __call__(self) -> bytes:
        if self._running is None:
            self._running = asyncio.ensure_future(asyncio.to_thread(METRICS.exposition))
            self._running.add_done_callback(self._done)
        # Shielded: a scrape cancelled at shutdown must not cancel the others'.
        return await asyncio.shield(self._running)

    def _done(self, running: asyncio.Future[bytes]) -> None:
        self._running = None
        if not running.cancelled():
            running.exception()  # retrieved here: a failed query is each scrape's 500


async def start_metrics(host: str, port: int) -> web.AppRunner:
    """Serve METRICS on http://host:port/metrics (Prometheus' text format)."""
    exposition = _SharedExposition()

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=await exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, shutdown_timeout=SCRAPE_DRAIN_SECONDS, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise DaemonError(f"--metrics {host}:{port}: cannot listen: {exc.strerror}") from None
    return runner


async def serve(
    socket_path: Path = DEFAULT_SOCKET,
    state_dir: Path = DEFAULT_STATE_DIR,
    config: DriverConfig | None = None,
    *,
    metrics: tuple[str, int] | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM or SIGINT; with ``metrics`` (host, port), serve them too."""
    # Before anything reads the store or binds the socket: a second serve on
    # this state dir must touch nothing (owner.py).
    with StateDirOwner.claim(state_dir):
        await _serve(socket_path, state_dir, config, metrics=metrics, ready=ready)


async def _serve(
    socket_path: Path,
    state_dir: Path,
    config: DriverConfig | None,
    *,
    metrics: tuple[str, int] | None,
    ready: asyncio.Event | None,
) -> None:
    store = Store.open(state_dir)
    store.on_write = METRICS.store_write_seconds.observe
    # Scrapes count leases on a connection of their own (in a worker thread):
    # a grouped query over 100,000 leases must not hold what the loop reads with.
    scrape_store = Store.open(state_dir, readonly=True)
    driver = Driver(store, config)
    METRICS.watch(
        lambda: scrape_store.lease_counts(time.time()), driver.engine_stats, driver.prober_stats
    )
    await driver.start()  # renewals resume for every lease in the store
    metrics_runner = None if metrics is None else await start_metrics(*metrics)
    runner = web.AppRunner(make_app(driver), shutdown_timeout=DRAIN_SECONDS, access_log=None)
    await runner.setup()
    inherited = systemd_socket(socket_path)
    listener = inherited or claim_socket(socket_path)
    # aiohttp listens again with its own backlog (128 by default): pass ours.
    site = web.SockSite(runner, listener, backlog=LISTEN_BACKLOG)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log.info(
        "fastdhcp serving on %s, state in %s (%d pools, %d leases)",
        socket_path,
        state_dir,
        len(driver.service.book.pools()),
        len(driver.service.book),
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        _log.info("stopping: finishing the requests in flight; leases are kept")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if metrics_runner is not None:  # first: scrapes must not slow Docker's requests' drain
            await metrics_runner.cleanup()
        await runner.cleanup()  # stops accepting, waits for handlers in flight
        if inherited is None:  # systemd's socket is systemd's to remove
            socket_path.unlink(missing_ok=True)
        METRICS.unwatch()
        await driver.close()
        scrape_store.close()
        store.close()
        _log.info("stopped")
