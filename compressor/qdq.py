"""Static activation scales from calibration data, with ONNX Runtime's own calibrators.

`calibrate` runs `onnxruntime.quantization.quantize_static` (QDQ format, int8) on the float model
with the caller's data and method (minmax, entropy = KL-divergence threshold search, percentile) and
reads back the scale / zero point of every activation it chose to quantize (the inputs of its
QuantizeLinear nodes): the same activations, scales and zero points as ORT's own QDQ model. The
weights are quantized by compressor.linear instead (so they can be pruned and Huffman-coded); the
runtime (runtime/qdq.py) rebuilds the QDQ graph from both.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from dcz.compressor.errors import CompressError
from dcz.compressor.onnx_graph import input_names

METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS_KEY = "compress.activations"
DYNAMIC_KEY = "compress.dynamic"  # activations quantized at run time (runtime/qdq_dynamic.py)


def load_calibration(path, input_names: list[str]) -> dict[str, np.ndarray]:
    """The calibration arrays of an .npz / .npy (no pickle): one per model input, or a single array for one input."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):  # an .npy: the one input's samples
            arrays = {"x": data}
        else:
            with data:
                arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as error:
        raise CompressError(f"--calib {path}: not a readable .npz ({error})".splitlines()[0]) from error
    if len(arrays) == 1 and len(input_names) == 1:
        return {input_names[0]: next(iter(arrays.values()))}
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise CompressError(f"--calib {path}: no array for model input(s) {', '.join(missing)}")
    return {n: arrays[n] for n in input_names}


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over arrays, in batches."""

    def __init__(self, arrays: dict[str, np.ndarray], most: int = 64):
        count = len(next(iter(arrays.values())))
        # equal batches: ORT's histogram collectors (entropy, percentile) fail on a short last batch
        batch = max(d for d in range(1, min(most, max(count, 1)) + 1) if count % d == 0)
        self._batches = iter(
            [
                {n: a[i : i + batch].astype(np.float32, copy=False) for n, a in arrays.items()}
                for i in range(0, count, batch)
            ]
        )

    def get_next(self):
        return next(self._batches, None)


@contextmanager
def _quiet_root_logger():
    """ORT's quantization tool gives advice through the root logger ("Please consider to run
    pre-processing ..."), and `logging.warning` installs a stderr handler on a root logger that has
    none: neither should reach our user, nor precede DCZ's one-line error."""
    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)  # a root logger with a handler is not configured behind the program's back
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(null)


def calibrate(model: onnx.ModelProto, data, method: str = "entropy") -> dict[str, dict]:
    """{activation name: {"scale", "zero_point", "dtype"}} from ORT's quantize_static on `data`.

    data: a path to an .npz or {input name: array}; method: minmax | entropy | percentile.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise CompressError(f"calib_method: must be one of {', '.join(METHODS)}; got {method!r}")
    names = input_names(model)
    arrays = load_calibration(data, names) if isinstance(data, (str, Path)) else dict(data)
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    calib["percentile"] = CalibrationMethod.Percentile
    with tempfile.TemporaryDirectory(prefix="dcz-calib-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(model, str(src))
        try:
            with _quiet_root_logger():
                quantize_static(
                    str(src),
                    str(dst),
                    _Reader(arrays),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=calib[method],
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
        except Exception as error:  # ORT raises many types: one line naming the step
            raise CompressError(f"calibration ({method}): {type(error).__name__}: {error}".splitlines()[0]) from error
        qdq = onnx.load(str(dst))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    tensors = {v.name for v in model.graph.input} | {o for n in model.graph.node for o in n.output}
    found = {}
    for node in qdq.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits:
            continue
        name = node.input[0]
        if name not in tensors:  # ORT renames a quantized graph output T to T_QuantizeLinear_Input
            name = name.removesuffix("_QuantizeLinear_Input")
            if name not in tensors:
                continue
        scale, zero = inits[node.input[1]], inits[node.input[2]]
        found[name] = {
            "scale": float(np.float32(scale.reshape(-1)[0])),
            "zero_point": int(zero.reshape(-1)[0]),
            "dtype": "int8" if zero.dtype == np.int8 else "uint8",
        }
    return found
