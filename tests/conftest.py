"""Shared test configuration: hypothesis profiles (as python-zstandard does).

`ci` (the default) runs enough examples for the codec properties to mean something while keeping
the suite within its time budget; `dev` is quicker; `deep` is for long local runs.
Pick one with HYPOTHESIS_PROFILE=deep.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
