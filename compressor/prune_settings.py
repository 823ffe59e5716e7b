"""Settings of the training-time pruning methods, with their defaults (torch-free: config.py uses them).

    gmp  gradual magnitude pruning (Zhu & Gupta 2017): every `every` batches the layer's sparsity
         follows the cubic ramp from 0 at `start` to its target at `end` (fractions of the pruning
         training), pruning the smallest surviving magnitudes; masks only shrink.
    dns  dynamic network surgery (Guo, Yao & Chen 2016): weights keep training under the mask
         (straight-through), and with probability (1 + gamma * batch) ** -power per batch the mask
         is spliced: |w| < t (1 - hysteresis) is cut, |w| > t (1 + hysteresis) is revived, in
         between keeps its state; t is the magnitude giving the ramped target sparsity. At `freeze`
         the mask is set to exactly the target (largest |w|) and stops changing.

In a config: {"global": {"prune": "dns", "sparsity": 0.98}, "dns": {"hysteresis": 0.1}}; the
schedule spans prune_steps * prune_epochs epochs of the train loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from dcz.compressor.errors import CompressError


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise CompressError(f"{where}: must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _strict(cls, data: Mapping[str, Any] | None, where: str):
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise CompressError(f"{where}: must be a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise CompressError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
    return cls(**dict(data), where=where) if "where" in known else cls(**dict(data))


@dataclass(frozen=True)
class GmpSettings:
    every: int = 16
    start: float = 0.0
    end: float = 0.7

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise CompressError(f"config.gmp.every: must be an integer >= 1, got {self.every!r}")
        _number("config.gmp.start", self.start, 0.0, 1.0)
        _number("config.gmp.end", self.end, 0.0, 1.0)
        if self.end <= self.start:
            raise CompressError(f"config.gmp.end: must be after start ({self.start:g}), got {self.end!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GmpSettings:
        return _strict(cls, data, "config.gmp")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class DnsSettings:
    hysteresis: float = 0.1
    gamma: float = 1e-3
    power: float = 1.0
    end: float = 0.6
    freeze: float = 0.8

    def __post_init__(self) -> None:
        _number("config.dns.hysteresis", self.hysteresis, 0.0, 0.9)
        _number("config.dns.gamma", self.gamma, 0.0, 1.0)
        _number("config.dns.power", self.power, 0.0, 10.0)
        _number("config.dns.end", self.end, 0.0, 1.0)
        _number("config.dns.freeze", self.freeze, 0.0, 1.0)
        if self.freeze < self.end:
            raise CompressError(f"config.dns.freeze: must be >= end ({self.end:g}), got {self.freeze!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DnsSettings:
        return _strict(cls, data, "config.dns")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
