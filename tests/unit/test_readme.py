"""The README says what the code does: every command line it shows parses with
the real CLI, every --ipam-opt key and metric it lists exists (and none is left
out), and every lease event is documented."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fastdhcp import cli
from fastdhcp.conflict import ProberStats
from fastdhcp.engine import EngineStats
from fastdhcp.ipam import options as pool_options
from fastdhcp.metrics import LEASE_EVENTS, Metrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()

# A placeholder in a synopsis, and what to put in its place to parse it.
PLACEHOLDERS = {"IFACE": "eth0", "ADDRESS": "10.99.1.7", "PATH": "/tmp/x.sock",
                "DIR": "/tmp/state", "S": "5", "L": "info", "ADDR:PORT": "127.0.0.1:9464"}  # fmt: skip


def _command_lines() -> list[str]:
    """Every line of a code block that runs fastdhcp (indented or fenced)."""
    lines = []
    for raw in README.splitlines():
        line = raw.strip()
        for prefix in ("sudo ", "pip install . && "):
            line = line.removeprefix(prefix)
        if line.startswith("fastdhcp ") and raw.startswith("    "):
            lines.append(line)
    # A synopsis may continue on the next, deeper-indented line.
    text = README.replace("\n             [", " [")
    return sorted(
        {*lines, *(m.group(1) for m in re.finditer(r"^    (fastdhcp .*)$", text, re.MULTILINE))}
    )


def _concrete(line: str) -> list[str]:
    """A synopsis as one concrete command: optional parts kept, choices resolved."""
    line = line.split(" && ")[0]
    line = re.sub(r"\[(--[\w-]+)( [^\]]+)?\]", r"\1\2", line)  # [--opt ARG] -> --opt ARG
    line = line.replace("text|json", "json")
    words = shlex.split(line)[1:]
    return [PLACEHOLDERS.get(word, word) for word in words]


@pytest.mark.parametrize("line", _command_lines())
def test_every_command_line_parses(line: str) -> None:
    try:
        cli._parser().parse_args(_concrete(line))
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"README command does not parse ({exc}): {line}")


def test_there_are_command_lines_to_check() -> None:
    subcommands = {"serve", "probe", "leases", "status", "release"}
    shown = {word for line in _command_lines() for word in _concrete(line) if word in subcommands}
    assert shown == subcommands


def test_every_ipam_opt_key_is_documented_and_no_other() -> None:
    table = re.findall(r"^\| `(\w+)=", README, re.MULTILINE)
    assert sorted(table) == sorted(pool_options.KEYS)


def test_every_metric_listed_exists_and_every_metric_is_listed() -> None:
    metrics = Metrics()
    metrics.watch(
        lambda: {("p", "bound"): 1},
        lambda: {"eth0": EngineStats()},
        lambda: {"eth0": ProberStats()},
    )
    types = re.findall(r"^# TYPE (\w+) ", metrics.exposition().decode(), re.MULTILINE)
    exposed = {name.removesuffix("_total") for name in types}
    section = README[README.index("**Metrics.**") : README.index("**Logs.**")]
    listed = set(re.findall(r"`(fastdhcp_\w+)", section))
    # "..._sent_total" abbreviates a sibling's prefix.
    listed |= {"fastdhcp_packets" + m for m in re.findall(r"`\.\.\.(_\w+)`", section)}
    listed = {name.removesuffix("_total") for name in listed}
    assert listed == exposed


def test_every_lease_event_is_documented() -> None:
    section = README[README.index("**Metrics.**") : README.index("**Logs.**")]
    assert all(f"`{event}`" in section for event in LEASE_EVENTS)
