"""End-to-end lab: a real, private ``dockerd`` next to the integration lab's
DHCP segments, and a busybox image built offline. The IPAM plugins it talks to
(subprocesses on ``/run/docker/plugins``, managed plugins) are docker_plugins.py's.

Like the integration lab (which it builds on: ``py``'s
:func:`run`, :func:`wait_for`, :class:`LabError` and :class:`LabProcess`,
``labnet.py``'s :class:`Segment`), a plain module usable from a REPL::

    import labnet, docker_lab
    with labnet.Segment() as seg, docker_lab.Dockerd() as d:
        img = docker_lab.busybox_image(d)
        net = docker_lab.macvlan_network(d, seg, subnet="10.99.0.0/16",
                                         gateway="10.99.0.2", ip_range="10.99.200.0/24")
        print(d.docker("run", "--rm", "--network", net, img, "ip", "addr").stdout)

Engines: ``Dockerd(engine="28.5")`` runs another Docker engine than the
system's 20.10 (engines.py: "26.1", "28.5", "29.7"), fetched or built on first
use and cached, with a containerd of its own in the same root; see
:class:`Dockerd`.

Isolation (what each :class:`Dockerd` owns, so that several runs, and a real
dockerd, can share the machine):

* Its own ``--data-root``, ``--exec-root`` (hence its own managed containerd,
  runc state and libnetwork key socket), ``-H unix://<root>/docker.sock``,
  ``--pidfile`` and ``--config-file`` (so ``/etc/docker/daemon.json`` does not
  apply), all in one short temp dir ``/tmp/fdtd-*`` (containerd's socket path
  must fit in ``sun_path``).
* ``deprecated-key-path`` in that config file: otherwise dockerd 20.10 writes
  ``/etc/docker/key.json`` on the host.
* ``--bridge=none``: no ``docker0`` (a second dockerd would fight over the
  name and 172.17.0.0/16); containers here use macvlan or ``--network none``.
* ``--iptables=false --ip-masq=false``: the host firewall is never touched
  (nothing is published, macvlan needs no NAT); ``--ip-forward=false``:
  dockerd leaves ``net.ipv4.ip_forward`` alone (it sets it to 1 otherwise).
* ``--cgroup-parent=/<name>`` and ``--containerd-namespace=<name>``: the
  containers' cgroups are ours alone (so teardown can find and kill every
  container process even after a crashed dockerd), and a system containerd,
  should dockerd pick one up, keeps our containers apart from everyone else's.
* Every name it creates (containers, networks, cgroups) starts with
  ``fdt<6 hex>``; plugin sockets are ``/run/docker/plugins/fdt<6 hex>ipam.sock``.

What cannot be isolated: dockerd only discovers plugins in the fixed
``/run/docker/plugins`` (and ``/etc/docker/plugins``, ``/usr/lib/docker/plugins``),
whatever ``--exec-root`` says, and creates that directory itself. Hence a unique
plugin name per :class:`docker_plugins.PluginProcess`. Its RequestPool overlap check also reads
the *root namespace's* routes, so a concurrent run that puts a host address in
10.99.0.0/16 on its segment changes what an auto-pool network create does here:
:func:`overlapping_routes` says when.

Teardown (:meth:`Dockerd.close`) removes every container and network, stops
dockerd, then kills whatever process still names its root (containerd, shims)
or sits in its cgroups, unmounts everything under its root (dockerd bind-mounts
the data root onto itself, and each container's network namespace is an nsfs
bind mount in ``<exec-root>/netns/``: unlike plugins, that does follow
``--exec-root``), removes the cgroups and the directory, and raises
:class:`LabError` if anything is left. After a SIGKILL (:meth:`Dockerd.kill`)
the managed containerd dies too, but the containerd-shims, the containers and
those mounts stay: teardown handles that case as well.

Costs measured on a 2-core machine of this kind: dockerd answers ``docker
version`` 0.15-0.25 s after exec; a graceful restart takes about 1.2 s; the
busybox import 0.2 s; a ``docker run --rm`` 0.2-0.4 s; teardown about 1 s.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import engines
import labnet
from labprocess import LabError, LabProcess, pid_alive, run

LOG = logging.getLogger("fastdhcp.lab.docker")
LOG.setLevel(logging.DEBUG)

PLUGIN_DIR = Path("/run/docker/plugins")
DEFAULT_IMAGE = "fastdhcp-test:busybox"
ROOT_PREFIX = "fdtd-"  # /tmp/fdtd-XXXXXXXX: one Dockerd's whole state
CGROUP_ROOT = Path("/sys/fs/cgroup")

# A container command that exits at once on SIGTERM. A shell (or sleep) as PID 1
# has no default signal actions, so `sleep 3600` would make every `docker stop`
# and every dockerd shutdown wait the full 10 s stop timeout before SIGKILL.
SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")

_LIVE_DAEMONS: set[Dockerd] = set()


def new_token() -> str:
    return secrets.token_hex(3)


def _docker_env(host: str, cli_config: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DOCKER_") and k not in ("BUILDKIT_HOST",)
    }
    env["DOCKER_HOST"] = host
    env["DOCKER_CONFIG"] = str(cli_config)  # no ~/.docker: contexts, credential helpers
    return env


# --------------------------------------------------------------------------
# host state: mounts, processes, cgroups


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in our mount namespace, deepest first."""
    base = str(path).rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = _unescape_mountinfo(line.split()[4])
            if mnt == base or mnt.startswith(base + "/"):
                out.append(mnt)
    return sorted(out, key=lambda m: (m.count("/"), len(m)), reverse=True)


