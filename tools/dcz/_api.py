"""`dcz.compress`: one entry point for ONNX models and PyTorch modules alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def _is_onnx(model: Any) -> bool:
    if isinstance(model, (str, os.PathLike, bytes, bytearray)):
        return True
    return type(model).__name__ == "ModelProto"  # onnx.ModelProto, without importing onnx


def compress(
    model: Any,
    example_input: Any = None,
    config: Any = None,
    *,
    budget: Any = None,
    max_loss: float | None = None,
    out: str | os.PathLike | None = None,
    metadata: Mapping[str, Any] | None = None,
    range_coding: bool = False,
    compact_container: bool = False,
    **options: Any,
):
    """Compress `model` as `config` says (a CompressConfig, a dict for it, or None for the defaults),
    or into a size budget.

    model          an ONNX model (path, bytes or onnx.ModelProto: no torch needed) or a torch.nn.Module.
    example_input  for a torch module: a tensor (or tuple) the model runs on; unused for ONNX.
    budget         instead of config: the least damage within a byte budget (the whole file), given as a
                   BudgetConfig, a dict for it, or a number of bytes; the solver chooses each layer's
                   sparsity and bits (dcz.compressor.budget). ONNX models need `calib=` for it and also
                   take an OnnxSearchConfig (e.g. a loss target: OnnxSearchConfig(max_loss=0.5)).
    max_loss       instead of config or budget: the smallest file whose loss on `calib=` stays within it
                   (pp of top-1 with integer labels, relative output error without). ONNX: calib= is an .npz
                   path or {input: array} (+ 'y'); torch: x or (x, y) tensors, and `train_loader=` adds
                   centroid fine-tuning (dcz.compressor.budget.loss_target.fit_max_loss takes the options).
    out            write the `.dcz` there (atomically); otherwise call `.save(path)` on the result
                   (PyTorch) or read the bytes from `.dcz` (ONNX).
    range_coding   streams also try format 1.3's adaptive range coding and keep it where smaller (files a
                   pre-1.3 reader cannot open; not with budget / max_loss). A torch result's `.save` takes it too.
    compact_container  format 1.4's compact container (binary tensor table, varint directory, no padding) and the
                   graph as `onnx.deflate`: ~1 KB less per file (pre-1.4 readers cannot open it; not with budget /
                   max_loss). A torch result's `.save` takes it too.
    options        for an ONNX model, `calib=` (.npz path or {input: array}) and `calib_method=` (minmax,
                   entropy, percentile): static int8 activation scales (compressor.qdq), or `dynamic=True`:
                   activations quantized at run time; with a budget, `calib=` is the data damage is measured
                   on. For a torch module, `train_loader=`, `eval_fn=`, `loss_fn=`, ... as
                   `dcz.compressor.pipeline.compress` takes them, or with a budget as
                   `dcz.compressor.budget.fit.fit_budget` takes them (`calib=`, `train_loader=`, ...).
    """
    from dcz.compressor.errors import CompressError

    if range_coding and (max_loss is not None or budget is not None):
        raise CompressError("range_coding: not with budget / max_loss (their solvers size Huffman-coded streams)")
    if compact_container and (max_loss is not None or budget is not None):
        raise CompressError("compact_container: not with budget / max_loss (their solvers size the 1.0 container)")
    if max_loss is not None:
        if config is not None or budget is not None:
            raise CompressError("give one of config, budget and max_loss: they are three ways to choose the settings")
        return _compress_to_loss(model, example_input, max_loss, out, metadata, options)
    if budget is not None:
        if config is not None:
            raise CompressError(
                "give config or budget, not both: with a budget the solver chooses every layer's settings"
            )
        return _compress_to_budget(model, example_input, budget, out, metadata, options)
    if _is_onnx(model):
        calibration = {k: options.pop(k) for k in ("calib", "calib_method", "dynamic") if k in options}
        if options:
            raise CompressError(
                f"compressing an ONNX model takes no {', '.join(sorted(options))}: they need a torch module"
            )
        from dcz.compressor.onnx_in import compress_onnx

        return compress_onnx(
            model,
            config,
            out_path=out,
            metadata=metadata,
            range_coding=range_coding,
            compact_container=compact_container,
            **calibration,
        )
    if example_input is None:
        raise CompressError("compressing a torch module needs example_input (a tensor the model runs on)")
    from dcz.compressor.pipeline import compress as compress_torch

    result = compress_torch(model, example_input, config, **options)
    if out is not None:
        result.save(out, metadata=metadata, range_coding=range_coding, compact_container=compact_container)
    return result


def _compress_to_budget(model, example_input, budget, out, metadata, options: dict[str, Any]):
    """The budget solver: ONNX models by measured damage in ONNX Runtime, torch modules by Fisher damage."""
    from dcz.compressor.budget.config import as_budget_config, as_onnx_search_config
    from dcz.compressor.errors import CompressError

    if _is_onnx(model):
        extra = sorted(set(options) - {"calib", "progress"})
        if extra or metadata:
            unknown = ", ".join(extra + (["metadata"] if metadata else []))
            raise CompressError(f"compressing an ONNX model to a budget takes no {unknown}; give calib= only")
        if "calib" not in options:
            raise CompressError("compressing an ONNX model to a budget needs calib= (.npz path or {input: array})")
        from dcz.compressor.budget.onnx_search import fit_onnx

        return fit_onnx(
            model,
            options["calib"],
            as_onnx_search_config(budget),
            out_path=None if out is None else os.fspath(out),
            progress=options.get("progress"),
        )
    if example_input is None:
        raise CompressError("compressing a torch module needs example_input (a tensor the model runs on)")
    from dcz.compressor.budget.fit import fit_budget

    result = fit_budget(model, example_input, as_budget_config(budget), metadata=dict(metadata or {}), **options)
    if out is not None:
        result.save(out)
    return result


def _compress_to_loss(model, example_input, max_loss, out, metadata, options: dict[str, Any]):
    """The smallest file within a loss on calibration data: ONNX by ONNX Runtime, torch modules by torch."""
    from dcz.compressor.errors import CompressError

    if "calib" not in options:
        raise CompressError("max_loss is measured on calibration data: give calib= as well")
    if _is_onnx(model):
        extra = sorted(set(options) - {"calib", "progress"})
        if extra or metadata:
            unknown = ", ".join(extra + (["metadata"] if metadata else []))
            raise CompressError(f"compressing an ONNX model to a max_loss takes no {unknown}; give calib= only")
        from dcz.compressor.budget.config import OnnxSearchConfig
        from dcz.compressor.budget.onnx_search import fit_onnx

        return fit_onnx(
            model,
            options["calib"],
            OnnxSearchConfig(max_loss=max_loss),
            out_path=None if out is None else os.fspath(out),
            progress=options.get("progress"),
        )
    if example_input is None:
        raise CompressError("compressing a torch module needs example_input (a tensor the model runs on)")
    from dcz.compressor.budget.loss_target import fit_max_loss

    result = fit_max_loss(model, example_input, max_loss, metadata=dict(metadata or {}), **options)
    if out is not None:
        result.save(out)
    return result
