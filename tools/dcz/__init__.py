"""DCZ: Deep Compression (prune, trained quantization, Huffman coding) as a toolkit.

Compress a trained network to a `.dcz` file and run it straight from that file::

    import dcz
    result = dcz.compress("model.onnx", out="model.dcz")        # an ONNX file: no torch needed
    result = dcz.compress(torch_module, example_input, config)  # a PyTorch module (torch loads lazily)
    model = dcz.load("model.dcz")                               # ONNX Runtime, or backend="numpy"
    logits, = model.run(images)
    with dcz.open("model.dcz") as f:                            # the file itself: tensors, sizes
        weight = f.tensor("fc1.weight")

`import dcz` imports numpy and the file format only; torch, scikit-learn, onnx and onnxruntime are
imported when an attribute that needs them is first used. Every error DCZ raises on bad input is a
`dcz.DczError` (a ValueError) whose message says what is wrong and where.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from dcz.formats import (
    DczFile,
    Raw,
    Shared,
    SizeReport,
    Sparse,
    SparseShared,
    dumps,
    loads,
    write,
)
from dcz.formats import open as open  # noqa: A004 - dcz.open(path) is the documented name
from dcz.formats.errors import DczError, FormatError

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from dcz._api import compress
    from dcz.compressor.config import CompressConfig, LayerConfig
    from dcz.compressor.errors import CompressError
    from dcz.runtime import Model, export_onnx, load
    from dcz.runtime.errors import DczRuntimeError

# name -> module defining it, imported on first use: the compressor and the runtime stay unloaded
# (and with them torch, onnx and onnxruntime) until a program asks for them.
_LAZY = {
    "compress": "dcz._api",
    "CompressConfig": "dcz.compressor.config",
    "LayerConfig": "dcz.compressor.config",
    "CompressError": "dcz.compressor.errors",
    "DczRuntimeError": "dcz.runtime.errors",
    "load": "dcz.runtime",
    "Model": "dcz.runtime",
    "export_onnx": "dcz.runtime",
}

__all__ = [
    # compress
    "compress",
    "CompressConfig",
    "LayerConfig",
    # run
    "load",
    "Model",
    "export_onnx",
    # the file
    "open",
    "loads",
    "write",
    "dumps",
    "DczFile",
    "SizeReport",
    "Raw",
    "Sparse",
    "Shared",
    "SparseShared",
    # errors
    "DczError",
    "FormatError",
    "CompressError",
    "DczRuntimeError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dcz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
