"""DCZ runtime: load a .dcz, decode it lazily and run it in ONNX Runtime or a NumPy executor.

Depends on numpy, `formats`, onnx and onnxruntime; never on torch or scikit-learn.
"""
from .errors import DczRuntimeError

__all__ = ["DczRuntimeError"]
