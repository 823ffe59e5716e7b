"""Weights that are already quantized: int8 / uint8 initializers read through DequantizeLinear.

A QDQ model (onnxruntime.quantization.quantize_static and the like) keeps each weight as an 8-bit
integer tensor with its scale and zero point, calibrated together with the activations. Changing
a single integer would change what the model computes, so these weights are only ever stored
losslessly: the codebook is the tensor's distinct integer values (exact in float32), the labels
are Huffman-coded. That pays only when the integers' entropy is well below 8 bits; otherwise the
tensor stays in the graph as it was. The stored float32 tensor is read through a Cast back to
the integer type (onnx_graph.widen_half_weights), which ONNX Runtime folds at session creation,
so DequantizeLinear and the QDQ fusions see the same constant integer tensor as before.
numpy + onnx only.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import TensorProto

from dcz.compressor.onnx_graph import WeightSource, initializer_array, is_placeholder
from dcz.compressor.state import LayerState

QUANTIZED_DTYPES = frozenset({TensorProto.INT8, TensorProto.UINT8})
# Header entry, Cast node and placeholder a tensor moved out of the graph costs (measured: ~150-250 B).
ENTRY_BYTES = 256


def find_quantized_weights(model: onnx.ModelProto) -> list[WeightSource]:
    """int8 / uint8 initializers of two or more dimensions read as input 0 of a DequantizeLinear."""
    from dcz.compressor.onnx_inline import must_stay_inline

    inits = {t.name: t for t in model.graph.initializer}
    inline = must_stay_inline(model)
    found: dict[str, WeightSource] = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input or node.input[0] in found:
            continue
        tensor = inits.get(node.input[0])
        if tensor is None or tensor.name in inline or is_placeholder(tensor):
            continue
        if tensor.data_type in QUANTIZED_DTYPES and len(tensor.dims) >= 2:
            found[tensor.name] = WeightSource(tensor.name, "DequantizeLinear", node.name, "initializer")
    return list(found.values())


def lossless_state(model: onnx.ModelProto, source: WeightSource) -> LayerState | str:
    """The exact codebook state of a quantized weight, or the reason it stays in the graph.

    Kept only when the Huffman-coded labels plus the codebook are smaller than the integer tensor
    itself (one byte per value) and than that tensor zlib-compressed in the graph section, where
    it would otherwise stay: both measured by encoding, not estimated.
    """
    from dcz.formats import codec

    tensor = next(t for t in model.graph.initializer if t.name == source.name)
    integers = initializer_array(tensor)
    values, labels = np.unique(integers, return_inverse=True)
    bits = max(1, int(np.ceil(np.log2(values.size))))
    labels = labels.reshape(integers.shape).astype(np.uint8)
    stored = len(codec.encode_stream(labels.ravel(), bits)) + 4 * values.size + ENTRY_BYTES
    in_graph = len(zlib.compress(integers.tobytes(), 9))  # what the zlib graph section would take
    if stored >= min(in_graph, integers.size):
        return f"already quantized: coded labels ({stored} B) would not beat the graph's zlib ({in_graph} B)"
    return LayerState(
        source.name,
        source.op_type,
        tuple(integers.shape),
        codebook=values.astype(np.float32),
        labels=labels,
        label_bits=bits,
        sqnr_db=float("inf"),
    )
