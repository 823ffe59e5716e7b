"""DCZ compressor: prune, share weights (trained quantization), fine-tune and export to .dcz.

    from dcz.compressor import CompressConfig, compress
    config = CompressConfig.from_dict({
        "global": {"prune": "sparsity", "sparsity": 0.9},         # every layer: drop 90% by magnitude
        "by_type": {"conv": {"bits": 8}, "fc": {"bits": 5}},       # the paper's codebook sizes
        "by_name": {"fc3.weight": {"sparsity": 0.75}},             # one layer differs
        "prune_steps": 3, "prune_epochs": 2, "share_epochs": 2, "distill_temperature": 4.0})
    result = compress(model, example_input, config, train_loader=loader, eval_fn=my_accuracy)
    result.accuracy            # {'dense': .., 'pruned': .., 'pruned+finetuned': .., 'shared': .., 'shared+finetuned': ..}
    result.skipped             # weights kept raw, with the reason
    result.save("model.dcz")   # formats.SizeReport

Inside your own training loop instead: `Pruner(model, config)` / `Palettizer(model, config)` with
prepare() / step() / finalize() (compressor.loop), the same masks, codebooks and config.

Importing `compressor` pulls in neither torch nor scikit-learn: the ONNX-in path and the config
objects work without them. The torch parts (`compress`, `Compressed`, `Pruner`, `Palettizer`, `linear_input_moments`: the input
moments a checkpoint's `--calib` takes) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dcz.compressor.config import CompressConfig, LayerConfig
from dcz.compressor.errors import CompressError
from dcz.compressor.kmeans import kmeans_1d
from dcz.compressor.state import LayerState

# name -> module that defines it, imported lazily because these need torch.
_LAZY = {
    "compress": "dcz.compressor.pipeline",
    "Compressed": "dcz.compressor.result",
    "Pruner": "dcz.compressor.loop",
    "Palettizer": "dcz.compressor.loop",
    "linear_input_moments": "dcz.compressor.moments",
    "save_moments": "dcz.compressor.moments",
}

__all__ = ["CompressConfig", "LayerConfig", "CompressError", "LayerState", "kmeans_1d", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
