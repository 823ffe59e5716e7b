"""DCZ compressor: prune, share weights (trained quantization), fine-tune and export to .dcz.

Importing `compressor` pulls in neither torch nor scikit-learn: the ONNX-in path and the config
objects work without them. The torch pipeline (`compress`, `Compressed`) loads on first use.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from compressor.config import CompressConfig, LayerConfig
from compressor.errors import CompressError
from compressor.kmeans import kmeans_1d
from compressor.state import LayerState

# name -> module that defines it, imported lazily because these need torch.
_LAZY = {
    "compress": "compressor.pipeline",
    "Compressed": "compressor.pipeline",
}

__all__ = ["CompressConfig", "LayerConfig", "CompressError", "LayerState", "kmeans_1d", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'compressor' has no attribute {name!r}")
