"""LabProcess, the wrapper every lab process goes through: what a start failure
and an ignored SIGTERM look like. Plain shell processes, no root needed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from labprocess import LabError, LabProcess


class Shell(LabProcess):
    label = "shell"
    ready_timeout = 5.0
    stop_timeout = 0.5

    def __init__(self, log_file: Path, script: str) -> None:
        super().__init__(log_file)
        self.script = script

    def argv(self) -> list[str]:
        return ["sh", "-c", self.script]

    def _ready(self) -> bool:
        return "up" in self.log_text().splitlines()


def test_start_waits_until_ready_and_stop_returns_the_status(tmp_path: Path) -> None:
    with Shell(tmp_path / "out", "trap 'exit 3' TERM; echo up; while :; do sleep 0.05; done") as sh:
        assert sh.running and sh.pid
        assert sh.log_text().startswith("--- start sh -c ")
        assert sh.stop() == 3
    assert not sh.running


def test_an_exit_before_ready_raises_with_the_log_tail(tmp_path: Path) -> None:
    sh = Shell(tmp_path / "out", "echo 'no config here'; exit 2")
    with pytest.raises(LabError, match=r"(?s)shell exited with 2 before it was ready.*no config"):
        sh.start()
    assert not sh.running


def test_a_readiness_timeout_kills_and_raises(tmp_path: Path) -> None:
    sh = Shell(tmp_path / "out", "echo waiting; sleep 30")
    sh.ready_timeout = 0.3
    with pytest.raises(LabError, match=r"(?s)timed out after 0.3s.*waiting"):
        sh.start()
    assert sh.returncode == -signal.SIGKILL


def test_an_ignored_sigterm_is_an_error_when_strict(tmp_path: Path) -> None:
    sh = Shell(tmp_path / "out", "trap '' TERM; echo up; while :; do sleep 0.05; done")
    sh.start()
    with pytest.raises(LabError, match="ignored signal 15"):
        sh.stop()
    assert sh.returncode == -signal.SIGKILL


def test_an_ignored_sigterm_is_only_escalated_when_not_strict(tmp_path: Path) -> None:
    sh = Shell(tmp_path / "out", "trap '' TERM; echo up; while :; do sleep 0.05; done")
    sh.strict_stop = False
    sh.start()
    assert sh.stop() == -signal.SIGKILL
    sh.kill()  # nothing left to kill: no error
