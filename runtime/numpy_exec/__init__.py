"""NumPy backend: an ONNX executor with one registered function per op, and sparse FC layers."""

from .executor import NumpyExecutor
from .registry import register, supported_ops
from .sparse import CsrRows, matmul_transposed

__all__ = ["NumpyExecutor", "CsrRows", "matmul_transposed", "register", "supported_ops"]
