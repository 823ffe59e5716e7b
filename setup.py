"""The compiled core (formats/_native: entropy coding; compressor/_native: the k-means step). Everything else about the package is in pyproject.toml.

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
            sources=["formats/_native/huffman.c", "formats/_native/range.c"],
            extra_compile_args=["-std=c99", "-O3"],
            optional=not REQUIRED,
        ),
        Extension(
            "dcz.compressor._kmeans",
            sources=["compressor/_native/kmeans.c"],
            # no fused multiply-add: the sums must round exactly as the numpy fallback's
            extra_compile_args=["-std=c99", "-O3", "-ffp-contract=off"],
            optional=not REQUIRED,
        ),
    ]
)
