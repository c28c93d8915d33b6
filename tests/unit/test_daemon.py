"""``fastdhcp serve`` as a process: its socket, a second copy, SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("plugin", timeout=5)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)  # a listener that never answers fails the test
        self.sock.connect(self.path)


def post(path: Path, endpoint: str, body: bytes = b"") -> tuple[int, dict[str, object]]:
    connection = UnixHTTPConnection(path)
    try:
        connection.request("POST", endpoint, body=body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def start(sock: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fastdhcp", "--log-level", "info", "serve",
         "--socket", str(sock), "--state-dir", str(state)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_socket(sock: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if post(sock, "/Plugin.Activate")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("serve never answered")


def stop(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, and serve's stderr once it exited. A serve that does not stop in
    time gets SIGABRT, and the stacks it prints (faulthandler) fail the test."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        stacks = process.communicate(timeout=30)[1]
        raise AssertionError(f"serve did not stop within {timeout} s:\n{stacks}") from None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[str]]]:
    sock, state = tmp_path / "plugins" / "fastdhcp.sock", tmp_path / "state"
    process = start(sock, state)
    try:
        wait_for_socket(sock, process)
        yield sock, state, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_socket_is_owner_only_and_answers(daemon: tuple[Path, Path, subprocess.Popen[str]]) -> None:
    sock, state, _ = daemon
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert post(sock, "/Plugin.Activate") == (200, {"Implements": ["IpamDriver"]})


def test_a_second_serve_leaves_the_live_socket_alone(
    daemon: tuple[Path, Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    sock, _, _ = daemon
    second = start(sock, tmp_path / "other-state")
    _, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert "served by another running process" in err
    assert post(sock, "/Plugin.Activate")[0] == 200  # the first still serves


def test_sigterm_stops_cleanly_and_keeps_the_store(
    daemon: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    sock, state, process = daemon
    err = stop(process)
    assert process.returncode == 0, err
    assert "leases are kept" in err
    assert not sock.exists()
    assert (state / "leases.sqlite3").exists()


def test_a_stale_socket_from_a_crash_is_replaced(tmp_path: Path) -> None:
    sock, state = tmp_path / "fastdhcp.sock", tmp_path / "state"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: what SIGKILL leaves
    process = start(sock, state)
    try:
        wait_for_socket(sock, process)
    finally:
        err = stop(process)
    assert "replacing the stale socket" in err


def test_a_corrupt_store_stops_start_up_clearly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "leases.sqlite3").write_bytes(b"not a database, but somebody's leases" * 100)
    before = (state / "leases.sqlite3").read_bytes()
    process = start(tmp_path / "fastdhcp.sock", state)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "fastdhcp serve:" in err and "never empties a store" in err
    assert (state / "leases.sqlite3").read_bytes() == before
    assert os.path.exists(state / "leases.sqlite3")


def test_a_burst_of_connections_waits_in_the_queue_while_serve_is_busy(
    daemon: tuple[Path, Path, subprocess.Popen[str]],
) -> None:
    # dockerd (Go) and asyncio both fail a unix connect() that finds the accept
    # queue full (EAGAIN). Stopped, serve accepts nothing: 1,000 connects must
    # still all be queued by the kernel, not refused.
    sock, _, process = daemon
    process.send_signal(signal.SIGSTOP)
    clients: list[socket.socket] = []
    try:
        for _ in range(1000):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            clients.append(client)
            client.connect(str(sock))  # BlockingIOError here if the queue is full
    finally:
        process.send_signal(signal.SIGCONT)
        for client in clients:
            client.close()
    assert post(sock, "/Plugin.Activate")[0] == 200


def test_a_second_serve_on_the_same_state_dir_touches_nothing(
    daemon: tuple[Path, Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    from ipaddress import IPv4Address

    from fastdhcp.store import PendingRequest, PoolRecord, Store

    sock, state, first = daemon
    # A request the first serve is in the middle of: a second serve that settled
    # it would send a DHCPRELEASE for an address the first is acquiring.
    store = Store.open(state)
    store.add_pool(PoolRecord("pool-1", "lo", "10.0.0.0/24"))
    pending = PendingRequest("pool-1", bytes.fromhex("02420a000009"), IPv4Address("10.0.0.9"),
                             IPv4Address("10.0.0.1"), bytes.fromhex("525400000001"))  # fmt: skip
    store.put_pending(pending)
    other_sock = tmp_path / "other" / "fastdhcp.sock"
    second = start(other_sock, state)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"state dir {state} is in use by fastdhcp serve (pid {first.pid})" in err, err
    assert not other_sock.exists()
    assert store.pending() == [pending]  # not settled
    store.close()
    assert post(sock, "/Plugin.Activate")[0] == 200  # the first still serves


def test_the_state_dir_lock_goes_with_its_owner(tmp_path: Path) -> None:
    from fastdhcp.owner import OwnerError, StateDirOwner

    state = tmp_path / "state"
    with StateDirOwner.claim(state), pytest.raises(OwnerError, match=f"pid {os.getpid()}"):
        StateDirOwner.claim(state)
    with StateDirOwner.claim(state):  # released on exit: claimable again
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def start_activated(
    listening: socket.socket, socket_arg: Path, state: Path
) -> subprocess.Popen[str]:
    """serve as systemd starts it with fastdhcp.socket: the listening socket as
    file descriptor 3, LISTEN_PID naming serve's own pid, LISTEN_FDS=1."""
    fd = listening.fileno()
    as_systemd = (
        "import os, sys; fd = int(sys.argv[1]);"
        " fd != 3 and (os.dup2(fd, 3), os.close(fd));"
        " os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1');"
        " os.execv(sys.executable, [sys.executable, '-m', 'fastdhcp', *sys.argv[2:]])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", as_systemd, str(fd), "--log-level", "info",
         "serve", "--socket", str(socket_arg), "--state-dir", str(state)],
        stderr=subprocess.PIPE, text=True, pass_fds=(fd,),
    )  # fmt: skip


def test_a_socket_from_systemd_is_served_and_left_in_place(tmp_path: Path) -> None:
    sock = tmp_path / "fastdhcp.sock"
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(sock))
    listening.listen()
    process = start_activated(listening, sock, tmp_path / "state")
    try:
        wait_for_socket(sock, process)
    finally:
        err = stop(process)
    assert process.returncode == 0, err
    # systemd's socket outlives the service: still there, and still listening
    # (a restart finds dockerd's calls queued on it).
    assert sock.exists()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as caller:
        caller.connect(str(sock))
    listening.close()


def test_a_socket_from_systemd_elsewhere_than_socket_is_refused(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(tmp_path / "systemd.sock"))
    listening.listen()
    with listening:
        process = start_activated(listening, tmp_path / "fastdhcp.sock", tmp_path / "state")
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"systemd passed a socket on {tmp_path / 'systemd.sock'}, but --socket is" in err


def test_a_bad_dhcp_interface_is_refused_before_anything_starts(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "fastdhcp", "serve", "--socket", str(tmp_path / "s.sock"),
            "--state-dir", str(tmp_path / "state"), "--dhcp-interface"]  # fmt: skip
    for bad, words in (("eth/0", "'eth/0' is not an interface name"), ("x" * 16, "at most 15")):
        result = subprocess.run(
            [*argv, bad], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 2 and words in result.stderr, result.stderr
    assert not (tmp_path / "state").exists()  # nothing made
