"""The README's docker-run benchmark, run once each way, so that it keeps working
(the figures are the README's; here only that it runs and writes them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def test_docker_run_benchmark_runs_once(e2e_session: None, tmp_path: Path) -> None:
    out = tmp_path / "docker_run.json"
    done = subprocess.run(
        [sys.executable, "bench/docker_run.py", "--runs", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {peer: len(times) for peer, times in results["times"].items()} == {
        "fastdhcp": 1,
        "default IPAM": 1,
    }
    assert results["ratio"] > 0
