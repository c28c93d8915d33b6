"""The soak tests use the integration lab's fixtures as they are (root check,
stale-lab cleanup, ``segment``, ``require``): loaded from tests/integration/conftest.py
rather than copied, under a name of their own so that pytest's ``conftest`` modules
do not clash.

Soak tests are marked ``soak`` and deselected by default (pyproject's addopts);
run them with ``pytest -m soak tests/soak`` (root, kea-dhcp4 installed).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def _integration_conftest() -> object:
    spec = importlib.util.spec_from_file_location(
        "fastdhcp_integration_conftest", INTEGRATION / "conftest.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {INTEGRATION / 'conftest.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_integration = _integration_conftest()  # also puts tests/integration on sys.path
lab_session = _integration.lab_session  # type: ignore[attr-defined]
require = _integration.require  # type: ignore[attr-defined]
segment = _integration.segment  # type: ignore[attr-defined]
