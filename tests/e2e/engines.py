"""The Docker engines the end-to-end lab can run, fetched or built on demand and
cached, with nothing installed into the system.

=========  ==============================================================  ======================
version    where it comes from                                             containerd, CLI, runc
=========  ==============================================================  ======================
``20.10``  the system's Debian 12 ``docker.io`` (``/usr/sbin/dockerd``)     dockerd starts its own
                                                                           (system containerd
                                                                           1.6); system CLI, runc
``26.1``   Debian trixie's ``docker.io``, ``docker-cli``, ``containerd``   trixie's containerd 1.7
           1.7 and ``tini``, downloaded and unpacked                       and CLI 26.1; system
                                                                           runc
``28.5``   Debian sid's ``docker.io``, ``docker-cli``, ``containerd`` 2.1  sid's containerd 2.1
           and ``tini-static``, the same way                               and CLI 28.5; system
                                                                           runc
``29.7``   built from moby's source by ``build-dockerd29`` from the        28.5's (sid's)
           shared engines dir (``/work/shared/engines``)                   containerd and CLI;
                                                                           system runc
=========  ==============================================================  ======================

The system runc (Debian 12's 1.1.5) serves them all: trixie's and sid's runc need
glibc 2.38, and Debian 12 has 2.36 (/work/shared/LAB.md, "Newer Docker engines").

A plain module (no pytest, nothing from the lab), usable from a REPL or a shell::

    python3 tests/e2e/engines.py ensure 28.5     # fetch or build, print the paths
    python3 tests/e2e/engines.py status          # what is cached, what is unavailable

:func:`ensure` returns :class:`EnginePaths`. Each non-system engine gets a ``bin/``
directory of symlinks (dockerd, containerd, containerd-shim-runc-v2, runc, docker,
docker-init, docker-proxy): put it first on the ``PATH`` of dockerd and containerd,
and every binary they look up by name (containerd finds its shim on ``PATH``, the
shim finds ``runc`` there, dockerd its ``docker-init``) is that engine's, or the
system's runc.

Cache. ``$FASTDHCP_ENGINE_CACHE`` (default ``/var/cache/fastdhcp-engines``, beside
build-plugin's ``/var/cache/fastdhcp-build``; ``build-dockerd29`` defaults to
``/var/cache/fastdhcp-engines/docker29`` too). One directory per engine, filled
under an ``flock`` (a concurrent run waits, then reuses it) into a temporary
directory that is renamed into place only when complete, so a crashed fetch never
leaves a half-engine that looks cached. A Debian engine is keyed by everything
that shapes it (suite, packages, mirror, architecture): a change refetches.

Fetching uses a private apt state: the mirror of the machine's own
``/etc/apt/sources.list.d/debian.sources`` (or ``$FASTDHCP_DEBIAN_MIRROR``) with
the newer suite, passed with ``-o Dir::Etc::sourcelist=/dev/null -o
Dir::Etc::sourceparts=...`` and private lists and cache dirs; the system's apt
sources, lists and packages stay as they are. Only ``apt-get download`` and
``dpkg-deb -x``: no maintainer script runs.

Versions. A suite moves: the fetch checks that ``docker.io`` is the upstream
version the registry names (26.1.5, 28.5.2) and fails, naming what the suite has
now, when it is not. A cached engine stays as it was fetched.

Errors (:class:`EngineError`) name the engine, the package and the command that
failed, with its output. :class:`EngineUnavailable` (a subclass) is for an engine
this machine cannot have at all (29 without the shared engines dir); tests skip
on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

LOG = logging.getLogger("fastdhcp.lab.engines")
LOG.setLevel(logging.DEBUG)

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FASTDHCP_ENGINE_CACHE", "/var/cache/fastdhcp-engines"))
SYSTEM = "20.10"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The shared engines dir: beside the checkout (as /work/shared is beside /work/main,
# and CI's copy of shared/ beside its clone), or where FASTDHCP_SHARED_ENGINES says.
SHARED_ENGINE_DIRS = (
    [Path(os.environ["FASTDHCP_SHARED_ENGINES"])]
    if os.environ.get("FASTDHCP_SHARED_ENGINES")
    else [REPO.parent / "shared" / "engines", Path("/work/shared/engines")]
)
BUILD_SCRIPT = "build-dockerd29"
# The fetch's own commands (apt-get update, download, dpkg-deb) and the 29 build.
FETCH_TIMEOUT = 600.0
BUILD_TIMEOUT = 1800.0
LAYOUT = 1  # bump when the cached layout changes: every Debian engine is fetched again


class EngineError(RuntimeError):
    """Fetching, unpacking, building or finding an engine failed; the message
    says which engine, which package and which command."""


class EngineUnavailable(EngineError):
    """This machine cannot have the engine at all (the message says why)."""


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    version: str  # the registry key: "28.5"
    upstream: str  # what `dockerd --version` and `docker version` start with: "28.5.2"
    source: str  # "system", "debian" or "build"
    suite: str = ""  # Debian suite, for source == "debian"
    packages: tuple[str, ...] = ()  # Debian binary packages, for source == "debian"
    containerd_from: str = ""  # the engine whose containerd and CLI this one uses ("build")
    containerd_config_version: int = 0  # 2 for containerd 1.7, 3 for 2.x; 0: dockerd's own
    dockerd_args: tuple[str, ...] = ()  # extra flags this engine needs on this machine
    note: str = ""

    @property
    def own_containerd(self) -> bool:
        """Whether the lab starts containerd itself and passes ``--containerd``
        (every engine but the system's, whose dockerd runs its own)."""
        return self.source != "system"

    @property
    def cache_dir(self) -> Path:
        return CACHE / f"docker{self.version.split('.')[0]}"


ENGINES: dict[str, EngineSpec] = {
    e.version: e
    for e in (
        EngineSpec("20.10", "20.10.24", "system", note="Debian 12's docker.io, installed"),
        EngineSpec(
            "26.1", "26.1.5", "debian", suite="trixie",
            packages=("docker.io", "docker-cli", "containerd", "tini"),
            containerd_config_version=2,
            note="Debian trixie's docker.io, unpacked",
        ),
        EngineSpec(
            "28.5", "28.5.2", "debian", suite="sid",
            # docker-compose: sid's is Compose v2 (a CLI plugin, also run standalone).
            packages=("docker.io", "docker-cli", "containerd", "tini-static", "docker-compose"),
            containerd_config_version=3,
            note="Debian sid's docker.io, unpacked",
        ),
        EngineSpec(
            "29.7", "29.7.2", "build", containerd_from="28.5",
            containerd_config_version=3,
            # 29 asks runc for a time namespace; runc older than 1.2 (Debian 12
            # has 1.1.5) cannot make one (build-dockerd29's header).
            dockerd_args=("--feature", "time-namespaces=false"),
            note="built from moby's source (build-dockerd29)",
        ),
    )
}  # fmt: skip
ALL_VERSIONS = tuple(ENGINES)


def _selected() -> tuple[str, ...]:
    """$FASTDHCP_ENGINES (e.g. "20.10,29.7"), or every engine: what the e2e
    matrix runs on. CI's second leg (the pure-Python codec) runs the system's
    engine only: the engines are the first leg's business."""
    chosen = os.environ.get("FASTDHCP_ENGINES", "").replace(" ", "")
    if not chosen:
        return ALL_VERSIONS
    unknown = [version for version in chosen.split(",") if version not in ENGINES]
    if unknown:
        raise EngineError(f"FASTDHCP_ENGINES names {unknown}; known: {', '.join(ALL_VERSIONS)}")
    return tuple(version for version in ALL_VERSIONS if version in chosen.split(","))


VERSIONS = _selected()


@dataclasses.dataclass(frozen=True)
class EnginePaths:
    """Where one engine's binaries are. ``bin_dir`` (None for the system's) goes
    first on dockerd's and containerd's PATH; ``containerd`` is what the lab
    starts itself when ``spec.own_containerd``."""

    spec: EngineSpec
    dockerd: Path
    containerd: Path
    shim: Path  # containerd-shim-runc-v2
    runc: Path
    docker: Path  # the CLI
    bin_dir: Path | None = None
    # The Compose Debian ships beside this engine (v1 in bookworm, v2 in sid), if any.
    compose: Path | None = None
    seconds: float = 0.0  # what this ensure() spent fetching or building (0: cached)

    def env_path(self, base: str | None = None) -> str:
        """A PATH with this engine's bin dir first."""
        base = base if base is not None else os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        return f"{self.bin_dir}:{base}" if self.bin_dir else base


# --------------------------------------------------------------------------
# the registry


def major(version: str) -> int:
    """The engine's major version: 20, 26, 28, 29."""
    return int(version.split(".")[0])


def spec(version: str) -> EngineSpec:
    try:
        return ENGINES[version]
    except KeyError:
        raise EngineError(f"no engine {version!r}; known: {', '.join(ALL_VERSIONS)}") from None


def shared_engines_dir() -> Path | None:
    """The shared engines dir holding build-dockerd29 and moby's tarball, if any."""
    for d in SHARED_ENGINE_DIRS:
        if (d / BUILD_SCRIPT).is_file():
            return d
    return None


def unavailable_reason(version: str) -> str | None:
    """Why this machine cannot have the engine at all, or None. Cheap: fetches
    nothing. An engine that can be fetched but whose fetch then fails is not
    "unavailable": :func:`ensure` raises :class:`EngineError` for that."""
    s = spec(version)
    if s.source == "system":
        missing = [b for b in ("dockerd", "containerd", "runc", "docker") if not shutil.which(b)]
        return f"no {', '.join(missing)} on PATH (apt-get install docker.io)" if missing else None
    if not shutil.which("runc"):
        return f"Docker {s.upstream} runs with the system's runc, and there is none (apt-get install runc)"
    if s.source == "build":
        if _cached_build_ok(s):
            return None
        if shared_engines_dir() is None:
            where = " or ".join(str(d) for d in SHARED_ENGINE_DIRS)
            return (
                f"it is built from moby's source by {BUILD_SCRIPT}, which is "
                f"not here: no {where} (set FASTDHCP_SHARED_ENGINES to a copy of the shared "
                f"engines dir), and no finished build in {s.cache_dir}"
            )
        return unavailable_reason(s.containerd_from)
    if _debian_cached(s):
        return None
    missing = [b for b in ("apt-get", "dpkg-deb") if not shutil.which(b)]
    if missing:
        return f"fetching Docker {s.upstream} from Debian {s.suite} needs {', '.join(missing)}"
    return None


def ensure(version: str) -> EnginePaths:
    """The engine's binaries: found (system), fetched and unpacked (Debian) or
    built (29), once; cached after that. Raises :class:`EngineUnavailable` or
    :class:`EngineError`."""
    s = spec(version)
    reason = unavailable_reason(version)
    if reason:
        raise EngineUnavailable(f"Docker {s.upstream} ({s.version}) is unavailable: {reason}")
    if s.source == "system":
        return _system_paths(s)
    if s.source == "debian":
        return _ensure_debian(s)
    return _ensure_build(s)


def status() -> dict[str, str]:
    """version -> "cached", "fetchable", "system" or "unavailable: why"."""
    out = {}
    for v, s in ENGINES.items():
        reason = unavailable_reason(v)
        if reason:
            out[v] = f"unavailable: {reason}"
        elif s.source == "system":
            out[v] = "system"
        elif (s.source == "debian" and _debian_cached(s)) or (
            s.source == "build" and _cached_build_ok(s)
        ):
            out[v] = f"cached in {s.cache_dir}"
        else:
            out[v] = "not cached yet: fetched or built on first use"
    return out


# --------------------------------------------------------------------------
# helpers


def _run(
    engine: EngineSpec,
    what: str,
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    timeout: float = FETCH_TIMEOUT,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one step of a fetch or build; a failure raises :class:`EngineError`
    naming the engine, ``what`` the step was for, the command, and its output
    (or the tail of ``log``, where the output went)."""
    args = [os.fspath(a) for a in argv]
    cmd = " ".join(args)
    LOG.debug("engine %s: %s: %s", engine.version, what, cmd)
    try:
        if log is not None:
            with open(log, "ab") as out:
                proc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip
            output = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            result = subprocess.CompletedProcess(args, proc.returncode, output, "")
        else:
            result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                                    stdin=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip
            output = f"{result.stdout.strip()}\n{result.stderr.strip()}".strip()
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"Docker {engine.upstream}: {what}: timed out after {timeout:.0f}s: {cmd}"
        ) from None
    except OSError as exc:
        raise EngineError(f"Docker {engine.upstream}: {what}: cannot run {cmd}: {exc}") from None
    if result.returncode:
        raise EngineError(
            f"Docker {engine.upstream}: {what}: exit {result.returncode}: {cmd}\n{output}"
        )
    return result


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One filler of a cache entry at a time; the others wait, then reuse it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise EngineError(
            f"cannot use the engine cache {path.parent}: {exc} "
            f"(run as root, or set FASTDHCP_ENGINE_CACHE to a writable dir)"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _system_paths(s: EngineSpec) -> EnginePaths:
    def which(name: str) -> Path:
        found = shutil.which(name)
        if not found:
            raise EngineUnavailable(f"no {name} on PATH (apt-get install docker.io)")
        return Path(found)

    compose = shutil.which("docker-compose")
    return EnginePaths(
        s, which("dockerd"), which("containerd"), which("containerd-shim-runc-v2"),
        which("runc"), which("docker"), compose=None if compose is None else Path(compose),
    )  # fmt: skip


def _find(root: Path, name: str, dirs: Sequence[str] = ("usr/sbin", "usr/bin", "usr/libexec/docker",
                                                       "sbin", "bin")) -> Path | None:  # fmt: skip
    for d in dirs:
        p = root / d / name
        if p.is_file() or p.is_symlink():
            return p
    return None


def _link_bin(s: EngineSpec, bin_dir: Path, targets: dict[str, Path | None]) -> None:
    """(Re)make bin_dir's symlinks: cheap, and it follows a system runc that moved."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in targets.items():
        link = bin_dir / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and os.readlink(link) == str(target):
                continue
            link.unlink()
        if target is not None:
            link.symlink_to(target)


def _system_runc(s: EngineSpec) -> Path:
    found = shutil.which("runc")
    if not found:
        raise EngineUnavailable(
            f"Docker {s.upstream} needs the system's runc (apt-get install runc)"
        )
    return Path(found).resolve()


def _paths_from_bin(s: EngineSpec, bin_dir: Path, seconds: float) -> EnginePaths:
    compose = bin_dir / "docker-compose"
    p = EnginePaths(
        s, bin_dir / "dockerd", bin_dir / "containerd", bin_dir / "containerd-shim-runc-v2",
        bin_dir / "runc", bin_dir / "docker", bin_dir=bin_dir, seconds=seconds,
        compose=compose if os.access(compose, os.X_OK) else None,
    )  # fmt: skip
    for f in (p.dockerd, p.containerd, p.shim, p.runc, p.docker):
        if not os.access(f, os.X_OK):
            raise EngineError(f"Docker {s.upstream}: {f} is missing or not executable")
    return p


# --------------------------------------------------------------------------
# Debian engines (26.1, 28.5)


def _mirror() -> tuple[str, str]:
    """(URI, Signed-By) of the machine's own Debian archive: the first stanza of
    debian.sources (deb822, Debian 12's default), else the first ``deb`` line
    of sources.list, else deb.debian.org; ``$FASTDHCP_DEBIAN_MIRROR`` wins."""
    env = os.environ.get("FASTDHCP_DEBIAN_MIRROR")
    if env:
        return env, DEBIAN_KEYRING
    with contextlib.suppress(OSError):
        stanza = DEBIAN_SOURCES.read_text().strip().split("\n\n")[0]
        fields = {}
        for ln in stanza.splitlines():
            key, _, value = ln.partition(":")
            if not ln.startswith("#") and value:
                fields[key.strip()] = value.strip()
        if fields.get("URIs"):
            return fields["URIs"].split()[0], fields.get("Signed-By", DEBIAN_KEYRING)
    with contextlib.suppress(OSError):
        for ln in Path("/etc/apt/sources.list").read_text().splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", ln)
            if m and "security" not in m.group(1):
                return m.group(1), DEBIAN_KEYRING
    return "http://deb.debian.org/debian", DEBIAN_KEYRING


def _sources(s: EngineSpec) -> str:
    uri, signed_by = _mirror()
    return (f"Types: deb\nURIs: {uri}\nSuites: {s.suite}\nComponents: main\n"
            f"Signed-By: {signed_by}\n")  # fmt: skip


def _debian_key(s: EngineSpec) -> str:
    text = "\n".join([str(LAYOUT), s.suite, *s.packages, s.upstream, _sources(s),
                      platform.machine()])  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _debian_cached(s: EngineSpec) -> bool:
    d = s.cache_dir
    try:
        return (d / "key").read_text().strip() == _debian_key(s) and (d / "root").is_dir()
    except OSError:
        return False


def _apt(d: Path) -> list[str]:
    """apt-get with a private state: our sources only (no system lists, no pins),
    our lists, our package cache."""
    empty = d / "apt" / "empty"
    return [
        "apt-get", "-q",
        "-o", "Dir::Etc::sourcelist=/dev/null",
        "-o", f"Dir::Etc::sourceparts={d / 'apt' / 'src'}",
        "-o", "Dir::Etc::preferences=/dev/null",
        "-o", f"Dir::Etc::preferencesparts={empty}",
        "-o", f"Dir::State::lists={d / 'apt' / 'lists'}",
        "-o", f"Dir::Cache={d / 'apt' / 'cache'}",
        # Root downloads into our 0700 dirs: no "unsandboxed as root" warning.
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def _debian_targets(s: EngineSpec, root: Path) -> dict[str, Path | None]:
    """The bin dir's links into an unpacked Debian engine (plus the system runc)."""
    targets: dict[str, Path | None] = {
        "dockerd": _find(root, "dockerd"),
        "containerd": _find(root, "containerd"),
        "containerd-shim-runc-v2": _find(root, "containerd-shim-runc-v2"),
        "docker": _find(root, "docker"),
        "docker-proxy": _find(root, "docker-proxy"),
        "docker-init": _find(root, "docker-init")
        or _find(root, "tini-static")
        or _find(root, "tini"),
        "runc": _system_runc(s),
        "docker-compose": _find(
            root, "docker-compose", ("usr/libexec/docker/cli-plugins", "usr/bin")
        ),
    }
    missing = [n for n in ("dockerd", "containerd", "containerd-shim-runc-v2", "docker")
               if targets[n] is None]  # fmt: skip
    if missing:
        raise EngineError(
            f"Docker {s.upstream}: unpacked {', '.join(s.packages)} from {s.suite} into {root}, "
            f"but found no {', '.join(missing)} there"
        )
    return targets


def _ensure_debian(s: EngineSpec) -> EnginePaths:
    with _locked(CACHE / f".{s.cache_dir.name}.lock"):
        seconds = 0.0
        if not _debian_cached(s):
            seconds = _fetch_debian(s)
        root = s.cache_dir / "root"
        bin_dir = s.cache_dir / "bin"
        _link_bin(s, bin_dir, _debian_targets(s, root))
        return _paths_from_bin(s, bin_dir, seconds)


def _fetch_debian(s: EngineSpec) -> float:
    """Download the engine's packages from the newer suite with a private apt
    state, unpack them into a fresh dir, check the version, move it into place."""
    started = time.monotonic()
    LOG.info("engine %s: fetching %s from Debian %s into %s",
             s.version, " ".join(s.packages), s.suite, s.cache_dir)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f".{s.cache_dir.name}.new-", dir=CACHE))
    try:
        for sub in ("apt/lists/partial", "apt/cache/archives/partial", "apt/src", "apt/empty",
                    "debs", "root"):  # fmt: skip
            (tmp / sub).mkdir(parents=True)
        (tmp / "apt" / "src" / f"{s.suite}.sources").write_text(_sources(s))
        apt = _apt(tmp)
        # --error-on=any: an unreachable mirror fails here, with apt's reason,
        # not later as "Release 'sid' ... was not found".
        _run(s, f"apt-get update for Debian {s.suite} (private state in {tmp / 'apt'})",
             [*apt, "update", "--error-on=any"])  # fmt: skip
        versions = {}
        for pkg in s.packages:
            _run(s, f"downloading package {pkg} from {s.suite}", [*apt, "download", f"{pkg}/{s.suite}"],
                 cwd=tmp / "debs")  # fmt: skip
            debs = sorted((tmp / "debs").glob(f"{pkg}_*.deb"))
            if len(debs) != 1:
                raise EngineError(
                    f"Docker {s.upstream}: apt-get download {pkg}/{s.suite} left "
                    f"{[d.name for d in debs]} in {tmp / 'debs'}, not one {pkg}_*.deb"
                )
            versions[pkg] = _run(s, f"reading the version of {debs[0].name}",
                                 ["dpkg-deb", "-f", debs[0], "Version"]).stdout.strip()  # fmt: skip
        engine_pkg = s.packages[0]
        have = versions[engine_pkg]
        if not re.match(rf"(\d+:)?{re.escape(s.upstream)}[+~-]", have):
            raise EngineError(
                f"Docker {s.upstream}: Debian {s.suite} now has {engine_pkg} {have}, not "
                f"{s.upstream}: update ENGINES in {__file__} (and what the tests expect of it)"
            )
        for deb in sorted((tmp / "debs").glob("*.deb")):
            _run(s, f"unpacking {deb.name}", ["dpkg-deb", "-x", deb, tmp / "root"])
        _debian_targets(s, tmp / "root")  # every binary is there
        # The lists (about 100 MB for sid) and the .debs are not needed again.
        shutil.rmtree(tmp / "apt")
        shutil.rmtree(tmp / "debs")
        seconds = time.monotonic() - started
        (tmp / "manifest.json").write_text(json.dumps(
            {"suite": s.suite, "packages": versions, "sources": _sources(s),
             "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "seconds": round(seconds, 1)}, indent=1) + "\n")  # fmt: skip
        (tmp / "key").write_text(_debian_key(s) + "\n")
        if s.cache_dir.exists():
            shutil.rmtree(s.cache_dir)
        tmp.rename(s.cache_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    LOG.info("engine %s: fetched and unpacked in %.1fs (%s)", s.version, seconds, versions)
    return seconds


# --------------------------------------------------------------------------
# the engine built from source (29.7)


def _dockerd_version(dockerd: Path) -> str:
    try:
        out = subprocess.run([dockerd, "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout  # fmt: skip
    except OSError:
        return ""
    m = re.search(r"version (\S+?),?\s", out + " ")
    return m.group(1) if m else ""


def _cached_build_ok(s: EngineSpec) -> bool:
    dockerd = s.cache_dir / "bin" / "dockerd"
    return os.access(dockerd, os.X_OK) and _dockerd_version(dockerd) == s.upstream


def _ensure_build(s: EngineSpec) -> EnginePaths:
    # containerd and the CLI come from another engine: that one first, under its own lock.
    base = ensure(s.containerd_from)
    seconds = base.seconds
    with _locked(CACHE / f".{s.cache_dir.name}.lock"):
        if not _cached_build_ok(s):
            seconds += _build(s)
        bin_dir = s.cache_dir / "bin"
        _link_bin(s, bin_dir, {
            "containerd": base.containerd.resolve(),
            "containerd-shim-runc-v2": base.shim.resolve(),
            "docker": base.docker.resolve(),
            "docker-init": (base.bin_dir / "docker-init").resolve() if base.bin_dir else None,
            "runc": _system_runc(s),
        })  # fmt: skip
        return _paths_from_bin(s, bin_dir, seconds)


def _build(s: EngineSpec) -> float:
    shared = shared_engines_dir()
    if shared is None:
        raise EngineUnavailable(unavailable_reason(s.version) or f"no {BUILD_SCRIPT}")
    out = s.cache_dir
    if out.exists():
        # A build of another version, or one that stopped half-way: the script
        # reuses any bin/dockerd it finds, so start from nothing.
        LOG.info("engine %s: removing %s (dockerd there is %r, not %s)",
                 s.version, out, _dockerd_version(out / "bin" / "dockerd"), s.upstream)  # fmt: skip
        shutil.rmtree(out)
    log = CACHE / f"{out.name}.build.log"
    log.unlink(missing_ok=True)
    LOG.info("engine %s: building with %s into %s (log: %s)",
             s.version, shared / BUILD_SCRIPT, out, log)  # fmt: skip
    started = time.monotonic()
    _run(s, f"building from source with {shared / BUILD_SCRIPT} (full log: {log})",
         [shared / BUILD_SCRIPT, out], timeout=BUILD_TIMEOUT, log=log)  # fmt: skip
    seconds = time.monotonic() - started
    have = _dockerd_version(out / "bin" / "dockerd")
    if have != s.upstream:
        raise EngineError(
            f"Docker {s.upstream}: {shared / BUILD_SCRIPT} finished, but {out / 'bin' / 'dockerd'} "
            f"says version {have!r} (log: {log})"
        )
    # The script leaves sid's Go toolchain, its .debs and apt lists (about
    # 400 MB); it reuses a build by bin/dockerd alone, so they can go.
    for sub in ("apt", "debs", "root"):
        shutil.rmtree(out / sub, ignore_errors=True)
    LOG.info("engine %s: built in %.1fs", s.version, seconds)
    return seconds


# --------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(format="engines: %(message)s")
    LOG.setLevel(logging.INFO)  # the commands themselves are DEBUG
    if len(argv) >= 1 and argv[0] == "status":
        for v, state in status().items():
            print(f"{v}: {state}")
        return 0
    if len(argv) >= 2 and argv[0] == "ensure":
        for v in argv[1:] if argv[1:] != ["all"] else ALL_VERSIONS:
            started = time.monotonic()
            try:
                p = ensure(v)
            except EngineError as exc:
                print(f"{v}: {exc}", file=sys.stderr)
                return 1
            print(f"{v}: {time.monotonic() - started:.1f}s  dockerd={p.dockerd} "
                  f"containerd={p.containerd} shim={p.shim} runc={p.runc} docker={p.docker}")  # fmt: skip
        return 0
    print("usage: engines.py status | ensure VERSION... | ensure all", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
