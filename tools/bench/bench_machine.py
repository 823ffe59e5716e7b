"""The machine and library versions a benchmark ran on, for the benchmark pages' headers."""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
from pathlib import Path

PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "bitarray", "sklearn", "zstandard")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (falls back to platform.processor())."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def ram_gib() -> float:
    """Total physical memory in GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def versions() -> dict[str, str]:
    """Versions of python and of the packages the figures depend on ('absent' if not importable)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            found[name] = "absent"
    return found


def describe() -> dict:
    """Everything the header prints: machine, versions, UTC date."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def to_markdown(info: dict) -> str:
    """Two lines: machine, then versions."""
    vers = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, {info['os']}\n"
        f"- Versions: {vers}\n"
        f"- Date: {info['date_utc']}\n"
    )
