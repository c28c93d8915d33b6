"""Build the compiled extensions.

The package works without them (on the pure-Python codec), so a failed compile
is reported and the install goes on, unless FASTDHCP_REQUIRE_EXTENSIONS=1 (the
test command sets it, so CI never passes on the fallback by accident).
FASTDHCP_NO_EXTENSIONS=1 skips the compile altogether.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = os.environ.get("FASTDHCP_NO_EXTENSIONS") == "1"
REQUIRE_EXTENSIONS = os.environ.get("FASTDHCP_REQUIRE_EXTENSIONS") == "1"

# Strict C warnings, all of them errors: the generated code is ours to keep clean.
# Cython's own output trips -Wunused-function (helpers it emits but the module
# does not call), so that one warning alone is left on but not fatal.
STRICT_FLAGS = [
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-error=unused-function",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]


class OptionalBuildExt(build_ext):
    """Report a failed compile and go on without the extensions."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self._fallback(exc)

    def _fallback(self, exc):
        if REQUIRE_EXTENSIONS:
            raise exc
        print(
            f"WARNING: fastdhcp's C extensions failed to build ({exc}); "
            "installing the pure-Python codec instead",
            file=sys.stderr,
        )


def extensions():
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    codec = Extension(
        "fastdhcp._codec",
        sources=["src/fastdhcp/_codec.pyx", "csrc/checksum.c"],
        include_dirs=["csrc"],
        extra_compile_args=STRICT_FLAGS,
    )
    rawsock = Extension(
        "fastdhcp._rawsock",
        sources=["src/fastdhcp/_rawsock.pyx", "csrc/rawsock.c"],
        include_dirs=["csrc"],
        extra_compile_args=STRICT_FLAGS,
    )
    return cythonize(
        [codec, rawsock],
        compiler_directives={"language_level": "3"},
        include_path=["src"],
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
