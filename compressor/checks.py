"""Value checks shared by the config classes (compressor.config, compressor.budget.config).

Each returns the value or raises a one-line CompressError naming where the value came from, e.g.
``config.global.bits: must be an integer in 1..8, got 0``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcz.compressor.errors import CompressError


def fail(where: str, message: str) -> CompressError:
    return CompressError(f"{where}: {message}")


def check_int(where: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(where, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"in {low}..{high}" if high is not None else f">= {low}"
        raise fail(where, f"must be an integer {span}, got {value!r}")
    return value


def check_float(
    where: str, value: Any, low: float, high: float | None = None, *, high_open: bool = False, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise fail(where, f"must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = (
            f"in {left}{low:g}, {high:g}{right}" if high is not None else (f"> {low:g}" if low_open else f">= {low:g}")
        )
        raise fail(where, f"must be {span}, got {value!r}")
    return value


def check_choice(where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise fail(where, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(where, f"must be true or false, got {value!r}")
    return value


def reject_unknown(where: str, given: Mapping[str, Any], known: list[str]) -> None:
    if not isinstance(given, Mapping):
        raise fail(where, f"must be a mapping, got {type(given).__name__}")
    for key in given:
        if key not in known:
            raise CompressError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
