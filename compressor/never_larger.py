"""A `.dcz` is never larger than the dense model it was made from.

Where the bytes of a small `.dcz` go (the 468-weight torch net of tests/compressor/test_never_larger_torch.py,
2,858 B against its 2,467 B float ONNX export): preamble + directory 184 B, JSON header 1,191 B
(metadata ~880 B, tensor table 290 B), zlib'd graph 427 B, tensors 1,050 B. The fixed costs that do not
shrink with the model are the header and the container, so the writer is asked, in this order, for:

1. the ordinary file, its header zlib-compressed when that saves >= 1% (formats.writer, format 1.2);
2. header compressed and graph compacted (compressor.onnx_graph.compacted_graph), whatever they save;
3. the same weights (as stored: decoded) inline in the (zlib'd, compacted) graph, no tensor apart: what
   the model computes is unchanged, and the file is smaller than the dense one unless that is under ~2 KB
   (the container's and the header's ~500 B then exceed what zlib saves on its graph).

The first candidate within the dense size is kept, else the smallest. Candidates are built lazily:
for any model whose `.dcz` is below 2 bytes per stored weight (smaller than even a float16 file of
those weights) the first one is taken without building the others or measuring the dense model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx

INLINE_REASON = "stored inline in the graph: the file is smaller so"


def inline_candidate(graph_model: onnx.ModelProto, data: bytes, meta: dict, huffman: bool) -> tuple:
    """The `.dcz` `data` with every stored tensor decoded and put back inline in its (compacted, zlib'd)
    graph, no tensor apart: the same weights (what the runtime computes with), the container's fixed
    costs gone. Metadata kept to where the model came from, its weight error and why nothing is apart.
    Returns (bytes, tensors apart, kept-raw reasons by initializer name)."""
    from onnx import numpy_helper

    from dcz import formats

    from .onnx_graph import GRAPH_FORMAT, compacted_graph, pack_graph

    with formats.loads(data) as stored:
        arrays = {name: stored.tensor(name) for name in stored.names}
    model = onnx.ModelProto()
    model.CopyFrom(graph_model)
    for tensor in model.graph.initializer:
        if tensor.name in arrays:
            tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arrays[tensor.name]), tensor.name))
    reasons = dict.fromkeys(sorted(arrays), INLINE_REASON)
    kept = {k: v for k, v in meta.items() if k.startswith(("source.", "user.")) or k == "compress.weight_sqnr_db"}
    kept.update({"compress.layers": {}, "compress.kept_raw": reasons})
    packed = pack_graph(compacted_graph(model))
    return formats.dumps([], packed, GRAPH_FORMAT, kept, huffman, compact_header=True), [], reasons


def _numel(tensor) -> int:
    for field in ("mask", "labels", "array"):  # formats tensors: the first of these has the tensor's shape
        if hasattr(tensor, field):
            return int(np.size(getattr(tensor, field)))
    return 0


def surely_smaller(data_len: int, tensors) -> bool:
    """True when `data_len` bytes are below 2 bytes per stored weight: smaller than any dense file holding them."""
    return data_len < 2 * sum(_numel(t) for t in tensors)


def first_within(candidates: Iterable[Callable[[], tuple]], dense_bytes: Callable[[], int | None]):
    """The first candidate (a tuple: the .dcz bytes, the tensors stored apart, anything else) within the dense
    size, else the smallest. `dense_bytes` is called only if the first candidate is not surely smaller."""
    best, dense = None, None
    for i, make in enumerate(candidates):
        result = make()
        if best is None or len(result[0]) < len(best[0]):
            best = result
        if i == 0:
            if surely_smaller(len(best[0]), best[1]):
                return best
            dense = dense_bytes()
        if dense is None or len(best[0]) <= dense:
            return best
    return best


def onnx_source_bytes(model_or_path) -> int | None:
    """Bytes of the dense ONNX model as given: the file plus its external data files, the bytes, or the
    serialized size of a ModelProto (None when that cannot be measured, e.g. over protobuf's 2 GB)."""
    if isinstance(model_or_path, (bytes, bytearray)):
        return len(model_or_path)
    if isinstance(model_or_path, onnx.ModelProto):
        try:
            return model_or_path.ByteSize()
        except Exception:  # protobuf refuses sizes over 2 GB: such a model is never the small case
            return None
    path = Path(model_or_path)
    try:
        total = os.path.getsize(path)
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable: compress_onnx's own load says why
        return None
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in sorted(locations):
        data = path.parent / location
        total += os.path.getsize(data) if data.is_file() else 0
    return total
