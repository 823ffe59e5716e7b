"""Input second moments H = E[x x^T] of an ONNX model's MatMul / Gemm weights, from ONNX Runtime.

What the error-feedback labels (compressor/gptq.py) and the codebook refit (compressor/refit.py)
need of a layer y = x W: the second moment of its input over the calibration data. As
onnxruntime.quantization's calibrators do, the graph is augmented with each weight's input tensor as
an extra output, and one session runs the calibration data batch by batch; each batch's x^T x is
accumulated in float64 (the product itself in float32 over at most a few thousand rows, summed in
float64 across batches), so memory is one batch's activations plus one (in, in) float64 matrix per
distinct input, whatever the number of samples. Weights reading the same input (a transformer's
query, key and value) share one moment.

Padding: when the model has a 2-D int input named `attention_mask` (the Hugging Face convention)
and a weight's input is (batch, sequence, features) with those two leading dimensions, only the rows
where the mask is non-zero count: padded positions never reach a pooled output, and on short
sentences padded to 32 tokens they are most of the rows.

Only 2-D weights in the usual places are covered: MatMul(x, W) (x's last axis meets W's rows) and
Gemm(A, B) with transA = 0 (B or B^T meets A's columns). Anything else has no moment and keeps
nearest-centroid labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from dcz.compressor.calib_data import Calibration
from dcz.compressor.errors import CompressError

MOMENT_BATCH = 64  # calibration rows per ORT run
MASK_INPUT = "attention_mask"


@dataclass(frozen=True)
class WeightInput:
    """How one weight meets its input: `transposed` means the stored weight is (out, in) (Gemm transB=1)."""

    weight: str
    input: str
    transposed: bool


def weight_inputs(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> dict[str, WeightInput]:
    """weight -> the tensor it multiplies, for the 2-D MatMul / Gemm weights used exactly once."""
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    found = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in weights or node.input[0] in weights:
            continue
        name = node.input[1]
        if np.ndim(weights[name]) != 2 or uses.get(name) != 1:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "MatMul":
            found[name] = WeightInput(name, node.input[0], False)
        elif node.op_type == "Gemm" and not attrs.get("transA", 0):
            found[name] = WeightInput(name, node.input[0], bool(attrs.get("transB", 0)))
    return found


def input_moments(
    model: onnx.ModelProto,
    calib: Calibration,
    links: Mapping[str, WeightInput],
    batch: int | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """{weight: E[x x^T] float64 (in, in)} over the calibration rows (padding left out, above), `batch`
    rows per run (default MOMENT_BATCH, or the model's fixed batch size)."""
    import onnxruntime as ort

    from dcz.compressor.onnx_damage import batch_size_of

    batch = batch or min(MOMENT_BATCH, batch_size_of(model))

    tensors = sorted({link.input for link in links.values()})
    if not tensors:
        return {}
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    listed = {v.name for v in augmented.graph.output}
    for name in tensors:
        if name not in listed:
            augmented.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(augmented.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own types: one line
        raise CompressError(f"ONNX Runtime cannot load the model for input moments: {error}".splitlines()[0]) from None
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = dict.fromkeys(tensors, 0)
    mask_all = calib.inputs.get(MASK_INPUT)
    for start in range(0, calib.rows, batch):
        feeds = {name: a[start : start + batch] for name, a in calib.inputs.items()}
        try:
            outputs = session.run(tensors, feeds)
        except Exception as error:
            raise CompressError(
                f"ONNX Runtime failed on the calibration data (rows {start}..): {error}".splitlines()[0]
            ) from None
        mask = None if mask_all is None or mask_all.ndim != 2 else mask_all[start : start + batch]
        for name, x in zip(tensors, outputs):
            rows = _rows(np.asarray(x), mask)
            product = rows.T @ rows  # float32 over one batch, summed in float64 below
            sums[name] = sums[name] + product if name in sums else product.astype(np.float64)
            counts[name] += rows.shape[0]
    means = {name: total / counts[name] for name, total in sums.items() if counts[name]}
    return {weight: means[link.input] for weight, link in links.items() if link.input in means}  # shared, not copied


def _rows(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The input as (rows, features) float32, padded positions left out when the mask lines up."""
    if x.ndim < 2:
        x = x.reshape(1, -1)
    if mask is not None and x.ndim == 3 and x.shape[:2] == mask.shape:
        return np.ascontiguousarray(x[mask != 0], dtype=np.float32)
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
