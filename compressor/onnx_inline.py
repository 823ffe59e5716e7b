"""Which initializers must stay inline in a `.dcz` graph.

Only weights should leave the graph. ONNX shape inference, and ONNX Runtime when it builds a
session, read some inputs as constants: Resize scales, Reshape shapes, Slice starts, Pad widths
and the like. A placeholder there fails ("Cannot parse data from external tensors"), so those
tensors stay inline whatever their size or dtype. Small tensors (scalars, norm parameters) also
stay inline: a `.dcz` entry costs more header bytes than they weigh, and ORT's constant folding
wants them. The same holds inside subgraphs (If / Loop / Scan bodies): constant reads there stay
inline too; weights there are moved to the main graph first (compressor/onnx_subgraphs.py). numpy + onnx
only.
"""

from __future__ import annotations

import onnx

from dcz.compressor.onnx_subgraphs import all_graphs

# op type -> input positions read as constants by shape inference or the kernel (default domain).
_REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2")
_REDUCE += ("ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "ConstantOfShape": (0,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "TopK": (1,),
    "OneHot": (1, 2),
    "Range": (0, 1, 2),
    "CumSum": (1,),
    "Clip": (1, 2),
    "NonMaxSuppression": (2, 3, 4),
    "DequantizeLinear": (1, 2),
    "QuantizeLinear": (1, 2),
    "Dropout": (1, 2),
    **{op: (1,) for op in _REDUCE},
}

# Non-weight float tensors below this many elements stay inline: a `.dcz` entry (JSON header,
# directory entry, alignment) costs ~100-200 bytes, more than a 32-float bias saves.
SMALL_ELEMENTS = 64


def constant_read(model: onnx.ModelProto) -> set[str]:
    """Names read as constants by some node of the model, subgraphs included (see CONSTANT_INPUTS)."""
    names: set[str] = set()
    for graph in all_graphs(model):
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                continue
            for position in CONSTANT_INPUTS.get(node.op_type, ()):
                if position < len(node.input) and node.input[position]:
                    names.add(node.input[position])
    return names


def read_in_subgraphs(model: onnx.ModelProto) -> set[str]:
    """Every name read by a node nested in a subgraph, at any depth (outer-scope references)."""
    names: set[str] = set()
    for graph in list(all_graphs(model))[1:]:
        for node in graph.node:
            names.update(n for n in node.input if n)
    return names


def drop_unused_initializers(model: onnx.ModelProto) -> list[str]:
    """Remove the top-level initializers that no node (at any depth) and no graph output reads.

    ONNX Runtime drops them while resolving the graph anyway (and then refuses to fill their
    placeholders); storing them would only cost bytes. Returns the removed names, in graph order.
    """
    graph = model.graph
    read = {n for node in graph.node for n in node.input} | read_in_subgraphs(model) | {o.name for o in graph.output}
    unused = [t.name for t in graph.initializer if t.name not in read]
    if unused:
        kept = [t for t in graph.initializer if t.name in read]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        dropped = set(unused)
        inputs = [v for v in graph.input if v.name not in dropped]  # IR < 4 lists initializers as inputs
        del graph.input[:]
        graph.input.extend(inputs)
    return unused


def must_stay_inline(model: onnx.ModelProto) -> set[str]:
    """Initializer names that may not become `.dcz` placeholders, whatever their size. A tensor a subgraph
    reads as data (silero-vad's LSTM weights, sliced inside an If branch) may: ONNX Runtime fills a main-graph
    initializer before it runs any subgraph that reads it from the outer scope."""
    return constant_read(model)
