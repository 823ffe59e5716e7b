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


def compiled_switch(module, missing: str):
    """(core, describe) for a compiled extension that may be missing (None, with `missing` saying why).

    core() is the module when it is built and not disabled by DCZ_NATIVE=0, else None; describe() is
    'compiled' or 'numpy (why)'. Shared by every compiled extension of the package (dcz.compressor too)."""

    def core():
        if module is None or os.environ.get("DCZ_NATIVE", "") == "0":
            return None
        return module

    def describe() -> str:
        if module is None:
            return f"numpy ({missing})"
        return "numpy (DCZ_NATIVE=0)" if core() is None else "compiled"

    return core, describe


# describe() is what `dcz --version` prints after 'decoder:'
core, describe = compiled_switch(_core, _missing)
