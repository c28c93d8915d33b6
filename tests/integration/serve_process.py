"""``python -m fastdhcp serve`` as a child process on a short socket path, for the
integration tests that need the real daemon (a SIGKILL, the operator's CLI)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
from labprocess import LabProcess


class Serve(LabProcess):
    """``python -m fastdhcp serve`` as a process, on a short socket path.

    :meth:`mark` writes a line that :meth:`start` looks past for the "serving"
    line, so that a restart on the same log waits for its own."""

    name = label = "fastdhcp serve"  # name: for the report hook (tests/conftest.py)
    mark_start = False  # mark() is the caller's, where a test wants it
    # A serve that outlives SIGTERM is SIGKILLed quietly: the test judges the
    # shutdown by its own checks (the store, the log), not by stop().
    strict_stop = False
    ready_timeout = 30.0
    stop_timeout = 30.0

    def __init__(self, state_dir: Path, log: Path) -> None:
        super().__init__(log)
        self._sockdir = Path(tempfile.mkdtemp(prefix="fdt-serve-"))
        self.socket = self._sockdir / "plugin.sock"
        self.state_dir = state_dir
        self.extra_args: list[str] = []  # more serve options (--metrics ...)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "fastdhcp", "--log-level", "info", "serve",
                "--socket", str(self.socket), "--state-dir", str(self.state_dir),
                *self.extra_args]  # fmt: skip

    def _ready(self) -> bool:
        return "fastdhcp serving on" in self.log_text().split("=== start ===")[-1]

    def mark(self) -> None:
        with open(self.log_file, "a") as out:
            out.write("=== start ===\n")

    def session(self) -> aiohttp.ClientSession:
        """A client of the plugin's socket, with no cap on connections at once."""
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket), limit=0)
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._sockdir, ignore_errors=True)


MAC_OPTION = "com.docker.network.endpoint.macaddress"


async def call(session: aiohttp.ClientSession, method: str, body: object) -> tuple[int, dict]:
    async with session.post(f"http://plugin/IpamDriver.{method}", json=body) as reply:
        return reply.status, json.loads(await reply.read())


async def request_pool(serve: Serve, interface: str) -> str:
    async with serve.session() as session:
        status, reply = await call(
            session, "RequestPool", {"Options": {"dhcp_interface": interface}}
        )
    assert status == 200, reply
    return str(reply["PoolID"])


def address_body(pool_id: str, mac: str) -> dict[str, object]:
    return {"PoolID": pool_id, "Address": "", "Options": {MAC_OPTION: mac}}
