"""formats: the versioned .dcz file of DCZ (numpy + bitarray + stdlib only).

    formats.write(path, tensors, graph=b"", graph_format="onnx", metadata=None, huffman=True,
                  chunk_symbols=None) -> SizeReport      (chunk_symbols=0: a version 1.0 file)
    formats.dumps(...) -> bytes;  formats.open(path) / formats.loads(buf) -> DczFile
    DczFile.tensor(name), .tensors(names=None) (batched decode), .csr(name) (pruned: no dense array)

formats/SPEC.md specifies every byte; FormatError is the only error this package raises (DenseBudgetError,
one of them, carries the figures of a file over `max_dense_bytes`).
"""

from .errors import DenseBudgetError, FormatError
from .layout import VERSION
from .reader import DczFile, TensorInfo, loads
from .reader import open_file as open  # noqa: A001 - the contract names it formats.open
from .report import SizeReport, TensorSizes
from .tensors import Raw, Shared, Sparse, SparseShared
from .writer import dumps, write

__all__ = [
    "FormatError",
    "DenseBudgetError",
    "Raw",
    "Sparse",
    "Shared",
    "SparseShared",
    "write",
    "dumps",
    "open",
    "loads",
    "DczFile",
    "TensorInfo",
    "SizeReport",
    "TensorSizes",
    "VERSION",
]
