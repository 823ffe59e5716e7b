"""Reading the ONNX graph stored in a .dcz: placeholders, dtypes, inputs and outputs.

Convention (common brief): every tensor stored in the .dcz appears in `graph.initializer` as a
placeholder with the same name, data_type and dims, no data, `data_location = EXTERNAL` and
`external_data = [("location", "dcz")]`. Other initializers stay inline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from dcz.formats.graph_codec import GRAPH_FORMAT_DEFLATE, graph_inflater
from dcz.formats.layout import DCZ_LOCATION

from .errors import DczRuntimeError

# graph_format values the runtime reads: the serialized ModelProto, as is, zlib-compressed (the compressor writes
# "onnx.zlib": a graph without its weights is mostly names, ~3x smaller) or raw-deflated with the graph dictionary
# ("onnx.deflate", SPEC 2.5.1: the compressor writes it with format 1.4's compact container).
GRAPH_FORMATS = ("onnx", "onnx.zlib", GRAPH_FORMAT_DEFLATE)
# Graph size caps (formats/SPEC.md, "Limits"). The weights live in the .dcz's own sections, so the
# graph is mostly names and small constants: the largest corpus model (PP-OCRv4 rec) has ~1,000
# nodes and a graph of ~0.3 MB. A hostile 7.6 MB graph of 300k nodes took 40 s and 1.1 GB to load.
MAX_GRAPH_BYTES = 256 << 20  # serialized (after inflating): refused unread beyond this
MAX_GRAPH_NODES = 100_000  # nodes of the graph, its subgraphs and its local functions together


def graph_bytes(graph_format: str, graph) -> bytes:
    """The serialized ONNX ModelProto of a graph section of this graph_format."""
    if graph_format == "onnx":
        return bytes(graph)
    if graph_format not in GRAPH_FORMATS:
        raise DczRuntimeError(f"graph_format is {graph_format!r}; the runtime runs {' or '.join(GRAPH_FORMATS)} graphs")
    import zlib

    stream = "zlib" if graph_format == "onnx.zlib" else "deflate"
    inflate = zlib.decompressobj() if stream == "zlib" else graph_inflater()
    try:
        data = inflate.decompress(bytes(graph), MAX_GRAPH_BYTES)
    except zlib.error as exc:
        raise DczRuntimeError(f"the graph section is not a valid {stream} stream ({exc})") from None
    if not inflate.eof:
        raise DczRuntimeError(
            f"the graph section's {stream} stream is truncated or inflates past {MAX_GRAPH_BYTES:,} bytes"
        )
    if inflate.unused_data:
        raise DczRuntimeError(f"the graph section has {len(inflate.unused_data)} bytes after its {stream} stream")
    return data


@dataclass(frozen=True)
class Placeholder:
    """An initializer whose data lives in the .dcz file."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ValueSpec:
    """A graph input or output: name, element dtype (None if unknown) and dims (None = free)."""

    name: str
    dtype: np.dtype | None
    shape: tuple[int | None, ...] | None


def parse_model(graph: bytes) -> onnx.ModelProto:
    """Parse serialized ONNX bytes; local functions are inlined so executors see plain ops."""
    return inline_functions(parse_graph_bytes(graph))


def parse_graph_bytes(graph: bytes) -> onnx.ModelProto:
    """The stored ModelProto exactly as serialized (no inlining)."""
    if not graph:
        raise DczRuntimeError("the .dcz file holds no graph: nothing to run (graph section is empty)")
    if len(graph) > MAX_GRAPH_BYTES:
        raise DczRuntimeError(f"the graph holds {len(graph):,} bytes, over the {MAX_GRAPH_BYTES:,}-byte cap")
    graph = bytes(graph)
    if _wire_node_count(graph) > MAX_GRAPH_NODES:  # before protobuf builds ~300 bytes of objects per node
        raise DczRuntimeError(f"the graph has more than {MAX_GRAPH_NODES:,} nodes, the cap")
    try:
        model = onnx.load_model_from_string(graph)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise DczRuntimeError(f"the graph stored in the .dcz is not a valid ONNX ModelProto: {exc}") from None
    check_graph(model)
    return model


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, len(data)  # truncated: protobuf's parser will say so


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, payload start, payload end) of each field in data[start:end]."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        if key < 0:
            return
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(data, pos)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            after = pos + max(length, 0)
        elif wire == 5:
            after = pos + 4
        else:
            return  # groups or garbage: left to the parser
        yield number, wire, pos, min(after, end)
        pos = after


_MODEL_GRAPH, _GRAPH_NODE = 7, 1  # onnx.proto field numbers: ModelProto.graph, GraphProto.node


def _wire_node_count(data: bytes) -> int:
    """Nodes of the top-level graph, counted on the serialized bytes without parsing them."""
    count = 0
    for number, wire, start, end in _fields(data, 0, len(data)):
        if number == _MODEL_GRAPH and wire == 2:
            count += sum(1 for n, w, _, _ in _fields(data, start, end) if n == _GRAPH_NODE and w == 2)
    return count


