"""Value checks shared by the config classes (compressor.config, compressor.budget.config), and
`StrictConfig`, their keys / from_dict / to_dict.

Each check returns the value or raises a one-line CompressError naming where the value came from, e.g.
``config.global.bits: must be an integer in 1..8, got 0``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

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


class StrictConfig:
    """keys / from_dict / to_dict of a strict config: a frozen dataclass whose `where` field (the path its
    errors name, e.g. "config.by_name.fc1") defaults to the config's root path.

    from_dict rejects unknown keys (the dataclass's __post_init__ checks the values) and builds the
    fields listed in NESTED from their own plain data; to_dict gives plain JSON-able data (settings
    left at None omitted, tuples as lists), so that `from_dict(to_dict())` gives an equal config.
    """

    NESTED: ClassVar[dict[str, type[StrictConfig]]] = {}

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "where"]

    @classmethod
    def root(cls) -> str:
        """The path errors name when from_dict is given none: the default of the `where` field."""
        return next(f.default for f in fields(cls) if f.name == "where")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str | None = None):
        """Build from plain data (JSON / TOML); unknown keys and impossible values raise CompressError."""
        where = cls.root() if where is None else where
        data = {} if data is None else data
        reject_unknown(where, data, cls.keys())
        kwargs = dict(data)
        for key, kind in cls.NESTED.items():
            if kwargs.get(key) is not None:
                kwargs[key] = kind.from_dict(kwargs[key], f"{where}.{key}")
        return cls(**kwargs, where=where)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for key in self.keys():
            value = getattr(self, key)
            if isinstance(value, StrictConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[key] = value
        return out
