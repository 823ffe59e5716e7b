"""DCZ runtime: load a .dcz, decode it lazily and run it in ONNX Runtime or a NumPy executor.

    model = runtime.load("lenet.dcz", backend="ort")       # or backend="numpy", sparse=True
    logits, = model.run(images)                              # dict name -> array, or one array
    runtime.export_onnx("lenet.dcz", "lenet.onnx")           # dense ONNX for other runtimes

Depends on numpy, `formats`, onnx and onnxruntime; never on torch or scikit-learn
(`pip install .[runtime]`). Errors: `formats.FormatError` for a damaged file (passed through
unchanged), `runtime.DczRuntimeError` for everything the runtime checks; both are ValueErrors.
"""
from .errors import DczRuntimeError
from .export import export_onnx
from .model import Model, load

__all__ = ["DczRuntimeError", "Model", "export_onnx", "load"]

# Every submodule, so tests/test_boundaries.py can import them all in a fresh interpreter.
__all_modules__ = [
    "runtime.errors",
    "runtime.export",
    "runtime.lazy",
    "runtime.model",
    "runtime.onnx_graph",
    "runtime.ort_backend",
    "runtime.validate",
    "runtime.numpy_exec",
    "runtime.numpy_exec.executor",
    "runtime.numpy_exec.ops_nn",
    "runtime.numpy_exec.ops_tensor",
    "runtime.numpy_exec.registry",
    "runtime.numpy_exec.sparse",
    "runtime.numpy_exec.windows",
]
