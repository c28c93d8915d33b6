"""``python -m build`` makes an sdist and a wheel, and the sdist builds the
compiled extensions on a machine without Cython: pyproject declares Cython as a
build requirement, so pip brings it into the isolated build environment.

Slow (two compiles, and PyPI for the build requirements and dependencies:
about a minute and a half in all here), hence the ``packaging`` marker. Every
build here requires the extensions (FASTDHCP_REQUIRE_EXTENSIONS=1), whatever
the suite's own FASTDHCP_NO_EXTENSIONS says."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from fastdhcp import __version__

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
NAME = f"fastdhcp-{__version__}"


def build_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTDHCP_NO_EXTENSIONS"}
    env["FASTDHCP_REQUIRE_EXTENSIONS"] = "1"
    return env


def run(*argv: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=build_env(),
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"sdist": ..., "wheel": ...}: ``python -m build`` (the sdist, then the
    wheel built from the unpacked sdist, so the wheel proves the sdist whole)."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    print(f"\npython -m build took {time.monotonic() - started:.1f} s", file=sys.stderr)
    (sdist,) = out.glob("fastdhcp-*.tar.gz")
    (wheel,) = out.glob("fastdhcp-*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_sdist_carries_the_sources_and_not_the_generated_c(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.removeprefix(f"{NAME}/") for n in tar.getnames()}
    needed = {
        "pyproject.toml", "setup.py", "README.md", "PKG-INFO",
        "csrc/checksum.c", "csrc/checksum.h", "csrc/rawsock.c", "csrc/rawsock.h",
        "src/fastdhcp/_codec.pyx", "src/fastdhcp/_rawsock.pyx", "src/fastdhcp/_wire.pxd",
        "src/fastdhcp/_csock.pxd",
        "src/fastdhcp/_codec.pyi", "src/fastdhcp/_rawsock.pyi", "src/fastdhcp/py.typed",
        "src/fastdhcp/_codec_py.py", "src/fastdhcp/_rawsock_py.py", "src/fastdhcp/ipam/http.py",
        "packaging/plugin/config.json", "packaging/systemd/fastdhcp.service",
    }  # fmt: skip
    assert needed <= names, sorted(needed - names)
    # Every module of the checkout is in it.
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "src" / "fastdhcp").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert not {n for n in names if n.endswith((".so", ".pyc"))}
    assert "src/fastdhcp/_codec.c" not in names and "src/fastdhcp/_rawsock.c" not in names


def test_wheel_carries_the_extensions_stubs_and_entry_point(dists: dict[str, Path]) -> None:
    wheel = dists["wheel"]
    # A platform wheel for this CPython: it carries compiled code.
    assert wheel.name.startswith(f"{NAME}-cp3") and "-linux_" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(f"{NAME}.dist-info/entry_points.txt").decode()
    for ext in ("_codec", "_rawsock"):
        assert any(n.startswith(f"fastdhcp/{ext}.cpython-") and n.endswith(".so") for n in names)
        assert f"fastdhcp/{ext}.pyi" in names
    assert "fastdhcp/py.typed" in names
    assert "fastdhcp = fastdhcp.cli:main" in entry_points
    assert not {n for n in names if n.endswith(".c")}


def test_sdist_compiles_in_a_venv_without_cython(dists: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    no_cython = subprocess.run(
        [python, "-c", "import Cython"], capture_output=True, cwd=tmp_path, check=False
    )
    assert no_cython.returncode != 0, "the fresh venv must not have Cython"

    started = time.monotonic()
    run(python, "-m", "pip", "install", "-q", dists["sdist"], cwd=tmp_path)
    print(f"\npip install of the sdist took {time.monotonic() - started:.1f} s", file=sys.stderr)

    # From tmp_path, so that nothing of the checkout is on sys.path.
    result = run(
        python, "-c",
        "import fastdhcp, fastdhcp.codec as c; print(c.IMPLEMENTATION); print(fastdhcp.__file__)",
        cwd=tmp_path,
    )  # fmt: skip
    implementation, location = result.stdout.split()
    assert implementation == "cython"
    assert Path(location).is_relative_to(venv)
    version = run(venv / "bin" / "fastdhcp", "--version", cwd=tmp_path).stdout.split()
    assert version == ["fastdhcp", __version__]
    # Cython was there for the build only (pip's isolated build environment).
    still_none = subprocess.run(
        [python, "-c", "import Cython"], capture_output=True, cwd=tmp_path, check=False
    )
    assert still_none.returncode != 0
