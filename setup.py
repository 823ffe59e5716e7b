"""The compiled core. Everything else about the package is in pyproject.toml.

Without a C compiler the extension is skipped (optional) and DCZ runs its numpy path; CI sets
DCZ_REQUIRE_NATIVE=1 so that a failed build fails the install instead.
"""

import os

from setuptools import Extension, setup

REQUIRED = os.environ.get("DCZ_REQUIRE_NATIVE", "") == "1"

setup(
    ext_modules=[
        Extension(
            "dcz.formats._native",
            sources=["formats/_native/huffman.c"],
            extra_compile_args=["-std=c99", "-O3"],
            optional=not REQUIRED,
        )
    ]
)
