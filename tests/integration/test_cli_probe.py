"""``fastdhcp probe`` as an operator runs it, against both servers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import lab
import pytest

pytestmark = pytest.mark.root


def fastdhcp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastdhcp", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_probe_json_reports_the_offer(segment: lab.Segment, dhcp_server: Any) -> None:
    result = fastdhcp("probe", segment.host_if, "--json", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["subnet"] == "10.99.0.0/16"
    assert report["router"] == segment.server_ip
    assert report["server_id"] == segment.server_ip
    assert report["lease_time"] == 120
    # A probe never REQUESTs: the server holds no lease afterwards.
    assert dhcp_server.leases() == []


def test_probe_text_output(segment: lab.Segment, dhcp_server: Any) -> None:
    result = fastdhcp("probe", segment.host_if)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["subnet"] == "10.99.0.0/16" and lines["server_id"] == segment.server_ip


def test_probe_with_server_takes_only_that_servers_offer(
    segment: lab.Segment, dhcp_server: Any
) -> None:
    trusted = fastdhcp("probe", segment.host_if, "--json", "--server", segment.server_ip)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["server_id"] == segment.server_ip
    other = fastdhcp("probe", segment.host_if, "--server", "10.99.0.77", "--timeout", "2")
    assert other.returncode == 1 and other.stdout == ""
    ignored = rf"ignored \d+ DHCPOFFER from {segment.server_ip} \(only 10.99.0.77 is trusted\)"
    assert re.search(ignored, other.stderr), other.stderr


def test_probe_without_a_server_fails_clearly(segment: lab.Segment) -> None:
    result = fastdhcp("probe", segment.host_if, "--timeout", "2")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no DHCPOFFER" in result.stderr and segment.host_if in result.stderr
    assert "received nothing" in result.stderr


def test_probe_of_a_missing_interface(lab_session: None) -> None:
    result = fastdhcp("probe", "fdtnope0", "--timeout", "1")
    assert result.returncode == 1
    assert result.stderr.strip() == "fastdhcp probe: no such interface: fdtnope0"


def test_probe_rejects_a_bad_timeout() -> None:
    result = fastdhcp("probe", "lo", "--timeout", "-1")
    assert result.returncode == 2 and "not a positive number" in result.stderr
