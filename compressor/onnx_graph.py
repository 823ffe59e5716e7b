"""ONNX graph surgery for `.dcz`: find compressible weights, turn them into placeholders, fill them back.

The `.dcz` convention (common brief): every tensor stored in the `.dcz` that the graph uses stays in
`graph.initializer` as a *placeholder* - same name, data_type and dims, no data,
`data_location = EXTERNAL`, `external_data = [("location", "dcz")]`. ONNX Runtime accepts this form
as is when the arrays come through `SessionOptions.add_external_initializers`.

numpy + onnx only: the torch-free ONNX-in path and the runtime-side tests use this module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dcz.compressor.onnx_subgraphs import Scope, constant_value, definition_counts, hoist_to_main, scopes
from dcz.formats.graph_codec import GRAPH_FORMAT_DEFLATE, deflate_graph
from dcz.formats.layout import DCZ_LOCATION

# The compressor stores the graph zlib-compressed (runtime/onnx_graph.py's GRAPH_FORMATS reads it).
GRAPH_FORMAT = "onnx.zlib"


def pack_graph(model: onnx.ModelProto, graph_format: str = GRAPH_FORMAT) -> bytes:
    """The graph section: the serialized ModelProto, zlib level 9 (deterministic; ~3x on graphs
    whose weights are placeholders, e.g. 38,742 -> 12,054 B for rapidocr's direction classifier), or for
    "onnx.deflate" raw deflate with the graph dictionary (SPEC 2.5.1: LeNet-300-100's 343 -> 211 B)."""
    import zlib

    if graph_format == GRAPH_FORMAT_DEFLATE:
        return deflate_graph(model.SerializeToString())
    return zlib.compress(model.SerializeToString(), 9)


def dumps_with_graph(tensors, model: onnx.ModelProto, metadata: dict, huffman: bool, **options) -> bytes:
    """A whole .dcz of `tensors` and the graph `model`: the graph packed in format 1.4's "onnx.deflate" when
    options ask for the compact container, else "onnx.zlib"; options: formats.dumps' compact_header,
    range_coding, compact_container."""
    from dcz import formats

    graph_format = GRAPH_FORMAT_DEFLATE if options.get("compact_container") else GRAPH_FORMAT
    return formats.dumps(tensors, pack_graph(model, graph_format), graph_format, metadata, huffman, **options)


# Spatial attributes whose ONNX default is "all ones" / "all zeros" but which have no default_value in the schema.
_SPATIAL_DEFAULTS = {"strides": 1, "dilations": 1, "pads": 0}


def compacted_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same computation in fewer bytes, for very small models where the graph is a tenth of the file:
    attributes equal to their ONNX default dropped, node names cleared, intermediate values renamed to
    short numbers (graph inputs, outputs and initializers keep their names). Any ONNX reader reads it
    the same: no format change (LeNet-5: 913 -> ~760 B zlib'd). Graphs with subgraphs (which may read
    outer names) come back unchanged."""
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute
    ):
        return model
    compact = onnx.ModelProto()
    compact.CopyFrom(model)
    graph = compact.graph
    kept = {v.name for v in graph.input} | {v.name for v in graph.output} | {t.name for t in graph.initializer}
    short = (name for name in map(lambda i: np.base_repr(i, 36), itertools.count()) if name not in kept)
    renamed: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        _drop_default_attributes(node, compact)
        node.input[:] = [renamed.get(name, name) for name in node.input]
        for i, name in enumerate(node.output):
            if name and name not in kept:
                renamed.setdefault(name, next(short))
                node.output[i] = renamed[name]
    del graph.value_info[:]  # shape hints only, and they name the old values
    return compact


def _drop_default_attributes(node: onnx.NodeProto, model: onnx.ModelProto) -> None:
    opset = next((o.version for o in model.opset_import if o.domain == node.domain), None)
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except (onnx.defs.SchemaError, TypeError):  # unknown op or domain: keep every attribute
        return
    kept = [a for a in node.attribute if not _is_default(a, schema)]
    del node.attribute[:]
    node.attribute.extend(kept)


def _is_default(attribute: onnx.AttributeProto, schema) -> bool:
    if attribute.name in _SPATIAL_DEFAULTS:
        return (
            schema.name in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")
            and attribute.type == onnx.AttributeProto.INTS
            and all(v == _SPATIAL_DEFAULTS[attribute.name] for v in attribute.ints)
        )
    declared = schema.attributes.get(attribute.name)
    if declared is None or declared.default_value.type != attribute.type:  # no default (type UNDEFINED)
        return False
    value = onnx.helper.get_attribute_value(attribute)
    return value == onnx.helper.get_attribute_value(declared.default_value)


# Node types whose weight input is compressible, and which input positions may hold that weight.
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1,),
    "ConvTranspose": (1,),
    "Gemm": (1, 0),
    "MatMul": (1, 0),
    "Gather": (0,),  # embedding tables
    "LSTM": (1, 2),  # input and recurrence weights (num_directions, gates * hidden, ...)
    "GRU": (1, 2),
    "RNN": (1, 2),
}
# Float weights the compressor reads (half precision ones are widened, see widen_half_weights).
WEIGHT_DTYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16})


@dataclass(frozen=True)
class WeightSource:
    """A compressible weight found in a graph.

    name      the tensor's name (initializer name, or the Constant node's output name).
    op_type   the consuming node type ("Conv", "Gemm", "MatMul"): the layer type for config lookup.
    node      the consuming node's name (may be empty in hand-built graphs).
    origin    "initializer" (of the main graph) or "constant" (a Constant node at any depth, or an
              initializer of a subgraph: moved to the main graph's initializers by constants_to_initializers).
    """

    name: str
    op_type: str
    node: str
    origin: str


def input_names(model: onnx.ModelProto) -> list[str]:
    """The graph's real inputs (IR < 4 also lists initializers among them)."""
    inits = {i.name for i in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in inits]


def make_placeholder(name: str, data_type: int, dims) -> TensorProto:
    """A data-less initializer whose values live in the `.dcz` under the same name."""
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = int(data_type)
    tensor.dims.extend(int(d) for d in dims)
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key = "location"
    entry.value = DCZ_LOCATION
    return tensor


def is_placeholder(tensor: TensorProto) -> bool:
    """True for an initializer that follows the `.dcz` placeholder convention."""
    if tensor.data_location != TensorProto.EXTERNAL:
        return False
    return any(e.key == "location" and e.value == DCZ_LOCATION for e in tensor.external_data)


def placeholder_names(model: onnx.ModelProto) -> list[str]:
    """Names of every placeholder initializer in the main graph, in graph order."""
    return [t.name for t in model.graph.initializer if is_placeholder(t)]


def _constant_tensor(node: onnx.NodeProto) -> TensorProto | None:
    """The tensor of a Constant node given by its `value` attribute (the only form weights take)."""
    return constant_value(node)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


# Nodes that rearrange a tensor without changing its values: a weight reached through them is
# still a weight (exporters write MatMul(x, Transpose(W)) and the like). Input 0 is the data.
PASS_THROUGH = frozenset({"Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
# ... and nodes that take parts of it: PyTorch's LSTM export reorders the gates of weight_ih / weight_hh
# with Slice and puts them back together with Concat before the LSTM node (silero-vad).
SLICING = frozenset({"Slice"})


def _casts_to_float(node: onnx.NodeProto) -> bool:
    """A Cast to a float type: weights stored in half precision are often read through one."""
    if node.op_type != "Cast":
        return False
    to = next((a.i for a in node.attribute if a.name == "to"), None)
    return to in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _resolve(name: str, scope: Scope, initializers: set[str], depth: int = 0) -> tuple[str, str] | None:
    """Follow value-preserving nodes back to a main-graph initializer ("initializer") or to a Constant node
    or subgraph initializer at any depth ("constant"): (tensor name, origin) or None. A Concat resolves when
    all its inputs resolve to the same tensor (its slices put back together)."""
    while depth < 64:
        depth += 1
        if name in scope.inner_initializers:
            return name, "constant"
        if name in initializers:
            return name, "initializer"
        node = scope.producers.get(name)
        if node is None or not node.input:
            return (name, "constant") if node is not None and _constant_tensor(node) is not None else None
        if node.op_type == "Concat":
            found = {_resolve(n, scope, initializers, depth) for n in node.input}
            return found.pop() if len(found) == 1 and None not in found else None
        if node.op_type not in PASS_THROUGH | SLICING and not _casts_to_float(node):
            return None
        name = node.input[0]
    return None


def _weight_tensor(name: str, origin: str, scope: Scope, inits: dict) -> TensorProto:
    if origin == "initializer":
        return inits[name]
    if name in scope.inner_initializers:
        return scope.inner_initializers[name]
    return _constant_tensor(scope.producers[name])


def find_weights(model: onnx.ModelProto) -> list[WeightSource]:
    """Float weights of Conv / Gemm / MatMul / Gather / LSTM / GRU / RNN nodes held in initializers or
    Constant nodes, in the main graph or in If / Loop / Scan bodies (compressor/onnx_subgraphs.py).

    Each tensor is listed once (a weight shared by two nodes takes the first node's type). Only
    float tensors of two or more dimensions qualify: biases and int constants are not weights. A
    tensor defined inside a subgraph qualifies only if its name is defined once in the whole model.
    """
    from dcz.compressor.onnx_inline import must_stay_inline

    inits = {t.name: t for t in model.graph.initializer}
    inline = must_stay_inline(model)
    init_names = set(inits) - inline
    counts: dict[str, int] | None = None
    found: dict[str, WeightSource] = {}
    for scope in scopes(model):
        for node in scope.graph.node:
            for position in WEIGHT_INPUTS.get(node.op_type, ()):
                if position >= len(node.input) or not node.input[position]:
                    continue
                resolved = _resolve(node.input[position], scope, init_names)
                if resolved is None:
                    continue
                name, origin = resolved
                tensor = _weight_tensor(name, origin, scope, inits)
                if tensor.data_type not in WEIGHT_DTYPES or len(tensor.dims) < 2 or name in found or name in inline:
                    continue
                if origin == "constant" and scope.graph is not model.graph:
                    counts = definition_counts(model) if counts is None else counts
                    if counts.get(name, 0) != 1:
                        continue
                found[name] = WeightSource(name, node.op_type, node.name, origin)
                if node.op_type in ("Gemm", "MatMul"):
                    break  # MatMul / Gemm: the first constant operand is the weight
    return list(found.values())


def constants_to_initializers(model: onnx.ModelProto, names) -> None:
    """Move the Constant nodes (at any depth) and subgraph initializers producing `names` into the main
    graph's `initializer` (same values).

    The initializer takes the Constant's output name, so consumers are untouched and the graph
    computes the same thing (subgraphs read it from the outer scope); only a main-graph initializer can
    become a `.dcz` placeholder.
    """
    hoist_to_main(model, names)


# Weights stored narrower than float32: widened for the .dcz, cast back in the graph.
NARROW_DTYPES = frozenset({TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT8, TensorProto.UINT8})


def widen_half_weights(model: onnx.ModelProto, names) -> dict[str, str]:
    """float16 / bfloat16 (and int8 / uint8: compressor.onnx_quantized) initializers among `names`
    become float32 ones read through a Cast (exact: every such value is a float32).

    The `.dcz` stores float32 codebooks; the graph keeps computing in the weight's own precision:
    initializer `W` (half) becomes `W.float32` (float32, same values) and a Cast node at the head of
    the graph gives `W` its dtype back (ONNX Runtime folds it once at session creation).
    Returns {old name: new name} for the widened ones.
    """
    renamed: dict[str, str] = {}
    casts = []
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name not in names or tensor.data_type not in NARROW_DTYPES:
            continue
        name, wide = tensor.name, f"{tensor.name}.float32"  # (CopyFrom below rewrites `tensor` itself)
        values = numpy_helper.to_array(tensor).astype(np.float32)
        casts.append(onnx.helper.make_node("Cast", [wide], [name], to=tensor.data_type, name=f"{wide}.cast"))
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values, wide))
        renamed[name] = wide
    if casts:
        nodes = casts + list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return renamed


def initializer_array(tensor: TensorProto) -> np.ndarray:
    """The values of an inline initializer (raises ValueError for a placeholder)."""
    if is_placeholder(tensor):
        raise ValueError(f"initializer {tensor.name!r} is a .dcz placeholder and holds no data")
    return numpy_helper.to_array(tensor)


def to_placeholders(model: onnx.ModelProto, names) -> dict[str, np.ndarray]:
    """Replace the named initializers by placeholders in place; return their arrays by name."""
    wanted = set(names)
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in wanted:
            arrays[tensor.name] = initializer_array(tensor)
            model.graph.initializer[index].CopyFrom(make_placeholder(tensor.name, tensor.data_type, tensor.dims))
    missing = wanted - set(arrays)
    if missing:
        raise ValueError(f"no initializer named {sorted(missing)[0]!r} in the graph")
    return arrays


def fill_placeholders(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` with every placeholder replaced by the given array (an ordinary ONNX model)."""
    filled = onnx.ModelProto()
    filled.CopyFrom(model)
    for index, tensor in enumerate(filled.graph.initializer):
        if not is_placeholder(tensor):
            continue
        if tensor.name not in arrays:
            raise ValueError(f"placeholder {tensor.name!r} has no array to fill it")
        array = np.asarray(arrays[tensor.name])
        if tuple(array.shape) != tuple(tensor.dims):
            raise ValueError(f"array for {tensor.name!r} has shape {array.shape}, graph expects {tuple(tensor.dims)}")
        want = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        filled.graph.initializer[index].CopyFrom(numpy_helper.from_array(array.astype(want, copy=False), tensor.name))
    return filled


# --- which initializer goes where in the .dcz -------------------------------------------------


@dataclass
class TensorPlan:
    """The `.dcz` tensors of a graph, plus which weights were kept raw and why.

    tensors     formats writer inputs, in graph initializer order (each becomes a placeholder).
    compressed  initializer name -> the state's name (torch parameter or ONNX weight name).
    kept_raw    initializer name -> reason, for every Conv/Gemm/MatMul weight stored uncompressed.
    """

    tensors: list = field(default_factory=list)
    compressed: dict[str, str] = field(default_factory=dict)
    kept_raw: dict[str, str] = field(default_factory=dict)


def plan_tensors(model: onnx.ModelProto, states, kept_raw=None, raw_small: bool = True) -> TensorPlan:
    """Decide the storage of every initializer of `model`.

    states     initializer name -> LayerState (already oriented like the initializer).
    kept_raw   initializer name -> reason, for weights the caller chose not to compress.
    Compressed weights take their state's encoding; uncompressed weights are stored Raw; other
    float initializers are stored Raw with `raw_small` when they may leave the graph (not read as
    constants, not used by a subgraph, at least SMALL_ELEMENTS values); the rest stay inline.
    """
    from dcz import formats  # numpy + bitarray only
    from dcz.compressor.onnx_inline import SMALL_ELEMENTS, must_stay_inline

    weight_names = {w.name for w in find_weights(model)}
    inline = must_stay_inline(model)
    plan = TensorPlan(kept_raw=dict(kept_raw or {}))
    for tensor in model.graph.initializer:
        state = states.get(tensor.name)
        if state is not None:
            plan.tensors.append(state.to_format_tensor(tensor.name))
            plan.compressed[tensor.name] = state.name
            continue
        if tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16) or tensor.name in inline:
            continue  # int shape constants, tensors read as constants and the like stay inline
        if tensor.name in weight_names:
            plan.kept_raw.setdefault(tensor.name, "no compression state given for this weight")
        elif not raw_small or _numel(tensor) < SMALL_ELEMENTS:
            continue
        plan.tensors.append(formats.Raw(tensor.name, initializer_array(tensor)))
    return plan


def _numel(tensor: TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) if len(tensor.dims) else 1


def plan_metadata(plan: TensorPlan) -> dict:
    """The `compress.*` keys every export records: what was compressed, what was kept raw and why."""
    return {
        "compress.layers": dict(sorted(plan.compressed.items())),
        "compress.kept_raw": dict(sorted(plan.kept_raw.items())),
    }
