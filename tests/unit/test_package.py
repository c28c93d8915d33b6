"""The package as installed: which codec loads, the fallback, the public names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastdhcp
from fastdhcp import codec, spec

ROOT = Path(__file__).resolve().parents[2]


def test_implementation_matches_the_environment() -> None:
    # The test command builds with FASTDHCP_REQUIRE_EXTENSIONS=1, so outside the
    # no-extensions leg the compiled codec must be the one in use.
    expected = "python" if os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1" else "cython"
    assert codec.IMPLEMENTATION == expected
    assert fastdhcp.IMPLEMENTATION == expected
    module = "fastdhcp._codec_py" if expected == "python" else "fastdhcp._codec"
    assert fastdhcp.decode.__module__ == module or fastdhcp.Message.__module__ == module


def test_public_names_are_reexported() -> None:
    for name in codec.__all__:
        assert getattr(fastdhcp, name) is getattr(codec, name)
    assert issubclass(fastdhcp.DecodeError, ValueError)
    assert issubclass(fastdhcp.EncodeError, fastdhcp.FastDHCPError)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FASTDHCP_NO_EXTENSIONS"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, check=True
    )


def test_a_broken_extension_falls_back_with_one_warning() -> None:
    # Make the compiled module unimportable, as on a machine where it failed to
    # load (wrong ABI, missing file): the package must still work, and say so once.
    result = _run(
        "import sys, logging; logging.basicConfig();"
        "sys.modules['fastdhcp._codec'] = None;"
        "import fastdhcp; from fastdhcp import codec;"
        "print(codec.IMPLEMENTATION);"
        "m = fastdhcp.decode(fastdhcp.encode(fastdhcp.Message(xid=7)));"
        "print(m.xid)"
    )
    assert result.stdout.split() == ["python", "7"]
    warnings = [line for line in result.stderr.splitlines() if "pure-Python codec" in line]
    assert len(warnings) == 1, result.stderr


def test_no_extensions_variable_forces_the_reference_codec() -> None:
    result = _run(
        "import logging; logging.basicConfig(); from fastdhcp import codec;"
        "print(codec.IMPLEMENTATION)",
        FASTDHCP_NO_EXTENSIONS="1",
    )
    assert result.stdout.strip() == "python"
    assert result.stderr == ""  # chosen on purpose: nothing to warn about


def test_spec_timer_constants() -> None:
    # RFC 2131 §4.4.5: T1 = 0.5 and T2 = 0.875 of the lease (not the CNI plugin's 0.85).
    assert spec.T1_FACTOR == 0.5
    assert spec.T2_FACTOR == 0.875
    assert spec.MAGIC_COOKIE.to_bytes(4, "big") == bytes((99, 130, 83, 99))  # RFC 2131 §3
    assert spec.HEADER_LEN == 240


def test_types_check_with_mypy_strict() -> None:
    # The stubs of the compiled module and the package's annotations, checked
    # as users' type checkers will see them (STYLE.md: mypy run by the tests).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            str(ROOT / "src" / "fastdhcp"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compiled_module_matches_its_stub() -> None:
    if codec.IMPLEMENTATION != "cython":
        import pytest

        pytest.skip("the compiled codec is not loaded")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "fastdhcp._codec",
            "fastdhcp._rawsock",
            "--allowlist",
            str(ROOT / "tests" / "stubtest-allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        # Check the very package this test imported (installed, or src/ in a
        # developer's tree), whatever the working directory and PYTHONPATH say.
        env={**os.environ, "PYTHONPATH": str(Path(fastdhcp.__file__).parents[1])},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_packet_sockets_batch_as_many_frames_as_the_c_helper() -> None:
    # FD_MAX_BATCH in csrc/rawsock.h sizes the compiled socket's stack arrays;
    # the pure-Python socket and the outbox (through rawsock.MAX_BATCH) agree.
    from fastdhcp import _rawsock_py, outbox, rawsock

    header = (ROOT / "csrc" / "rawsock.h").read_text()
    defined = int(header.split("#define FD_MAX_BATCH", 1)[1].split()[0])
    assert _rawsock_py.MAX_BATCH == defined
    assert outbox.MAX_BATCH == rawsock.MAX_BATCH == defined
    if rawsock.IMPLEMENTATION == "cython":
        from fastdhcp import _rawsock

        assert _rawsock.MAX_BATCH == defined
