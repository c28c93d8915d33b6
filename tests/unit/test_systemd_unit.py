"""packaging/systemd/fastdhcp.service, checked without systemd running.

``systemd-analyze verify`` works here without systemd as PID 1: it loads the
unit as systemd would, and reports unknown keys, bad values and an ExecStart
that is not executable, but it exits 0 for everything except the last, so the
test requires it to print nothing. The unit names /usr/local/bin/fastdhcp,
which need not exist on a test machine: a copy that points ExecStart at the
entry point this suite installed is verified, and the original's directives
are checked one by one."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "fastdhcp.service"
SOCKET = UNIT.with_suffix(".socket")
INSTALLED = "/usr/local/bin/fastdhcp"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values, in order (a systemd key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a directive outside any section: {raw!r}"
        assert not line.endswith("\\"), "no continuation lines: keep each directive on one"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def entry_point() -> str:
    """The ``fastdhcp`` script of the environment running the suite."""
    beside = Path(sys.executable).parent / "fastdhcp"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("fastdhcp")
    if found is None:
        pytest.fail("no fastdhcp entry point installed beside the test interpreter")
    return found


def words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> list[str]:
    return [w for value in unit[section].get(key, []) for w in value.split()]


def test_ordering_and_install(unit: dict[str, dict[str, list[str]]]) -> None:
    # Up before dockerd (its start-up replay), down after it (its releases).
    assert "docker.service" in words(unit, "Unit", "Before")
    assert "docker.service" not in words(unit, "Unit", "After")
    assert {"multi-user.target", "docker.service"} <= set(words(unit, "Install", "WantedBy"))


def test_restart_capabilities_and_state(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service["Restart"] == ["on-failure"]
    # CAP_NET_RAW alone, for a user of its own (tests/systemd proves it enough).
    assert words(unit, "Service", "CapabilityBoundingSet") == ["CAP_NET_RAW"]
    assert words(unit, "Service", "AmbientCapabilities") == ["CAP_NET_RAW"]
    assert service["DynamicUser"] == ["yes"]
    assert service["NoNewPrivileges"] == ["yes"]
    # Nothing may hide the raw socket, netlink or the plugin socket from it.
    assert {"AF_PACKET", "AF_NETLINK", "AF_UNIX"} <= set(
        words(unit, "Service", "RestrictAddressFamilies")
    )
    assert "PrivateNetwork" not in service
    assert service["ProtectSystem"] == ["strict"]
    assert service["StateDirectory"] == ["fastdhcp"]  # systemd makes /var/lib/fastdhcp
    # The socket is systemd's (fastdhcp.socket): the service may not write /run.
    assert "RuntimeDirectory" not in service
    assert words(unit, "Unit", "Requires") == words(unit, "Unit", "After")[:1] == [SOCKET.name]


def test_exec_start_is_the_installed_serve_command(unit: dict[str, dict[str, list[str]]]) -> None:
    (exec_start,) = unit["Service"]["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED
    assert argv[1:] == [
        "--log-level", "info", "serve", "--socket", "/run/docker/plugins/fastdhcp.sock",
        "--state-dir", "/var/lib/fastdhcp",
    ]  # fmt: skip
    # Every option it passes is one that fastdhcp (before serve) or serve has.
    serve_at = argv.index("serve")
    for options, command in ((argv[1:serve_at], []), (argv[serve_at + 1 :], ["serve"])):
        result = subprocess.run(
            [entry_point(), *command, "--help"], capture_output=True, text=True, check=True
        )
        for option in (a for a in options if a.startswith("--")):
            assert option in result.stdout


def systemd_analyze() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze is missing (apt-get install systemd)"
        if os.environ.get("FASTDHCP_REQUIRE_LAB") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return analyze


def test_the_socket_unit_makes_the_socket_serve_is_told(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    socket_unit = parse_unit(SOCKET.read_text())
    (listen,) = socket_unit["Socket"]["ListenStream"]
    argv = shlex.split(unit["Service"]["ExecStart"][0])
    assert argv[argv.index("--socket") + 1] == listen
    assert socket_unit["Socket"]["SocketMode"] == ["0600"]  # dockerd is root
    assert "docker.service" in words(socket_unit, "Unit", "Before")
    assert words(unit, "Install", "Also") == [SOCKET.name]


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    copy = tmp_path / "fastdhcp.service"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED} ") == 1
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={entry_point()} "))
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy), str(tmp_path / SOCKET.name)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_security_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    # Issue 14's target, rated by systemd's own scale (0 is locked down, 10 is
    # root with everything). Printed, so that the README's figure can be checked.
    analyze = systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for fastdhcp.service: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"\nsystemd-analyze security --offline=true: exposure {found[1]}")
    assert float(found[1]) <= 1.5, result.stdout
