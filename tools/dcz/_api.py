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
    out: str | os.PathLike | None = None,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
):
    """Compress `model` as `config` says (a CompressConfig, a dict for it, or None for the defaults).

    model          an ONNX model (path, bytes or onnx.ModelProto: no torch needed) or a torch.nn.Module.
    example_input  for a torch module: a tensor (or tuple) the model runs on; unused for ONNX.
    out            write the `.dcz` there (atomically); otherwise call `.save(path)` on the result
                   (PyTorch) or read the bytes from `.dcz` (ONNX).
    options        for an ONNX model, `calib=` (.npz path or {input: array}) and `calib_method=` (minmax,
                   entropy, percentile): static int8 activation scales (compressor.qdq), or `dynamic=True`:
                   activations quantized at run time; for a torch module, `train_loader=`, `eval_fn=`, `loss_fn=`, ... as
                   `dcz.compressor.pipeline.compress` takes them.
    """
    from dcz.compressor.errors import CompressError

    if _is_onnx(model):
        calibration = {k: options.pop(k) for k in ("calib", "calib_method", "dynamic") if k in options}
        if options:
            raise CompressError(
                f"compressing an ONNX model takes no {', '.join(sorted(options))}: they need a torch module"
            )
        from dcz.compressor.onnx_in import compress_onnx

        return compress_onnx(model, config, out_path=out, metadata=metadata, **calibration)
    if example_input is None:
        raise CompressError("compressing a torch module needs example_input (a tensor the model runs on)")
    from dcz.compressor.pipeline import compress as compress_torch

    result = compress_torch(model, example_input, config, **options)
    if out is not None:
        result.save(out, metadata=metadata)
    return result
