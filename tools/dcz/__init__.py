"""DCZ: Deep Compression (prune, trained quantization, Huffman coding) as a toolkit.

Compress a trained network to a `.dcz` file and run it straight from that file::

    import dcz
    result = dcz.compress("model.onnx", out="model.dcz")        # an ONNX file: no torch needed
    result = dcz.compress(torch_module, example_input, config)  # a PyTorch module (torch loads lazily)
    model = dcz.load("model.dcz")                               # ONNX Runtime, or backend="numpy"
    logits, = model.run(images)
    with dcz.open("model.dcz") as f:                            # the file itself: tensors, sizes
        weight = f.tensor("fc1.weight")
    pruner = dcz.Pruner(torch_module, config)                   # or prune inside your own training loop:
    model = pruner.prepare()                                    # prepare / step / finalize (README)

`import dcz` imports numpy and the file format only; torch, scikit-learn, onnx and onnxruntime are
imported when an attribute that needs them is first used. Every error DCZ raises on bad input is a
`dcz.DczError` (a ValueError) whose message says what is wrong and where.
"""

from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

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

if _TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from dcz._api import compress
    from dcz.compressor.budget.config import BudgetConfig, OnnxSearchConfig
    from dcz.compressor.config import CompressConfig, LayerConfig
    from dcz.compressor.errors import CompressError
    from dcz.compressor.loop import Palettizer, Pruner
    from dcz.compressor.result import Compressed
    from dcz.runtime import Model, export_onnx, load
    from dcz.runtime.errors import DczRuntimeError

# name -> module defining it, imported on first use: the compressor and the runtime stay unloaded
# (and with them torch, onnx and onnxruntime) until a program asks for them. The modules defining
# Compressed, Pruner and Palettizer import torch only inside their methods, so resolving every name,
# as `from dcz import *` does, imports no torch either; the rest need numpy (and onnx / onnxruntime to run).
_LAZY = {
    "compress": "dcz._api",
    "CompressConfig": "dcz.compressor.config",
    "LayerConfig": "dcz.compressor.config",
    "BudgetConfig": "dcz.compressor.budget.config",
    "OnnxSearchConfig": "dcz.compressor.budget.config",
    "Compressed": "dcz.compressor.result",
    "Pruner": "dcz.compressor.loop",
    "Palettizer": "dcz.compressor.loop",
    "CompressError": "dcz.compressor.errors",
    "DczRuntimeError": "dcz.runtime.errors",
    "load": "dcz.runtime",
    "Model": "dcz.runtime",
    "export_onnx": "dcz.runtime",
}

__all__ = [
    # compress: in one call, or inside your own training loop
    "compress",
    "CompressConfig",
    "LayerConfig",
    "BudgetConfig",
    "OnnxSearchConfig",
    "Compressed",
    "Pruner",
    "Palettizer",
    # run a .dcz
    "load",
    "Model",
    "export_onnx",
    # the file itself
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
    # errors: every one is a DczError (a ValueError)
    "DczError",
    "FormatError",
    "CompressError",
    "DczRuntimeError",
]

# The subpackages, public too: imported by `import dcz.<name>`, not by `import dcz`.
_SUBPACKAGES = ("checkpoint", "cli", "compressor", "demo", "formats", "runtime")


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        value = getattr(_import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dcz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBPACKAGES})
