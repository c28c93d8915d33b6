"""Fixtures shared by the whole suite.

Every codec test takes the ``codec`` fixture and so runs once per implementation:
``cython`` (``fastdhcp._codec``) and ``python`` (``fastdhcp._codec_py``), like
aiohttp's c-parser / py-parser ids. With ``FASTDHCP_NO_EXTENSIONS=1`` the Cython
leg is skipped, since that run checks the package without its extensions.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

NO_EXTENSIONS = os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1"
CAPTURES = Path(__file__).resolve().parent / "data" / "captures"


def load_codec(name: str) -> ModuleType:
    if name == "python":
        return importlib.import_module("fastdhcp._codec_py")
    if NO_EXTENSIONS:
        pytest.skip("FASTDHCP_NO_EXTENSIONS=1: the compiled codec is not under test")
    return importlib.import_module("fastdhcp._codec")


@pytest.fixture(params=["cython", "python"], scope="session")
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """One codec implementation; every test using it runs against both."""
    return load_codec(request.param)


@pytest.fixture(scope="session")
def both_codecs() -> tuple[ModuleType, ModuleType]:
    """(cython, python), for tests that compare the two directly."""
    return load_codec("cython"), load_codec("python")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the log tail of every lab daemon it used (DHCP servers,
    dockerd, plugins: tests/integration/lab_pytest.attach)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for daemon in item.__dict__.get("_lab_daemons", []):
            report.sections.append(
                (f"{daemon.name} log tail ({daemon.log_file})", daemon.log_tail(60))
            )
