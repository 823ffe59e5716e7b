"""Shared test configuration: hypothesis profiles (as python-zstandard does).

`ci` (the default) runs enough examples for the codec properties to mean something while keeping
the suite within its time budget; `dev` is quicker; `deep` is for long local runs.
Pick one with HYPOTHESIS_PROFILE=deep.
"""

import os

# The suite's models are tiny: extra BLAS / torch threads only contend on CI's 2 shared cores
# (a tiny compress() measured 17 s with 2 threads, 0.6 s with 1). Set before torch or numpy's
# BLAS initialise; an explicit setting in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
