"""What every lab stands on: commands run with a timeout and a clear error, and
:class:`LabProcess`, the one wrapper of a lab's long-running processes (DHCP
servers, udhcpc, dockerd and containerd, plugins, ``fastdhcp serve``,
systemd-nspawn, the hostile segment's helpers).

A plain module (no pytest import), like the labs built on it, so that a lab can
be driven from a REPL or a script when a test has to be debugged by hand.

The safety net lives here too: every process started through :class:`LabProcess`
and every directory made by :func:`mkdtemp` is tracked, and at exit (a run that
died between setup and teardown) the processes are killed, the hooks registered
with :func:`at_exit` run (the namespaces' teardown), and the directories go.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self, TypeVar

LOG = logging.getLogger("fastdhcp.lab")
# Commands are logged at DEBUG; without this they would be filtered before
# reaching pytest's log capture (the root logger defaults to WARNING).
LOG.setLevel(logging.DEBUG)

DEFAULT_TIMEOUT = 20.0

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab step failed; the message carries the command output or log tail."""


# --------------------------------------------------------------------------
# commands


def run(
    *cmd: str | os.PathLike[str],
    netns: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (optionally inside ``netns``), logged, with a timeout.

    Raises :class:`LabError` with stdout/stderr when ``check`` and it fails, so a
    failing fixture says *why* instead of just "exit status 1".
    """
    argv = ns_argv(netns, cmd)
    LOG.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if proc.returncode and check:
        raise LabError(
            f"exit {proc.returncode}: {' '.join(argv)}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def ns_argv(netns: str | None, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
    """``cmd`` as run inside ``netns`` (``ip netns exec`` execs it, so the pid of
    the process started is the command's own)."""
    argv = [os.fspath(c) for c in cmd]
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def have_binary(name: str) -> bool:
    return shutil.which(name) is not None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists (a process owned by someone else counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------
# the safety net


_LIVE_PROCS: set[LabProcess] = set()
_OWN_TMPDIRS: set[Path] = set()
_EXIT_HOOKS: list[Callable[[], None]] = []


def mkdtemp(prefix: str) -> Path:
    """A temporary directory that the atexit safety net removes if nobody did."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _OWN_TMPDIRS.add(path)
    return path


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _OWN_TMPDIRS.discard(path)


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at exit after the live processes are killed and before the
    temporary directories go (one atexit handler, so that order is fixed)."""
    _EXIT_HOOKS.append(hook)


@atexit.register
def _atexit_cleanup() -> None:
    """Safety net: a test run that dies between setup and teardown (KeyboardInterrupt,
    an exception in a fixture) still leaves no daemon, namespace or link behind."""
    for lp in list(_LIVE_PROCS):
        with contextlib.suppress(Exception):
            assert lp.proc is not None
            lp.proc.kill()
            lp.proc.wait(5)
    for hook in _EXIT_HOOKS:
        with contextlib.suppress(Exception):
            hook()
    for path in list(_OWN_TMPDIRS):
        rmtree(path)


# --------------------------------------------------------------------------
# processes


class LabProcess:
    """One long-running lab process: :meth:`argv` run (inside :attr:`netns`, if
    set) with stdout and stderr appended to :attr:`log_file`.

    :meth:`start` (also ``__enter__``) calls :meth:`_prepare`, spawns, and polls
    :meth:`_ready` until it says yes; if the process exits first or
    :attr:`ready_timeout` passes, it is killed and a :class:`LabError` carrying
    the log tail is raised: the one place a start failure is reported.
    :meth:`stop` sends SIGTERM and waits :attr:`stop_timeout`, then SIGKILLs; a
    process that ignored SIGTERM is an error when :attr:`strict_stop` (the
    servers under test: a hung shutdown is a finding), a warning otherwise.
    :meth:`kill` is SIGKILL, as a crash would be.

    The report hook (tests/conftest.py) reads ``name``, ``log_file`` and
    :meth:`log_tail`; :attr:`label` names the process in messages (``name`` is
    not always a label: a plugin's is its socket name).

    Subclasses give :meth:`argv` and may override the hooks (:meth:`spawn_env`,
    :meth:`_prepare`, :meth:`_ready`, :meth:`ready_what`) and the class
    attributes below.
    """

    label = "process"
    mark_start = True  # a "--- start <argv>" line in the log before each start
    # A session of its own: a Ctrl-C on pytest must not reach it and race the
    # orderly teardown.
    new_session = False
    kill_group = False  # SIGKILL its whole process group, not just the process
    strict_stop = True
    ready_timeout = 10.0
    ready_interval = 0.05
    stop_timeout = 10.0

    def __init__(self, log_file: str | Path, *, netns: str | None = None) -> None:
        self.log_file = Path(log_file)
        self.netns = netns
        self.proc: subprocess.Popen[bytes] | None = None

    # -- hooks
    def argv(self) -> list[str]:
        raise NotImplementedError

    def spawn_env(self) -> dict[str, str] | None:
        """The process's environment (None: ours)."""
        return None

    def _prepare(self) -> None:
        """Write config files etc. before each start."""

    def _ready(self) -> bool:
        """Whether the process is ready; no readiness to wait for by default."""
        return True

    def ready_what(self) -> str:
        """What :meth:`start` waits for, in its timeout message."""
        return f"{self.label} to be ready"

    # -- state
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lifecycle
    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process, without waiting for it to be ready."""
        argv = ns_argv(self.netns, self.argv())
        LOG.debug("start %s: %s", self.label, " ".join(argv))
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            if self.mark_start:
                out.write(f"--- start {' '.join(argv)}\n".encode())
                out.flush()
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
                env=self.spawn_env(),
            )
        _LIVE_PROCS.add(self)
        return self.proc

    def start(self) -> None:
        """Spawn and wait until ready; nothing if it already runs."""
        if self.running:
            return
        self._prepare()
        self.spawn()
        self.wait_ready()
        LOG.debug("%s ready (pid %s)", self.label, self.pid)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.running:
                raise LabError(f"{self.label} exited with {self.returncode} before it was ready")
            return self._ready()

        try:
            wait_for(ready, self.ready_timeout, self.ready_what(), self.ready_interval)
        except LabError as exc:
            self.kill()
            raise self.error(str(exc)) from None

    def signal_and_wait(self, sig: int, timeout: float) -> int | None:
        """Send ``sig`` and wait ``timeout`` s for the exit, then SIGKILL (see
        :attr:`strict_stop`). Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            LOG.debug("%s: signal %d to pid %d", self.label, sig, proc.pid)
            self._send(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._send(signal.SIGKILL)
                proc.wait(10)
                _LIVE_PROCS.discard(self)
                msg = f"{self.label} (pid {proc.pid}) ignored signal {sig} for {timeout}s"
                if self.strict_stop:
                    raise self.error(msg) from None
                LOG.warning("%s: killed", msg)
        _LIVE_PROCS.discard(self)
        return proc.returncode

    def _send(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            if self.kill_group and sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """Graceful stop (SIGTERM); returns the exit status."""
        return self.signal_and_wait(signal.SIGTERM, timeout or self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL: the process vanishes without a goodbye, as in a crash."""
        self.signal_and_wait(signal.SIGKILL, 5.0)

    def close(self) -> None:
        self.stop()

    # -- the log
    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def error(self, msg: str) -> LabError:
        """``msg`` with the log tail, for an error about this process."""
        return LabError(f"{msg}\n--- {self.label} log tail ({self.log_file}):\n{self.log_tail(40)}")
