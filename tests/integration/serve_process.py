"""``python -m fastdhcp serve`` as a child process on a short socket path, for the
integration tests that need the real daemon (a SIGKILL, the operator's CLI)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import lab
from lab_pytest import LogFile


class Serve(LogFile):
    """``python -m fastdhcp serve`` as a process, on a short socket path."""

    def __init__(self, state_dir: Path, log: Path) -> None:
        self._sockdir = Path(tempfile.mkdtemp(prefix="fdt-serve-"))
        self.socket = self._sockdir / "plugin.sock"
        self.state_dir = state_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []  # more serve options (--metrics ...)

    def start(self) -> None:
        argv = [sys.executable, "-m", "fastdhcp", "--log-level", "info", "serve",
                "--socket", str(self.socket), "--state-dir", str(self.state_dir),
                *self.extra_args]  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise lab.LabError(f"fastdhcp serve exited:\n{self.log_text()[-3000:]}")
            return "fastdhcp serving on" in self.log_text().split("=== start ===")[-1]

        lab.wait_for(listening, 30.0, "fastdhcp serve")

    def mark(self) -> None:
        with open(self.log, "a") as out:
            out.write("=== start ===\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def session(self) -> aiohttp.ClientSession:
        """A client of the plugin's socket, with no cap on connections at once."""
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket), limit=0)
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._sockdir, ignore_errors=True)

    # for the report hook (tests/conftest.py)
    name = "fastdhcp serve"


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