def check_graph(model: onnx.ModelProto) -> None:
    """Node cap, and no tensor anywhere (Constant attributes, subgraphs of If / Loop / Scan, sparse
    initializers, local functions) with external data, except the top-level placeholders that point
    at the .dcz itself: neither backend may ever open a file a graph names (`secret.bin`, `../x`)."""
    nodes = 0
    pending = [("graph", model.graph, True)]  # True: the top-level graph, whose placeholders may say "dcz"
    pending += [(f"function {f.name!r}", f, False) for f in model.functions]
    while pending:
        where, graph, top = pending.pop()
        nodes += len(graph.node)
        if nodes > MAX_GRAPH_NODES:
            raise DczRuntimeError(f"the graph has more than {MAX_GRAPH_NODES:,} nodes (subgraphs included), the cap")
        for init in getattr(graph, "initializer", ()):
            _check_tensor(init, f"{where} initializer {init.name!r}", allow_dcz=top)
        for sparse in getattr(graph, "sparse_initializer", ()):
            for part in (sparse.values, sparse.indices):
                _check_tensor(part, f"{where} sparse initializer {sparse.values.name!r}", allow_dcz=False)
        for node in graph.node:
            for attr in node.attribute:
                label = f"node {node.name or node.op_type!r} attribute {attr.name!r}"
                tensors = [attr.t] if attr.HasField("t") else []
                tensors += list(attr.tensors)
                for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(
                    attr.sparse_tensors
                ):
                    tensors += [sparse.values, sparse.indices]
                for tensor in tensors:
                    _check_tensor(tensor, label, allow_dcz=False)
                subgraphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
                pending += [(f"{label} subgraph", g, False) for g in subgraphs]


def _check_tensor(tensor: TensorProto, where: str, allow_dcz: bool) -> None:
    if tensor.data_location != TensorProto.EXTERNAL and not len(tensor.external_data):
        return
    location = _external_location(tensor)
    if allow_dcz and tensor.data_location == TensorProto.EXTERNAL and location == DCZ_LOCATION:
        return
    raise DczRuntimeError(
        f"{where} refers to external data at {location!r}; only top-level placeholders may, and only "
        f"to {DCZ_LOCATION!r} (the .dcz itself)"
    )


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its local functions inlined; `model` itself (same object) when it has none."""
    if not len(model.functions):
        return model
    from onnx import inliner

    try:
        return inliner.inline_local_functions(model)
    except Exception as exc:  # onnx's ValidationError / C++ errors on a malformed function
        raise DczRuntimeError(f"the graph's local functions cannot be inlined: {exc}") from None


def onnx_dtype(data_type: int, where: str) -> np.dtype:
    """numpy dtype of an ONNX TensorProto.DataType, or an error naming `where`."""
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    except Exception:
        raise DczRuntimeError(f"{where}: unsupported ONNX data_type {data_type}") from None


def _external_location(init: TensorProto) -> str | None:
    for entry in init.external_data:
        if entry.key == "location":
            return entry.value
    return None


def placeholders(model: onnx.ModelProto) -> dict[str, Placeholder]:
    """The initializers that stand for tensors of the .dcz, keyed by name.

    An initializer pointing at any other external location is refused: the runtime never opens
    files named by a graph (a hostile file could name /etc/passwd).
    """
    found: dict[str, Placeholder] = {}
    for init in model.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        location = _external_location(init)
        if location != DCZ_LOCATION:
            raise DczRuntimeError(
                f"initializer {init.name!r} refers to external data at {location!r}; "
                f"only {DCZ_LOCATION!r} (the .dcz itself) is allowed"
            )
        if init.name in found:
            raise DczRuntimeError(f"initializer {init.name!r} is declared twice in the graph")
        dtype = onnx_dtype(init.data_type, f"placeholder {init.name!r}")
        found[init.name] = Placeholder(init.name, dtype, tuple(int(d) for d in init.dims))
    return found


def _value_spec(info: onnx.ValueInfoProto) -> ValueSpec:
    ttype = info.type.tensor_type
    dtype = None
    if ttype.elem_type:
        dtype = onnx_dtype(ttype.elem_type, f"graph value {info.name!r}")
    shape = None
    if ttype.HasField("shape"):
        # A negative dim_value (-1, as some exporters write) means dynamic, like a dim_param.
        shape = tuple(
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value >= 0 else None for d in ttype.shape.dim
        )
    return ValueSpec(info.name, dtype, shape)


def graph_inputs(model: onnx.ModelProto) -> list[ValueSpec]:
    """Inputs the caller must feed (graph inputs that are not initializers; old IRs list both)."""
    inits = {i.name for i in model.graph.initializer}
    return [_value_spec(v) for v in model.graph.input if v.name not in inits]


def graph_outputs(model: onnx.ModelProto) -> list[ValueSpec]:
    return [_value_spec(v) for v in model.graph.output]


def opset_version(model: onnx.ModelProto, domain: str = "") -> int:
    """The model's opset for `domain` ("" and "ai.onnx" are the same default domain)."""
    for entry in model.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(entry.version)
    raise DczRuntimeError(f"the graph declares no opset for domain {domain or 'ai.onnx'!r}")
