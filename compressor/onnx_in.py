"""Compress an existing ONNX model without torch: post-training pruning + weight sharing.

The weights of Conv / Gemm / MatMul nodes are found whether they sit in initializers or in
top-level Constant nodes (as many exported models keep them; those Constants become initializers
with the same name, which changes nothing the graph computes). Each weight is pruned by its
layer's rule and shared through the exact 1-D k-means; everything else in the graph is kept.
numpy + onnx only (no fine-tuning is possible without a training framework).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dcz.compressor import linear, qdq, safe
from dcz.compressor.config import CompressConfig, LayerPlan, as_config
from dcz.compressor.errors import CompressError
from dcz.compressor.kmeans import cluster_weights
from dcz.compressor.never_larger import first_within, inline_candidate, onnx_source_bytes
from dcz.compressor.onnx_fold import fold_batchnorm
from dcz.compressor.onnx_graph import (
    TensorPlan,
    WeightSource,
    compacted_graph,
    constants_to_initializers,
    dumps_with_graph,
    find_weights,
    initializer_array,
    is_placeholder,
    plan_metadata,
    plan_tensors,
    to_placeholders,
    widen_half_weights,
)
from dcz.compressor.onnx_inline import drop_unused_initializers
from dcz.compressor.onnx_qdq_graph import per_channel_linear, qdq_model
from dcz.compressor.onnx_quantized import find_quantized_weights, lossless_state
from dcz.compressor.state import LayerState, safe_metadata


@dataclass
class OnnxCompressed:
    """The result of `compress_onnx`.

    graph        serialized ONNX model with `.dcz` placeholders (the `.dcz` graph).
    layers       initializer name -> LayerState of every compressed weight.
    plan         the `.dcz` tensors and the weights kept raw (with reasons).
    report       `compressor.report.Report` of the `.dcz` (sizes per layer and in total).
    dcz          the `.dcz` bytes when no `out_path` was given, else None.
    """

    graph: bytes
    layers: dict[str, LayerState]
    plan: TensorPlan
    report: Any
    dcz: bytes | None = None


def load_onnx_model(model_or_path) -> onnx.ModelProto:
    """A private copy of a ModelProto, or the model read from bytes or a path (CompressError if unreadable)."""
    if isinstance(model_or_path, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(model_or_path)
        return model
    if isinstance(model_or_path, (bytes, bytearray)):
        loader, where = (lambda: onnx.load_from_string(bytes(model_or_path))), "the given bytes"
    else:
        loader, where = (lambda: onnx.load(str(model_or_path))), str(model_or_path)
    try:
        return loader()
    except Exception as error:  # protobuf/IO errors of many types: one clear message
        raise CompressError(
            f"{where}: not a readable ONNX model ({type(error).__name__}: {error})".splitlines()[0]
        ) from error


def check_data_inline(model: onnx.ModelProto, where: str) -> None:
    """Every initializer must hold its values: external data not loaded, or an already-.dcz graph, is refused."""
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            hint = (
                "it is already a .dcz graph (placeholder)"
                if is_placeholder(tensor)
                else "its data is external: pass the model's path so onnx loads it"
            )
            raise CompressError(f"{where}: initializer {tensor.name!r} holds no values ({hint})")


def weight_array(model: onnx.ModelProto, source: WeightSource) -> np.ndarray:
    """The float weight `source` names, read from its initializer."""
    for tensor in model.graph.initializer:
        if tensor.name == source.name:
            return initializer_array(tensor).astype(np.float32, copy=False)
    raise CompressError(f"weight {source.name!r}: not found among the initializers")


# --- pruning rules, numpy only ------------------------------------------------------------------


def _keep_smallest_removed(magnitude: np.ndarray, sparsity: float) -> np.ndarray:
    """Mask removing exactly round(sparsity * n) entries of smallest magnitude (ties: first in order).

    O(n) selection (np.partition) instead of a full sort: the same mask as a stable argsort.
    """
    flat = magnitude.ravel()
    remove = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    if remove:
        kth = np.partition(flat, remove - 1)[remove - 1]
        below = flat < kth
        keep[below] = False
        keep[np.flatnonzero(flat == kth)[: remove - int(below.sum())]] = False
    return keep.reshape(magnitude.shape)


def layer_mask(weight: np.ndarray, plan: LayerPlan) -> np.ndarray | None:
    """The per-layer pruning rules: None (no pruning) or the bool mask of surviving weights."""
    magnitude = np.abs(weight)
    if plan.prune == "threshold":
        return magnitude >= plan.threshold
    if plan.prune == "quality":
        return magnitude >= plan.quality * float(np.std(weight))
    if plan.prune == "sparsity":
        return _keep_smallest_removed(magnitude, plan.sparsity)
    if plan.prune in ("gmp", "dns"):
        raise CompressError(
            f"layer {plan.name}: prune {plan.prune!r} prunes while training a PyTorch model; "
            "an ONNX model takes prune none, threshold, sparsity, quality or global"
        )
    return None  # "none"; "global" is decided across layers by global_masks


def global_masks(weights: Mapping[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """One magnitude threshold across all given layers, removing `sparsity` of their weights overall."""
    names = list(weights)
    flat = np.concatenate([np.abs(weights[n]).ravel() for n in names])
    keep = _keep_smallest_removed(flat, sparsity)
    masks, start = {}, 0
    for name in names:
        size = weights[name].size
        masks[name] = keep[start : start + size].reshape(weights[name].shape)
        start += size
    return masks


def _masks(weights: Mapping[str, np.ndarray], plans: Mapping[str, LayerPlan]) -> dict[str, np.ndarray | None]:
    masks = {name: layer_mask(weights[name], plans[name]) for name in weights}
    global_layers = [name for name in weights if plans[name].prune == "global"]
    if global_layers:
        sparsities = {plans[name].sparsity for name in global_layers}
        if len(sparsities) > 1:
            raise CompressError(f"config: layers pruned 'global' must share one sparsity, got {sorted(sparsities)}")
        masks.update(global_masks({n: weights[n] for n in global_layers}, sparsities.pop()))
    return masks


# --- one layer -------------------------------------------------------------------------------------


def _why_raw(source: WeightSource, weight: np.ndarray, plan: LayerPlan, config: CompressConfig) -> str | None:
    if plan.skip:
        return "config: skip"
    if weight.size < config.min_weights:
        return f"fewer than min_weights={config.min_weights} weights"
    if plan.prune == "none" and not plan.share:
        return "config: neither pruned nor shared"
    return None


def layer_state(
    source: WeightSource,
    weight: np.ndarray,
    mask: np.ndarray | None,
    plan: LayerPlan,
    seed: int,
    channel_codebooks: bool = True,
) -> LayerState | str:
    """The compressed state of one weight, or the reason it is stored raw (never larger than raw).

    channel_codebooks: a per-channel grid costs a codebook per channel (False: one integer codebook and a
    scale vector, as compressor/onnx_qdq_graph stores it)."""
    state = LayerState(source.name, source.op_type, tuple(weight.shape), mask=mask, gap_bits=plan.gap_bits)
    scheme = linear.scheme_of(plan) if plan.share else None
    if scheme is not None:
        kept = weight.size if mask is None else int(np.count_nonzero(mask))
        groups = weight.shape[0] if scheme.per_channel and weight.ndim and channel_codebooks else 1
        if not safe.fits(weight, kept, scheme.bits, groups):
            return f"a {scheme.name} grid would not be smaller than the raw tensor"
        result = linear.quantize(weight, mask, scheme)
        state.codebook, state.labels, state.group_rows = result.codebook, result.labels, result.group_rows
        state.label_bits, state.linear = scheme.bits, result.metadata(scheme)
    elif plan.share and plan.auto:
        choice = safe.choose(weight, mask, seed=seed, init=plan.init)
        if choice.codebook is not None:
            state.codebook, state.labels = choice.codebook, choice.labels
            state.label_bits, state.group_rows = choice.bits, choice.group_rows
        elif mask is None:
            return choice.reason
        else:
            state.values = np.where(mask, weight, 0).astype(np.float32)
    elif plan.share:
        kept = weight.size if mask is None else int(np.count_nonzero(mask))
        groups = 1 if plan.group_rows is None else -(-weight.shape[0] // plan.group_rows)
        if not safe.fits(weight, kept, plan.bits, groups):
            return f"a {plan.bits}-bit codebook would not be smaller than the raw tensor"
        state.codebook, state.labels = cluster_weights(
            weight, mask, plan.bits, init=plan.init, seed=seed, backend=plan.kmeans, group_rows=plan.group_rows
        )
        state.label_bits = plan.bits
        state.group_rows = plan.group_rows
    else:
        state.values = np.where(mask, weight, 0).astype(np.float32)
    state.sqnr_db = safe.sqnr_db(weight, state.weight())
    return state


# --- the whole model -------------------------------------------------------------------------------


def compress_graph(model: onnx.ModelProto, config: CompressConfig) -> tuple[dict[str, LayerState], dict[str, str]]:
    """LayerStates for the compressible weights of `model` (modified: weight Constants -> initializers).

    Returns (states by initializer name, kept_raw reasons by initializer name).
    """
    sources = find_weights(model)
    quantized = find_quantized_weights(model)
    config.check_names([s.name for s in sources + quantized])
    constants_to_initializers(model, [s.name for s in sources if s.origin == "constant"])
    plans = {s.name: config.for_layer(s.name, s.op_type) for s in sources}
    weights: dict[str, np.ndarray] = {}
    kept_raw: dict[str, str] = {}
    for source in sources:
        weight = weight_array(model, source)
        reason = _why_raw(source, weight, plans[source.name], config)
        if reason is None:
            weights[source.name] = weight
        else:
            kept_raw[source.name] = reason
    masks = _masks(weights, plans)
    states = {}
    for index, source in enumerate(s for s in sources if s.name in weights):
        state = layer_state(
            source, weights[source.name], masks[source.name], plans[source.name], config.seed + index, False
        )
        if isinstance(state, str):
            kept_raw[source.name] = state
        else:
            states[source.name] = state
    for source in quantized:  # already int8 / uint8: stored exactly or left as they are
        state = "config: skip" if config.for_layer(source.name, source.op_type).skip else lossless_state(model, source)
        if isinstance(state, str):
            kept_raw[source.name] = state
        else:
            states[source.name] = state
    return states, kept_raw


def compress_onnx(
    model_or_path,
    config=None,
    out_path=None,
    metadata: Mapping[str, Any] | None = None,
    huffman: bool = True,
    raw_small: bool = True,
    calib=None,
    calib_method: str = "entropy",
    dynamic: bool = False,
    range_coding: bool = False,
    compact_container: bool = False,
) -> OnnxCompressed:
    """Post-training compression of an ONNX model (ModelProto, bytes or path) to `.dcz`.

    config: CompressConfig, a dict for `CompressConfig.from_dict`, or None (safe defaults: no
    pruning, per-layer bits from compressor.safe, BatchNormalization folded into Conv). `calib` (an .npz
    path or {input: array}) records static int8 activation scales by `calib_method` (compressor.qdq); `dynamic`
    asks the runtime to quantize MatMul / Gemm activations at run time instead (needs 8-bit linear weights,
    runtime/qdq_dynamic.py). `compact_container` writes format 1.4 (SPEC 2.6, graph as
    `onnx.deflate`). `range_coding` lets streams take format 1.3's adaptive range coding where it is
    smaller. Writes `out_path` atomically when given; otherwise the `.dcz` bytes are in the result's `dcz`.
    """

    config = as_config(config)
    model = load_onnx_model(model_or_path)
    check_data_inline(
        model, "model" if isinstance(model_or_path, (onnx.ModelProto, bytes, bytearray)) else str(model_or_path)
    )
    unused = drop_unused_initializers(model)
    folded = fold_batchnorm(model) if config.fold_batchnorm else []
    # static activation scales (compressor.qdq: ORT's calibrators) on the graph as it will be stored
    if dynamic and calib is not None:
        raise CompressError("dynamic quantization takes no calibration data: give calib or dynamic, not both")
    activations = {} if calib is None else qdq.calibrate(model, calib, calib_method)
    states, kept_raw = compress_graph(model, config)
    # explicit int8 settings rewrite the graph (QDQ, activation grids): no dense fallback for them
    source = model_or_path if calib is None and not dynamic else None
    if dynamic and not any(s.linear and s.linear.get("bits") == 8 and s.shared for s in states.values()):
        raise CompressError("dynamic quantization needs 8-bit linear weights (quantize int8 or uint8)")
    if (
        per_channel_linear(states) and not dynamic
    ):  # int8 weights behind DequantizeLinear(axis): compressor/onnx_qdq_graph.py
        first = write_states(model, _by_initializer(model, states), kept_raw, None, _linear_meta(activations))
        model, schemes = qdq_model(first.dcz)
        states, kept_raw = compress_graph(model, config)
        activations = {}  # already in the graph as QuantizeLinear -> DequantizeLinear pairs
        # the grids' schemes stay for `dcz info` under the weights' names, which are no stored tensors now,
        # and without compress.activations no runtime rebuilds a QDQ graph again
        metadata = {**schemes, **dict(metadata or {})}
        source = None
    by_initializer = _by_initializer(model, states)
    meta = {
        "compress.config": config.to_dict(),
        **({qdq.ACTIVATIONS_KEY: activations} if activations else {}),
        **({"compress.calib_method": calib_method} if calib is not None else {}),
        **({qdq.DYNAMIC_KEY: True} if dynamic else {}),
        "compress.folded_batchnorm": folded,
        **({"compress.dropped_unused": unused} if unused else {}),
        **dict(metadata or {}),
    }
    return write_states(
        model,
        by_initializer,
        kept_raw,
        out_path,
        meta,
        huffman,
        raw_small,
        states,
        source,
        range_coding=range_coding,
        compact_container=compact_container,
    )


def _by_initializer(model: onnx.ModelProto, states: Mapping[str, LayerState]) -> dict[str, LayerState]:
    """States by the initializer name they are stored under (half / int8 weights widened to float32)."""
    renamed = widen_half_weights(model, set(states))
    return {renamed.get(name, name): state for name, state in states.items()}


def _linear_meta(activations) -> dict:
    return {qdq.ACTIVATIONS_KEY: activations} if activations else {}


def write_states(
    model: onnx.ModelProto,
    states: Mapping[str, LayerState],
    kept_raw: Mapping[str, str],
    out_path=None,
    metadata: Mapping[str, Any] | None = None,
    huffman: bool = True,
    raw_small: bool = True,
    reported_states: Mapping[str, LayerState] | None = None,
    source=None,
    *,
    range_coding: bool = False,
    compact_container: bool = False,
) -> OnnxCompressed:
    """Write `model` (modified: the states' initializers become placeholders) with `states` by
    initializer name as a `.dcz`: atomically to `out_path`, or to bytes in the result.

    source: the dense model as given (ModelProto, bytes or path): the `.dcz` is then never larger than
    it (compressor/never_larger.py: header and graph compacted, else the dense model kept whole).
    range_coding: streams may take format 1.3's adaptive range coding where it is smaller.
    compact_container: format 1.4's compact container (SPEC 2.6) with the graph as `onnx.deflate` (SPEC 2.5.1)."""
    from dcz import formats
    from dcz.compressor.report import Report
    from dcz.formats.atomic import atomic_write_bytes

    reported = dict(states if reported_states is None else reported_states)
    try:
        plan = plan_tensors(model, dict(states), dict(kept_raw), raw_small=raw_small)
        to_placeholders(model, [t.name for t in plan.tensors])
        graph = model.SerializeToString()
        given = dict(metadata or {})
        meta = {
            **source_metadata(model),
            **({"compress.config": given.pop("compress.config")} if "compress.config" in given else {}),
            **plan_metadata(plan),
            **safe_metadata(reported),
            **linear.linear_metadata(reported, plan),
            **given,
        }

        def dumps(graph_model: onnx.ModelProto, compact: bool | None) -> tuple:
            options = dict(compact_header=compact, range_coding=range_coding, compact_container=compact_container)
            data = dumps_with_graph(plan.tensors, graph_model, meta, huffman, **options)
            return data, plan.tensors, plan, reported, graph

        plain = dumps(model, None)

        def inlined() -> tuple:
            data, _, reasons = inline_candidate(model, plain[0], meta, huffman)
            return data, [], TensorPlan(kept_raw={**plan.kept_raw, **reasons}), reported, graph

        candidates = [lambda: plain, lambda: dumps(compacted_graph(model), True), inlined]
        if source is None:  # no dense model to compare with (search candidates, QDQ passes)
            candidates = candidates[:1]
        data, _, plan, reported, graph = first_within(candidates, lambda: source and onnx_source_bytes(source))
        if out_path is not None:
            atomic_write_bytes(Path(out_path), data)
        with formats.loads(data) as dcz:
            sizes = dcz.size_report()
    except formats.FormatError as error:
        raise CompressError(f"writing {out_path or 'the .dcz'}: {error}") from error
    report = Report.from_sizes(sizes, kept_raw=plan.kept_raw)
    return OnnxCompressed(graph, reported, plan, report, None if out_path is not None else data)


def source_metadata(model: onnx.ModelProto) -> dict:
    return {
        "source.framework": "onnx",
        "source.producer": model.producer_name or "unknown",
        "source.opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
    }
