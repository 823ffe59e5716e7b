"""Per-channel linear grids stored as int8 tensors behind DequantizeLinear(axis), not as codebooks.

A per-channel grid written as a codebook costs a float32 codebook per output channel (2^bits entries
each: on the digits CNN 1.37x the bytes of ONNX Runtime's own QDQ model). Instead the graph itself
becomes the QDQ graph the runtime would build (runtime.qdq.to_qdq: integer weights behind
DequantizeLinear with axis 0 and their scale / zero point vectors, QuantizeLinear -> DequantizeLinear
on calibrated activations, int32 biases), and the integer weights are stored losslessly by
compressor.onnx_quantized (an exact codebook of their integer values, Huffman-coded labels, a Cast back
to int8 in the graph). So weights decode straight to int8, ORT fuses the QDQ groups into its int8
kernels, and the NumPy executor runs DequantizeLinear itself. No format change.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from dcz.compressor.state import LayerState


def per_channel_linear(states: Mapping[str, LayerState]) -> bool:
    """True when some weight has a per-channel linear grid (2..8 bits) stored as shared labels."""
    for state in states.values():
        info = state.linear
        if state.shared and info and info.get("axis") is not None and 2 <= int(info.get("bits", 0)) <= 8:
            return True
    return False


def qdq_model(dcz_bytes: bytes) -> tuple[onnx.ModelProto, dict]:
    """(the dense QDQ ONNX model equivalent to a `.dcz` with linear grids, its `compress.linear` metadata)."""
    from dcz import runtime
    from dcz.runtime.qdq import LINEAR_KEY, to_qdq

    loaded = runtime.load(dcz_bytes, backend=None)
    model, rest = to_qdq(loaded.onnx_model, loaded.tensors.decode_all(), loaded.metadata)
    for init in model.graph.initializer:
        if init.name in rest:
            init.CopyFrom(numpy_helper.from_array(np.asarray(rest[init.name]), init.name))
    linear = {LINEAR_KEY: loaded.metadata[LINEAR_KEY]} if LINEAR_KEY in loaded.metadata else {}
    return model, linear
