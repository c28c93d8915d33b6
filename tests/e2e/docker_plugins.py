"""The e2e lab's Docker plugins: legacy (socket-file) plugins run as
subprocesses on ``/run/docker/plugins`` (:class:`PluginProcess`; the recording
:class:`ProbePlugin`; fastdhcp itself in fastdhcp_lab.py), and managed (v2)
plugins installed into one :class:`docker_lab.Dockerd` (:class:`ManagedPlugin`).

Plugins must outlive the dockerd that uses them (see conftest.py), so the
safety net here closes them before docker_lab's closes the daemons.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import labnet
from docker_lab import (
    PLUGIN_DIR,
    Dockerd,
    mounts_under,
    new_token,
    remove_cgroups,
    socket_listening,
)
from labprocess import LabError, LabProcess, mkdtemp, rmtree, wait_for

PROBE_PLUGIN = Path(__file__).resolve().parent / "probe_plugin.py"

_LIVE_PLUGINS: set[PluginProcess] = set()


class PluginProcess(LabProcess):
    """A legacy (socket-file) Docker plugin run as a subprocess, serving
    ``/run/docker/plugins/<name>.sock``; ``name`` is unique per instance
    (``fdt<6 hex>ipam``), so dockerd's per-name cache of drivers and
    capabilities never carries over from another plugin or another run.

    Subclasses give :meth:`argv`. :meth:`start` waits until the socket accepts
    connections; :meth:`close` stops it and removes the socket.
    """

    kind = "plugin"
    mark_start = False
    new_session = True
    # One that outlives SIGTERM is SIGKILLed quietly: what the tests judge is
    # dockerd's side of the plugin, not its shutdown.
    strict_stop = False

    def __init__(self, workdir: str | Path | None = None, ready_timeout: float = 10.0) -> None:
        self.name = f"{labnet.PREFIX}{new_token()}ipam"
        self.socket = PLUGIN_DIR / f"{self.name}.sock"
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else mkdtemp("fdt-plugin-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / f"{self.kind}.out")
        self.ready_timeout = ready_timeout

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.kind

    def _prepare(self) -> None:
        PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
        _LIVE_PLUGINS.add(self)

    def ready_what(self) -> str:
        return f"{self.kind} on {self.socket}"

    def _ready(self) -> bool:
        return self.socket.exists() and socket_listening(self.socket)

    def stop(self, timeout: float | None = None) -> int | None:
        code = super().stop(timeout)
        self.socket.unlink(missing_ok=True)
        return code

    def close(self) -> None:
        self.stop()
        _LIVE_PLUGINS.discard(self)
        if self._own_workdir:
            rmtree(self.workdir)


class ProbePlugin(PluginProcess):
    """``probe_plugin.py`` (a recording stand-in IPAM driver) as a plugin.

    :meth:`requests` returns what dockerd sent, oldest first, as the dicts the
    probe logs (``method``, ``body_raw``, ``body``, ``headers``, ``status``,
    ``reply``, ``seq``, ``t``); :meth:`wait_for` polls for one.
    """

    kind = "probe-plugin"

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        pool: str = "10.99.0.0/16",
        gateway: str = "10.99.0.2/16",
        address_base: str = "10.99.201.",
        pool_limit: int = 0,
        pool_seconds: float = 0.0,
        requires_mac: bool = True,
        request_replay: bool = True,
        python: str = sys.executable,
    ) -> None:
        super().__init__(workdir)
        self.calls_file = self.workdir / "calls.jsonl"
        self.options = {
            "pool": pool,
            "gateway": gateway,
            "address_base": address_base,
            "pool_limit": pool_limit,
            "pool_seconds": pool_seconds,
        }
        self.requires_mac = requires_mac
        self.request_replay = request_replay
        self.python = python

    def argv(self) -> list[str]:
        o = self.options
        args = [
            self.python, str(PROBE_PLUGIN),
            "--socket", str(self.socket),
            "--log", str(self.calls_file),
            "--pool", str(o["pool"]),
            "--gateway", str(o["gateway"]),
            "--address-base", str(o["address_base"]),
            "--pool-limit", str(o["pool_limit"]),
            "--pool-seconds", str(o["pool_seconds"]),
        ]  # fmt: skip
        if not self.requires_mac:
            args.append("--no-mac")
        if not self.request_replay:
            args.append("--no-replay")
        return args

    def requests(self, method: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Recorded requests (``method`` like "RequestAddress"), with seq > ``since``."""
        try:
            lines = self.calls_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        reqs = []
        for ln in lines:
            with contextlib.suppress(ValueError):  # a line being written
                reqs.append(json.loads(ln))
        return [r for r in reqs if r["seq"] > since and (method is None or r["method"] == method)]

    def last_seq(self) -> int:
        reqs = self.requests()
        return max((r["seq"] for r in reqs), default=0)

    def wait_for(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda r: True,
        timeout: float = 10.0,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first recorded ``method`` request (after ``since``) matching ``predicate``."""

        def find() -> dict[str, Any] | None:
            return next((r for r in self.requests(method, since) if predicate(r)), None)

        try:
            return wait_for(find, timeout, f"{method} at the probe plugin")
        except LabError as exc:
            raise LabError(f"{exc}; got {self.summary(since)}") from None

    def summary(self, since: int = 0) -> list[str]:
        """One line per request, for assertion messages and the report."""
        return [
            f"{r['seq']} {r['method']} {r['status']} {r['body_raw'] or '<empty>'}"
            for r in self.requests(since=since)
        ]

    def log_tail(self, lines: int = 40) -> str:
        calls = "\n".join(self.summary()[-lines:])
        return f"{super().log_tail(lines)}\n--- requests:\n{calls}"


class ManagedPlugin:
    """A managed (v2) plugin on one :class:`Dockerd`, from a plugin directory
    (``config.json`` beside ``rootfs/``, as ``scripts/build-plugin`` makes it).

    :meth:`create` runs ``docker plugin create``, applies ``settings`` with
    ``docker plugin set`` (a disabled plugin only takes them), then :meth:`enable`.
    :meth:`close` disables (forcibly) and removes it; idempotent.

    Unlike a :class:`PluginProcess`, its socket is the daemon's business: dockerd
    (20.10, on Linux) bind-mounts ``/run/docker/plugins/<id>/`` at the plugin's
    ``/run/docker/plugins``, whatever ``--exec-root`` says, so a config.json
    ``"socket": "x.sock"`` is ``/run/docker/plugins/<id>/x.sock`` on the host.
    The plugin's output goes to dockerd's log (lines with ``plugin=<id>``). Its
    process does not follow ``--cgroup-parent`` either: it sits in the cgroup
    ``/<id>``, which :meth:`close` empties should dockerd be gone.
    """

    def __init__(
        self,
        dockerd: Dockerd,
        plugin_dir: str | Path,
        *,
        name: str | None = None,
        settings: Sequence[str] = (),
    ) -> None:
        self.dockerd = dockerd
        self.plugin_dir = Path(plugin_dir)
        self.name = name or dockerd.new_name("plugin")
        self.settings = list(settings)
        self.created = False
        self.plugin_id: str | None = None

    def create(self, timeout: float = 300.0) -> None:
        self.dockerd.docker("plugin", "create", self.name, str(self.plugin_dir), timeout=timeout)
        self.created = True
        self.plugin_id = self.id
        if self.settings:
            self.dockerd.docker("plugin", "set", self.name, *self.settings)

    def enable(self, timeout: float = 60.0) -> None:
        self.dockerd.docker("plugin", "enable", "--timeout", str(int(timeout)), self.name,
                            timeout=timeout + 15)  # fmt: skip

    def disable(self, force: bool = False) -> subprocess.CompletedProcess[str]:
        args = ["plugin", "disable", *(["-f"] if force else []), self.name]
        return self.dockerd.docker(*args, check=not force)

    def remove(self, force: bool = False) -> subprocess.CompletedProcess[str]:
        args = ["plugin", "rm", *(["-f"] if force else []), self.name]
        return self.dockerd.docker(*args, check=not force)

    def inspect(self) -> dict[str, Any]:
        out = self.dockerd.docker("plugin", "inspect", self.name).stdout
        return json.loads(out)[0]  # type: ignore[no-any-return]

    @property
    def driver(self) -> str:
        """The name to give ``--ipam-driver`` (or ``-d``): the *tagged* name. dockerd
        20.10 registers a managed plugin's driver as ``name:latest``, and an untagged
        ``--ipam-driver name`` activates the plugin but then fails with
        ``invalid ipam driver: "name"``."""
        return self.name if ":" in self.name.rsplit("/", 1)[-1] else f"{self.name}:latest"

    @property
    def id(self) -> str:
        return str(self.inspect()["Id"])

    def socket(self) -> Path:
        """The plugin's socket as the host sees it (see the class doc)."""
        info = self.inspect()
        return PLUGIN_DIR / info["Id"] / info["Config"]["Interface"]["Socket"]

    def close(self) -> None:
        """Disable and remove it; if dockerd is gone (killed), kill what is left
        of the plugin's process and remove its socket directory."""
        if self.created and self.dockerd.running:
            self.disable(force=True)
            self.remove(force=True)
        self.created = False
        if self.plugin_id:
            remove_cgroups(self.plugin_id)
            runtime = PLUGIN_DIR / self.plugin_id
            if runtime.is_dir() and not mounts_under(runtime):
                shutil.rmtree(runtime, ignore_errors=True)


@atexit.register
def _atexit_cleanup() -> None:
    """Safety net (runs before docker_lab's, which was registered first): no
    plugin outlives a run that died before its teardown."""
    for plugin in list(_LIVE_PLUGINS):
        with contextlib.suppress(Exception):
            plugin.close()
