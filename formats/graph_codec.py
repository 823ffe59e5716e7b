"""The `onnx.deflate` graph format (SPEC 2.5.1): the serialized ONNX graph as raw DEFLATE with a preset dictionary.

A LeNet's graph without its weights is 0.6-1.1 KB of protobuf whose every field tag, op name, attribute and
placeholder (`location` = `dcz`) zlib meets for the first time; a dictionary of those bytes as PyTorch's exporter
writes them lets deflate refer to them from the first occurrence: LeNet-300-100's graph section 343 -> 211 B,
LeNet-5's 758 -> 584 B. dcz.formats only carries the bytes (the graph stays opaque to it); the compressor
deflates, dcz.runtime inflates.
"""

from __future__ import annotations

import zlib

GRAPH_FORMAT_DEFLATE = "onnx.deflate"


def _field(tag: bytes, body: bytes) -> bytes:
    """A protobuf length-delimited field: its tag byte, a one-byte length and the body (< 128 bytes)."""
    return tag + bytes([len(body)]) + body


def _attribute(name: bytes, body: bytes) -> bytes:
    """A NodeProto attribute (field 5) named `name` with the AttributeProto fields `body`."""
    return _field(b"*", _field(b"\n", name) + body)


def _ints(*values: int) -> bytes:
    """An INTS attribute's values (field 8, each < 128) and its type (20: INTS = 7)."""
    return b"".join(b"@" + bytes([v]) for v in values) + b"\xa0\x01\x07"


_INT_ONE = b"\x18\x01\xa0\x01\x02"  # i = 1, type INT
_FLOAT_ONE = b"\x15\x00\x00\x80?\xa0\x01\x01"  # f = 1.0, type FLOAT
_OPS = (
    b"Conv",
    b"Gemm",
    b"MatMul",
    b"Relu",
    b"MaxPool",
    b"AveragePool",
    b"GlobalAveragePool",
    b"Flatten",
    b"Reshape",
    b"Add",
    b"Mul",
    b"Sub",
    b"Div",
    b"Softmax",
    b"BatchNormalization",
    b"Concat",
    b"Transpose",
    b"Sigmoid",
    b"Tanh",
    b"Clip",
    b"Gather",
    b"Shape",
    b"Unsqueeze",
    b"Squeeze",
    b"Slice",
    b"Constant",
    b"Identity",
    b"Dropout",
    b"LayerNormalization",
    b"Erf",
    b"Pow",
    b"Sqrt",
    b"ReduceMean",
    b"Cast",
    b"Resize",
    b"Pad",
    b"HardSigmoid",
    b"HardSwish",
    b"LeakyRelu",
    b"PRelu",
    b"Expand",
    b"Where",
    b"Equal",
    b"ConvTranspose",
    b"Split",
)

# Fixed forever for `onnx.deflate` (SPEC 2.5.1 quotes it in hex; a test checks that they agree): the model
# header PyTorch writes, then per op its node tail (empty name, op_type), usual attributes, graph name and
# opsets, the batch-dim input / output value infos, and last the placeholder bytes (most frequent, nearest).
GRAPH_DICTIONARY = b"".join(
    [
        b"\x08\x08\x12\x07pytorch\x1a\x062.13.0:",
        b"\x12\nmain_graph",
        b"B\x02\x10\x11",
        b"B\x02\x10\x12",
        *(b'\x1a\x00"' + bytes([len(op)]) + op for op in _OPS),
        *(_attribute(b"kernel_shape", _ints(k, k)) for k in (1, 3, 5, 7)),
        *(_attribute(b"strides", _ints(s, s)) for s in (1, 2)),
        *(_attribute(b"pads", _ints(p, p, p, p)) for p in (0, 1, 2, 3)),
        _attribute(b"dilations", _ints(1, 1)),
        _attribute(b"group", _INT_ONE),
        _attribute(b"transB", _INT_ONE),
        _attribute(b"axis", _INT_ONE),
        _attribute(b"perm", _ints(0, 2, 1)),
        _attribute(b"epsilon", b"\x15\xac\xc5'7\xa0\x01\x01"),
        _attribute(b"alpha", _FLOAT_ONE),
        _attribute(b"beta", _FLOAT_ONE),
        b"Z$\n\x05input\x12\x1b\n\x19\x08\x01\x12\x15\n\x07\x12\x05batch\n\x02\x08\x01",
        b"b\x1d\n\x06output\x12\x13\n\x11\x08\x01\x12\r\n\x07\x12\x05batch\n\x02\x08",
        b".weight\n",
        b".bias\x12",
        b"\x10\x01B\n",
        b"j\x0f\n\x08location\x12\x03dczp\x01*",
    ]
)


def deflate_graph(graph: bytes) -> bytes:
    """The `onnx.deflate` graph section of serialized ONNX bytes (level 9: the same bytes for the same input)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, GRAPH_DICTIONARY)
    return packer.compress(bytes(graph)) + packer.flush()


def graph_inflater():
    """A decompressobj for an `onnx.deflate` graph section (raw DEFLATE with the graph dictionary)."""
    return zlib.decompressobj(-15, GRAPH_DICTIONARY)