def _umount_all(path: Path) -> None:
    # Repeat: a path can be mounted several times over (stacked mounts).
    for _ in range(5):
        mounts = mounts_under(path)
        if not mounts:
            return
        for mnt in mounts:
            if run("umount", mnt, check=False).returncode:
                run("umount", "-l", mnt, check=False)


def processes_naming(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (e.g. a Dockerd's root: its
    dockerd, containerd and containerd-shim processes all name it)."""
    needle = text.encode()
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry.name))
    return pids


def cgroup_dirs(name: str) -> list[Path]:
    """Every cgroup directory named ``/<name>`` (cgroup v1 per-controller
    hierarchies, the v2 unified one, or a pure v2 mount)."""
    cands = [CGROUP_ROOT / name]
    with contextlib.suppress(OSError):
        cands += [d / name for d in CGROUP_ROOT.iterdir() if d.is_dir()]
    return [c for c in cands if c.is_dir()]


def cgroup_pids(top: Path) -> list[int]:
    pids: set[int] = set()
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in procs.read_text().split())
    return sorted(pids)


def _kill_pids(pids: Sequence[int], what: str) -> None:
    for pid in pids:
        LOG.debug("kill -9 %d (%s)", pid, what)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_cgroups(name: str) -> None:
    for top in cgroup_dirs(name):
        _kill_pids(cgroup_pids(top), f"in cgroup {top}")
        # children first; a cgroup whose last task just died may take a moment
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        LOG.warning("rmdir %s: %s", d, exc)
                        break
                    time.sleep(0.05)


def _proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, Z, ...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


# --------------------------------------------------------------------------
# dockerd


class Dockerd(LabProcess):
    """A private dockerd and the docker CLI bound to it.

    ``with Dockerd() as d:`` starts it and waits until ``docker version``
    answers; leaving the block tears everything down (see the module doc).
    ``log_dir`` keeps ``dockerd.log`` outside the temp root, for post-mortems
    (pytest's ``tmp_path``); by default it lives in the root and goes with it.

    ``engine`` picks the Docker engine (engines.py: "20.10", the system's and the
    default, "26.1", "28.5" or "29.7"), fetched or built on first use and cached;
    :class:`engines.EngineUnavailable` or :class:`engines.EngineError` if it
    cannot be had. The system's dockerd runs its own containerd, as ever. For
    the others the lab starts a containerd of the engine's own (config per
    /work/shared/LAB.md: root, state, sockets in ``<root>/ctrd``, the CRI and
    NRI plugins off) and passes ``--containerd``; that containerd lives from the
    first :meth:`start` to :meth:`close`, like a system containerd, so
    :meth:`stop`, :meth:`kill` and :meth:`restart` act on dockerd alone and a
    restarted dockerd finds its containers in it. Its log is
    ``containerd.log`` beside ``dockerd.log``. The engine's ``bin/`` comes
    first on the PATH of both (its shim, the system's runc).

    The process part (spawn, readiness, stop, kill, the log) is
    :class:`LabProcess`'s; ``name`` is this daemon's ``fdt`` name.
    """

    mark_start = True
    new_session = True

    def __init__(
        self,
        *,
        log_dir: str | Path | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        log_level: str = "debug",
        binary: str | None = None,
        cli: str | None = None,
        engine: str = engines.SYSTEM,
    ) -> None:
        # First, before anything exists to clean up: this may fetch or build.
        self.engine = engines.ensure(engine)
        self.token = new_token()
        self.name = f"{labnet.PREFIX}{self.token}"  # cgroup parent, containerd ns, name prefix
        if self.engine.spec.own_containerd:
            self.binary = binary or str(self.engine.dockerd)
            self.cli = cli or str(self.engine.docker)
        else:  # the system's, looked up on PATH as before
            self.binary = binary or "dockerd"
            self.cli = cli or "docker"
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.sock = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.config_file = self.root / "daemon.json"
        self.cli_config = self.root / "cli"
        self.containerd_dir = self.root / "ctrd"
        self.containerd_sock = self.containerd_dir / "containerd.sock"
        log_dir = Path(log_dir) if log_dir else self.root
        log_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(log_dir / "dockerd.log")
        self.containerd_log_file = log_dir / "containerd.log"
        self.containerd = _Containerd(self)
        self.startup_seconds: list[float] = []  # one per start()
        self._names = 0
        self._closed = False
        # ownership, for cleanup_stale() after a crashed run
        (self.root / "owner").write_text(f"{os.getpid()}\n{self.name}\n")
        _LIVE_DAEMONS.add(self)

    # -- basics
    @property
    def host(self) -> str:
        """The DOCKER_HOST URL of this daemon."""
        return f"unix://{self.sock}"

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"dockerd {self.version}"

    def env(self) -> dict[str, str]:
        """Environment for a docker CLI talking to this daemon."""
        return _docker_env(self.host, self.cli_config)

    def new_name(self, kind: str = "c") -> str:
        """A fresh container/network name owned by this daemon: fdt<token><kind><n>."""
        self._names += 1
        return f"{self.name}{kind}{self._names}"

    @property
    def version(self) -> str:
        """The engine's registry key: "20.10", "26.1", "28.5" or "29.7"."""
        return self.engine.spec.version

    @property
    def containerd_running(self) -> bool:
        return self.containerd.running

    def __repr__(self) -> str:
        return f"<Dockerd {self.version} {self.name} {self.host} pid={self.pid}>"

    def argv(self) -> list[str]:
        return [
            self.binary,
            "--config-file", str(self.config_file),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--host", self.host,
            "--pidfile", str(self.pidfile),
            "--storage-driver", "vfs",
            "--bridge", "none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--cgroup-parent", f"/{self.name}",
            "--containerd-namespace", self.name,
            "--containerd-plugins-namespace", f"{self.name}p",
            "--log-level", self.log_level,
            *self._engine_args(),
            *self.extra_args,
        ]  # fmt: skip

    def _engine_args(self) -> list[str]:
        if not self.engine.spec.own_containerd:
            return []  # 20.10's argv exactly as before
        # 27+ turns ip6tables on by default; 26 has the flag too.
        return ["--containerd", str(self.containerd_sock), "--ip6tables=false",
                *self.engine.spec.dockerd_args]  # fmt: skip

    def spawn_env(self) -> dict[str, str] | None:
        return self._engine_env()

    def _engine_env(self) -> dict[str, str] | None:
        """dockerd's and containerd's environment: the engine's bin dir first on
        PATH (containerd finds its shim there, the shim finds runc)."""
        if self.engine.bin_dir is None:
            return None
        return {**os.environ, "PATH": self.engine.env_path()}

    # -- the engine's own containerd (26.1, 28.5, 29.7)
    def containerd_config(self) -> str:
        """containerd's config: everything under ``<root>/ctrd``. ``version = 2``
        is containerd 1.7's format, ``3`` 2.x's. The CRI plugins (Kubernetes)
        and NRI are off: dockerd uses neither, and CRI would set up CNI dirs;
        ``opt`` would make ``/opt/containerd``."""
        d = self.containerd_dir
        disabled = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",
                    "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri",
                    "io.containerd.internal.v1.opt"]  # fmt: skip
        return "\n".join([
            f"version = {self.engine.spec.containerd_config_version}",
            f'root = "{d / "root"}"',
            f'state = "{d / "state"}"',
            f"disabled_plugins = {json.dumps(disabled)}",
            "[grpc]",
            f'  address = "{self.containerd_sock}"',
            "[ttrpc]",
            f'  address = "{self.containerd_sock}.ttrpc"',
            "[debug]",
            f'  address = "{d / "debug.sock"}"',
            "  level = \"info\"",
            "[metrics]",
            '  address = ""',
            "",
        ])  # fmt: skip

    # -- lifecycle
    def start(self) -> None:
        if self._closed:
            raise LabError(f"{self!r} was closed")
        if self.running:
            return
        self.cli_config.mkdir(exist_ok=True)
        if self.engine.spec.own_containerd:
            self.containerd.start()
        else:
            self._wait_old_containerd()
        # dockerd 20.10 writes its (unused) libtrust key to /etc/docker/key.json
        # unless told otherwise; this key is only settable in the config file.
        self.config_file.write_text(
            json.dumps({"deprecated-key-path": str(self.root / "key.json")}) + "\n"
        )
        t0 = time.monotonic()
        super().start()
        self.startup_seconds.append(time.monotonic() - t0)
        LOG.debug("dockerd ready in %.2fs (pid %s)", self.startup_seconds[-1], self.pid)

    def ready_what(self) -> str:
        return f"dockerd to answer on {self.sock}"

    def _ready(self) -> bool:
        return (
            self.sock.exists()
            and self.docker("version", "--format", "{{.Server.Version}}", check=False).returncode
            == 0
        )

    def _wait_old_containerd(self, timeout: float = 15.0) -> None:
        """After a crash (:meth:`kill`), the managed containerd dies with dockerd
        (parent-death signal) but stays a zombie until init reaps it, and on
        this machine's init (Firecracker's process_api) that takes 1-2 s. A
        dockerd started meanwhile reads the old containerd.pid, sees the zombie
        as "containerd is still running", never gets a connection and gives up
        after its 30 s. So wait for the zombie to go; a containerd that really
        runs is left alone (dockerd then reuses it)."""
        try:
            pid = int((self.exec_root / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while _proc_state(pid) == "Z":
            if time.monotonic() > deadline:
                raise self.error(f"the old containerd (pid {pid}) is still a zombie")
            time.sleep(0.05)
        # It may also still be on its way out (the parent-death signal is being
        # handled): a dockerd started then finds it "still running", dials a socket
        # that is closing, and fails after 30 s (seen once in CI). Give it a few
        # seconds to go; one that stays is really running, and dockerd reuses it.
        exiting_deadline = time.monotonic() + 5.0
        while _proc_state(pid) not in (None, "Z") and time.monotonic() < exiting_deadline:
            time.sleep(0.05)
        while _proc_state(pid) == "Z" and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> int | None:
        """Graceful stop (SIGTERM; dockerd stops its containers and, on 20.10,
        its managed containerd first; an engine's own containerd stays up until
        :meth:`close`). Returns dockerd's exit status."""
        return super().stop(timeout)

    def kill(self) -> None:
        """SIGKILL dockerd alone, as a crash would: containerd-shims and the
        containers keep running (:meth:`start` on the same root picks them up)."""
        super().kill()

    def restart(self, graceful: bool = True) -> None:
        """Stop (or kill) and start again on the same data root: containers,
        networks and images survive."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()

    def close(self) -> None:
        """Remove our containers and networks, stop dockerd, and remove every
        trace (see the module doc). Idempotent; raises :class:`LabError` if
        something is left."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        if self.running:
            problems += self._remove_objects()
            try:
                self.stop()
            except LabError as exc:
                problems.append(str(exc))
        if self.running:
            self.kill()
        self.containerd.stop()  # after dockerd, by pid (LAB.md)
        self._reap()
        left = self.leftovers()
        if not left:
            shutil.rmtree(self.root, ignore_errors=True)
            left = [f"dir {self.root}"] if self.root.exists() else []
        _LIVE_DAEMONS.discard(self)
        if left:
            raise LabError(f"dockerd teardown left {left}; problems: {problems}")
        if problems:
            LOG.warning("dockerd teardown: %s", problems)

    def remove_objects(self) -> list[str]:
        """Remove every container and custom network (what :meth:`close` does
        first); returns the problems met. For a test that must take them away
        before something they use, such as a managed plugin."""
        return self._remove_objects()

    def _remove_objects(self) -> list[str]:
        problems = []
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids and (p := self.docker("rm", "-f", "-v", *ids, check=False)).returncode:
            problems.append(f"docker rm -f: {p.stderr.strip()}")
        nets = self.docker(
            "network", "ls", "-q", "--filter", "type=custom", check=False
        ).stdout.split()
        for net in nets:
            if (p := self.docker("network", "rm", net, check=False)).returncode:
                problems.append(f"docker network rm {net}: {p.stderr.strip()}")
        return problems

    def _reap(self) -> None:
        """After dockerd is gone: kill its containerd/shims and container
        processes, unmount, remove cgroups. Safe to call on a dead daemon."""
        if self.running:
            self.kill()
        _kill_pids(processes_naming(f"{self.root}/"), f"left by {self.name}")
        remove_cgroups(self.name)
        _umount_all(self.root)

    def leftovers(self) -> list[str]:
        """What of this daemon still exists on the host besides its directory."""
        left = [f"process {p}" for p in processes_naming(f"{self.root}/")]
        left += [f"mount {m}" for m in mounts_under(self.root)]
        left += [f"cgroup {c}" for c in cgroup_dirs(self.name)]
        return left

    # -- the CLI
    def docker(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon. With ``check``, a failure
        raises :class:`LabError` carrying the CLI's output and dockerd's log tail."""
        try:
            return run(self.cli, *args, check=check, timeout=timeout, input=input, env=self.env())
        except LabError as exc:
            raise self.error(str(exc)) from None

    # -- logs
    def log_tail(self, lines: int = 60) -> str:
        tail = super().log_tail(lines)
        if self.engine.spec.own_containerd:
            tail += f"\n--- containerd log tail ({self.containerd_log_file}):\n"
            tail += self.containerd.log_tail(lines // 3)
        return tail


class _Containerd(LabProcess):
    """The engine's own containerd (26.1, 28.5, 29.7) of a :class:`Dockerd`:
    config and log beside dockerd's, the same environment."""

    label = "containerd"
    new_session = True
    # Stopped after dockerd is gone (LAB.md); one that lingers past SIGTERM is
    # just SIGKILLed: dockerd's teardown is what the tests judge.
    strict_stop = False
    stop_timeout = 15.0

    def __init__(self, dockerd: Dockerd) -> None:
        super().__init__(dockerd.containerd_log_file)
        self.dockerd = dockerd
        self.config = dockerd.containerd_dir / "containerd.toml"
        self.ready_timeout = dockerd.ready_timeout

    def argv(self) -> list[str]:
        return [str(self.dockerd.engine.containerd), "--config", str(self.config)]

    def spawn_env(self) -> dict[str, str] | None:
        return self.dockerd._engine_env()

    def _prepare(self) -> None:
        self.dockerd.containerd_dir.mkdir(exist_ok=True)
        self.config.write_text(self.dockerd.containerd_config())
        self.dockerd.containerd_sock.unlink(missing_ok=True)  # a crashed one's

    def ready_what(self) -> str:
        return f"containerd on {self.dockerd.containerd_sock}"

    def _ready(self) -> bool:
        sock = self.dockerd.containerd_sock
        return sock.exists() and socket_listening(sock)


def cleanup_stale() -> list[str]:
    """Remove ``/tmp/fdtd-*`` roots (with their processes, mounts and cgroups)
    whose owning process is dead: what a crashed run left. Live runs' roots are
    left alone. Returns what was removed."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        try:
            pid_s, name = (root / "owner").read_text().split()[:2]
            owner = int(pid_s)
        except (OSError, ValueError):
            continue  # not ours (or half-made by a live run): leave it
        if pid_alive(owner):
            continue
        _kill_pids(processes_naming(f"{root}/"), f"stale {root}")
        remove_cgroups(name)
        _umount_all(root)
        if not mounts_under(root):
            shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    removed += cleanup_stale_plugin_sockets()
    if removed:
        LOG.warning("docker_lab.cleanup_stale removed: %s", ", ".join(removed))
    return removed


@atexit.register
def _atexit_cleanup() -> None:
    """Safety net (runs before labprocess's, which was registered first, and
    after docker_plugins', registered later): no dockerd or mount outlives a
    run that died before its teardown."""
    for daemon in list(_LIVE_DAEMONS):
        with contextlib.suppress(Exception):
            daemon.close()


# --------------------------------------------------------------------------
# image and container helpers


def busybox_image(dockerd: Dockerd, tag: str = DEFAULT_IMAGE, busybox: str = "/bin/busybox") -> str:
    """A minimal image built offline from the static busybox: ``/bin/busybox``
    plus a symlink per applet (sh, ip, ping, sleep, cat, udhcpc, ifconfig,
    route, ...), imported with ``docker import``. Skipped if ``tag`` exists.
    Returns the tag."""
    if dockerd.docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    applets = run(busybox, "--list").stdout.split()
    if "sh" not in applets:
        raise LabError(f"{busybox} has no sh applet: is it busybox-static?")
    tar_path = dockerd.root / "busybox-rootfs.tar"

    def entry(name: str, kind: bytes, mode: int = 0o755, target: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.linkname, ti.mtime = kind, mode, target, 0
        return ti

    with tarfile.open(tar_path, "w") as tar:
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev",
                  "root", "var", "run"):  # fmt: skip
            tar.addfile(entry(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        tar.add(busybox, arcname="bin/busybox")
        for a in sorted(set(applets) - {"busybox"}):
            tar.addfile(entry(f"bin/{a}", tarfile.SYMTYPE, 0o777, "busybox"))
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ):
            data = text.encode()
            ti = entry(name, tarfile.REGTYPE, 0o644)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    try:
        dockerd.docker(
            "import",
            "--change", "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin",
            "--change", 'CMD ["sh"]',
            str(tar_path),
            tag,
            timeout=120,
        )  # fmt: skip
    finally:
        tar_path.unlink(missing_ok=True)
    return tag


def container_exec(dockerd: Dockerd, name: str, *cmd: str) -> str:
    return dockerd.docker("exec", name, *cmd).stdout


_INET = re.compile(r"\binet (\d+\.\d+\.\d+\.\d+)/(\d+)")


def container_ipv4(dockerd: Dockerd, name: str, ifname: str = "eth0") -> tuple[str, int]:
    """(address, prefixlen) of the container's first IPv4 address on ``ifname``."""
    out = container_exec(dockerd, name, "ip", "-4", "-o", "addr", "show", ifname)
    m = _INET.search(out)
    if not m:
        raise LabError(f"no IPv4 address on {name}:{ifname}: {out!r}")
    return m.group(1), int(m.group(2))


def container_default_route(dockerd: Dockerd, name: str) -> str | None:
    """The container's default gateway, or None."""
    out = container_exec(dockerd, name, "ip", "-4", "route", "show")
    m = re.search(r"^default via (\S+)", out, re.MULTILINE)
    return m.group(1) if m else None


def container_mac(dockerd: Dockerd, name: str, ifname: str = "eth0") -> str:
    return container_exec(dockerd, name, "cat", f"/sys/class/net/{ifname}/address").strip().lower()


def container_inspect(dockerd: Dockerd, name: str) -> dict[str, Any]:
    return json.loads(dockerd.docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------
# networks


def macvlan_args(
    segment: labnet.Segment,
    name: str,
    *,
    ipam_driver: str | None = None,
    ipam_opts: dict[str, str] | None = None,
    subnet: str | None = None,
    gateway: str | None = None,
    ip_range: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``docker network create`` arguments for a macvlan network whose parent
    is the segment's host end (bridge mode, as Docker's default)."""
    args = ["network", "create", "-d", "macvlan", "-o", f"parent={segment.host_if}"]
    if ipam_driver:
        args += ["--ipam-driver", ipam_driver]
    for k, v in (ipam_opts or {}).items():
        args += ["--ipam-opt", f"{k}={v}"]
    for flag, value in (("--subnet", subnet), ("--gateway", gateway), ("--ip-range", ip_range)):
        if value:
            args += [flag, value]
    return [*args, *extra, name]


def macvlan_network(
    dockerd: Dockerd, segment: labnet.Segment, name: str | None = None, **kw: Any
) -> str:
    """Create a macvlan network on ``segment`` (see :func:`macvlan_args`);
    returns its name. It goes with the daemon's teardown."""
    name = name or dockerd.new_name("n")
    dockerd.docker(*macvlan_args(segment, name, **kw))
    return name


def overlapping_routes(cidr: str) -> list[str]:
    """Root-namespace IPv4 routes (other than default) that overlap ``cidr``:
    exactly what dockerd 20.10's RequestPool overlap check looks at (plus the
    resolv.conf nameservers) for a network created without ``--subnet``."""
    net = ipaddress.ip_network(cidr)
    out = run("ip", "-j", "-4", "route", "show", "table", "main").stdout
    hits = []
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst in ("", "default"):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False).overlaps(net):
                hits.append(f"{dst} dev {r.get('dev')}")
    return hits


# --------------------------------------------------------------------------
# the plugin directory


def socket_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def cleanup_stale_plugin_sockets() -> list[str]:
    """Remove ``/run/docker/plugins/fdt*.sock`` that nobody listens on (a
    crashed run's); a live run's socket answers connect() and is kept."""
    removed = []
    if PLUGIN_DIR.is_dir():
        for sock in PLUGIN_DIR.glob(f"{labnet.PREFIX}*.sock"):
            if not socket_listening(sock):
                sock.unlink(missing_ok=True)
                removed.append(str(sock))
    return removed


@contextlib.contextmanager
def running_container(dockerd: Dockerd, *run_args: str, name: str | None = None) -> Iterator[str]:
    """``docker run -d`` (``run_args`` = options + image + command) and
    ``docker rm -f`` afterwards; yields the name."""
    name = name or dockerd.new_name("c")
    dockerd.docker("run", "-d", "--name", name, *run_args)
    try:
        yield name
    finally:
        dockerd.docker("rm", "-f", name, check=False)
