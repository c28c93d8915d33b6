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

import os
import signal
import subprocess
import time
from pathlib import Path

import lab
from lab_pytest import LogFile

# What systemctl is-system-running answers once boot has ended ("degraded": a
# unit that this container cannot run failed, e.g. one that needs real hardware).
BOOTED = ("running", "degraded")


class Machine(LogFile):
    """``rootfs`` booted with ``interface`` moved into it and ``binds``
    (host path -> path inside) mounted; commands run inside with nsenter."""

    name = "systemd machine"  # for the report hook (tests/conftest.py)

    def __init__(
        self, rootfs: Path, machine: str, interface: str, binds: dict[Path, str], log: Path
    ) -> None:
        self.rootfs, self.machine, self.interface = rootfs, machine, interface
        self.binds, self.log = binds, log
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the container's PID 1, as the host numbers it

    def boot(self, timeout: float = 60.0) -> float:
        """Boot, and return the seconds until systemd said it was up."""
        argv = ["systemd-nspawn", "--boot", f"--directory={self.rootfs}",
                f"--machine={self.machine}", "--register=no", "--keep-unit",
                "--console=read-only", "--private-network",
                "--system-call-filter=bpf",
                *(f"--bind={host}:{inside}" for host, inside in self.binds.items())]  # fmt: skip
        started = time.monotonic()
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        lab.wait_for(self._found_leader, timeout, "the container's systemd")
        # Moved by hand: nspawn's --network-interface= asks udev, which this host
        # has not run ("Network interface ... is not initialized yet").
        lab.run("ip", "link", "set", self.interface, "netns", str(self.leader))
        lab.wait_for(
            lambda: self.systemctl("is-system-running", check=False).stdout.strip() in BOOTED,
            timeout,
            f"systemd booted in {self.machine}",
        )
        return time.monotonic() - started

    def _found_leader(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise lab.LabError(f"systemd-nspawn exited:\n{self.log_tail(30)}")
        children = lab.run("pgrep", "-P", str(self.process.pid), "-x", "systemd", check=False)
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
        return lab.run(*inside, check=check, timeout=timeout, input=input)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "--value", f"--property={prop}", unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "--boot", f"--unit={unit}").stdout

    def poweroff(self, timeout: float = 30.0) -> None:
        """SIGTERM makes nspawn ask the container's systemd for a clean poweroff."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
