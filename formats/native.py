"""Which implementation runs the hot loops: the compiled core (formats/_native) or numpy.

The compiled core is built by the package's own build (setup.py, a C99 extension) and used
whenever it imports; `DCZ_NATIVE=0` forces the numpy path (bitarray and the lock-step walk), which
stays as the tested fallback for installs without a C compiler. Both give identical arrays and bytes.
"""

from __future__ import annotations

import os

try:
    from . import _native as _core
except ImportError as error:  # built without a compiler, or a source checkout never built
    _core = None
    _missing = f"compiled core not built: {error}"
else:
    _missing = ""


def core():
    """The compiled module when it is built and not disabled by DCZ_NATIVE=0, else None."""
    if _core is None or os.environ.get("DCZ_NATIVE", "") == "0":
        return None
    return _core


def describe() -> str:
    """'compiled', or 'numpy (why)': what `dcz --version` prints after 'decoder:'."""
    if _core is None:
        return f"numpy ({_missing})"
    if os.environ.get("DCZ_NATIVE", "") == "0":
        return "numpy (DCZ_NATIVE=0)"
    return "compiled"
