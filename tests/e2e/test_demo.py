"""The README's demo command works, and leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import lab
import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_and_cleans_up(e2e_session: None) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--no-wait"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every container holds the address dnsmasq leased to its MAC" in result.stdout
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("demo") and not line.startswith("demo:")]
    assert len(rows) == 3
    assert not [name for name in lab.netns_list() if name.startswith("fdemo")]
    links = lab.run("ip", "-o", "link").stdout
    assert "fdemo" not in links
    assert not list(Path("/run/docker/plugins").glob("fastdhcp-demo-*"))
