"""A real systemd, booted as PID 1 of a container, to run packaging/systemd's
unit as a host would.

systemd-nspawn, not dockerd: both boot Debian 12's systemd here in under a second,
but a container with systemd as its init needs `docker run --privileged`, which
fails on this kind of machine ("unable to apply caps: operation not permitted":
the host's bounding set lacks CAP_SYS_RESOURCE), and without it a list of
capabilities, tmpfs mounts, the host's cgroup tree and a shell wrapper to make /
shared. nspawn needs one flag more than its defaults: --keep-unit, since the
host's PID 1 is not systemd and there is no bus to register the machine on.

--system-call-filter=bpf: nspawn's own filter refuses bpf(2), and without it
the container's systemd cannot load the cgroup programs of IPAddressDeny= (it
logs "BPF firewalling is not supported" and runs the unit unfenced).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import labprocess
from labprocess import LabProcess

# What systemctl is-system-running answers once boot has ended ("degraded": a
# unit that this container cannot run failed, e.g. one that needs real hardware).
BOOTED = ("running", "degraded")


class Machine(LabProcess):
    """``rootfs`` booted with ``interface`` moved into it and ``binds``
    (host path -> path inside) mounted; commands run inside with nsenter."""

    name = label = "systemd machine"  # name: for the report hook (tests/conftest.py)
    mark_start = False
    # Its own session, so that the SIGKILL after an ignored poweroff reaches
    # nspawn's whole process group.
    new_session = True
    kill_group = True
    strict_stop = False
    stop_timeout = 30.0

    def __init__(
        self, rootfs: Path, machine: str, interface: str, binds: dict[Path, str], log: Path
    ) -> None:
        super().__init__(log)
        self.rootfs, self.machine, self.interface = rootfs, machine, interface
        self.binds = binds
        self.leader = 0  # the container's PID 1, as the host numbers it

    def argv(self) -> list[str]:
        return ["systemd-nspawn", "--boot", f"--directory={self.rootfs}",
                f"--machine={self.machine}", "--register=no", "--keep-unit",
                "--console=read-only", "--private-network",
                "--system-call-filter=bpf",
                *(f"--bind={host}:{inside}" for host, inside in self.binds.items())]  # fmt: skip

    def ready_what(self) -> str:
        return "the container's systemd"

    def boot(self, timeout: float = 60.0) -> float:
        """Boot, and return the seconds until systemd said it was up."""
        started = time.monotonic()
        self.ready_timeout = timeout
        self.start()  # until the container's systemd exists: _ready
        # Moved by hand: nspawn's --network-interface= asks udev, which this host
        # has not run ("Network interface ... is not initialized yet").
        labprocess.run("ip", "link", "set", self.interface, "netns", str(self.leader))
        labprocess.wait_for(
            lambda: self.systemctl("is-system-running", check=False).stdout.strip() in BOOTED,
            timeout,
            f"systemd booted in {self.machine}",
        )
        return time.monotonic() - started

    def _ready(self) -> bool:
        assert self.proc is not None
        children = labprocess.run("pgrep", "-P", str(self.proc.pid), "-x", "systemd", check=False)
        if children.returncode == 0:
            self.leader = int(children.stdout.split()[0])
        return self.leader != 0

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as root in every namespace of the container, its environment
        clean (the host's PATH and PYTHON* would leak in otherwise)."""
        inside = ["nsenter", f"--target={self.leader}", "--all",
                  "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "LANG=C.UTF-8", *argv]  # fmt: skip
        return labprocess.run(*inside, check=check, timeout=timeout, input=input)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "--value", f"--property={prop}", unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "--boot", f"--unit={unit}").stdout

    def poweroff(self, timeout: float = 30.0) -> None:
        """SIGTERM makes nspawn ask the container's systemd for a clean poweroff."""
        self.stop(timeout)
