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
