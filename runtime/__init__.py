"""DCZ runtime: load a .dcz, decode it lazily and run it in ONNX Runtime or a NumPy executor.

    model = dcz.runtime.load("lenet.dcz", backend="ort")       # or backend="numpy", sparse=True
    logits, = model.run(images)                              # dict name -> array, or one array
    dcz.runtime.export_onnx("lenet.dcz", "lenet.onnx")           # dense ONNX for other runtimes

Depends on numpy, `formats`, onnx and onnxruntime; never on torch or scikit-learn
(`pip install .[runtime]`). Errors: `formats.FormatError` for a damaged file (passed through
unchanged), `runtime.DczRuntimeError` for everything the runtime checks; both are ValueErrors.
"""

from importlib import import_module
from typing import Any

from .errors import DczRuntimeError

# name -> submodule; imported on first use so that `import dcz` does not load onnx.
_LAZY = {"Model": ".model", "load": ".model", "export_onnx": ".export"}

__all__ = ["DczRuntimeError", "Model", "export_onnx", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
