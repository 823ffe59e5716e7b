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

from .errors import DczRuntimeError

DCZ_LOCATION = "dcz"

# graph_format values the runtime reads: the serialized ModelProto, as is or zlib-compressed (the
# compressor writes "onnx.zlib": a graph without its weights is mostly names, ~3x smaller).
GRAPH_FORMATS = ("onnx", "onnx.zlib")
# Protobuf refuses messages over 2 GiB: a graph section that inflates past it is refused unread.
MAX_GRAPH_BYTES = 2**31


def graph_bytes(graph_format: str, graph) -> bytes:
    """The serialized ONNX ModelProto of a graph section of this graph_format."""
    if graph_format == "onnx":
        return bytes(graph)
    if graph_format != "onnx.zlib":
        raise DczRuntimeError(f"graph_format is {graph_format!r}; the runtime runs {' or '.join(GRAPH_FORMATS)} graphs")
    import zlib

    inflate = zlib.decompressobj()
    try:
        data = inflate.decompress(bytes(graph), MAX_GRAPH_BYTES)
    except zlib.error as exc:
        raise DczRuntimeError(f"the graph section is not a valid zlib stream ({exc})") from None
    if not inflate.eof:
        raise DczRuntimeError(
            f"the graph section's zlib stream is truncated or inflates past {MAX_GRAPH_BYTES:,} bytes"
        )
    if inflate.unused_data:
        raise DczRuntimeError(f"the graph section has {len(inflate.unused_data)} bytes after its zlib stream")
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
    try:
        return onnx.load_model_from_string(bytes(graph))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise DczRuntimeError(f"the graph stored in the .dcz is not a valid ONNX ModelProto: {exc}") from None


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its local functions inlined; `model` itself (same object) when it has none."""
    if not len(model.functions):
        return model
    from onnx import inliner

    return inliner.inline_local_functions(model)


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
