"""Run one callable on the compiled path and on the numpy fallback (DCZ_NATIVE=0), for the identity tests
of dcz.formats' core and dcz.compressor's k-means extension."""

from __future__ import annotations

import os


def compiled_and_fallback(monkeypatch, fn):
    """(fn() with the compiled extensions selected, fn() with DCZ_NATIVE=0); the switch is left unset."""
    monkeypatch.delenv("DCZ_NATIVE", raising=False)
    compiled = fn()
    monkeypatch.setenv("DCZ_NATIVE", "0")
    fallback = fn()
    monkeypatch.delenv("DCZ_NATIVE", raising=False)
    return compiled, fallback


def on_both_paths(fn):
    """compiled_and_fallback for hypothesis tests, which cannot take the function-scoped monkeypatch fixture."""
    os.environ.pop("DCZ_NATIVE", None)
    try:
        compiled = fn()
        os.environ["DCZ_NATIVE"] = "0"
        fallback = fn()
    finally:
        os.environ.pop("DCZ_NATIVE", None)
    return compiled, fallback


def flipped_byte_outcomes(good: bytes, outcome, rng, monkeypatch, trials: int, first: int = 16) -> list:
    """`trials` copies of `good`, each with one byte at or after `first` flipped: outcome(copy) must agree on the
    compiled path and the fallback (same symbols or the same error); returns the compiled outcomes."""
    outcomes = []
    for trial in range(trials):
        stream = bytearray(good)
        at = int(rng.integers(first, len(stream)))
        stream[at] ^= int(rng.integers(1, 256))
        compiled, fallback = compiled_and_fallback(monkeypatch, lambda s=bytes(stream): outcome(s))
        assert compiled == fallback, f"trial {trial}: byte {at}"
        outcomes.append(compiled)
    return outcomes
