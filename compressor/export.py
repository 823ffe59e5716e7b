"""Torch model + compression states -> ONNX graph with `.dcz` placeholders -> `.dcz` file.

Steps (each a function below):
1. `_baked_copy`: an eval-mode copy of the model whose compressed parameters hold exactly
   `LayerState.weight()` (parametrizations removed), so the graph computes what the file stores.
2. `_to_onnx_by_name`: compressed weights never reach the exporter by value (serialized, they
   cost ~3x their size in memory): the copy holds memory-free stand-ins, the export writes no
   parameters, and the initializers are put back by name - placeholders for compressed weights.
   If the exporter made tensors of its own (constant folding) the copy gets the real weights and
   steps 2-3 below run instead.
2. `_to_onnx`: torch's TorchScript exporter (opset 17, dynamic batch axis). It runs in
   `TrainingMode.PRESERVE` on the eval copy because `EVAL` fuses BatchNorm into the conv weights,
   which would rescale shared weights per channel and break their codebook; BatchNorm that the
   compressor folded beforehand is gone already, BatchNorm left in stays an exact node.
   (The dynamo exporter works too but takes ~6x longer here and only targets opset 18.)
3. `_match_initializers`: each initializer back to its parameter - by name, then by value (the
   exporter renames constant-folded tensors), then by transposed value for 2-D weights.
4. `onnx_graph.plan_tensors`: compressed weights become SparseShared / Shared / Sparse, other float
   initializers Raw (all as placeholders); int initializers stay inline in the graph.
5. `formats.write` (atomic), metadata `source.*` / `compress.*`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.nn.utils import parametrize

from dcz import formats
from dcz.compressor.config import CompressConfig
from dcz.compressor.errors import CompressError
from dcz.compressor.linear import linear_metadata
from dcz.compressor.never_larger import first_within, inline_candidate
from dcz.compressor.onnx_graph import (
    TensorPlan,
    compacted_graph,
    dumps_with_graph,
    find_weights,
    initializer_array,
    make_placeholder,
    plan_metadata,
    plan_tensors,
    to_placeholders,
)
from dcz.compressor.report import ACCURACY_KEY, METRIC_KEY
from dcz.compressor.state import LayerState
from dcz.formats.atomic import atomic_write_bytes

OPSET = 17
# How far the model's own weight may drift from LayerState.weight() before we call the state stale.
_STALE_TOLERANCE = 1e-5


# --- 1. a copy of the model holding exactly the compressed weights ------------------------------


def canonical_param_name(name: str) -> str:
    """'fc1.parametrizations.weight.original' -> 'fc1.weight' (the name without parametrizations)."""
    return name.replace(".parametrizations.", ".").removesuffix(".original")


def _strip_parametrizations(model: torch.nn.Module, replaced: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Bake parametrizations of a deep copy into plain parameters, leaving the original model intact.

    torch keeps each parametrized tensor as a property of a per-module generated class that a deep
    copy shares with the original, and `remove_parametrizations` deletes that property from the
    class: so each copied module first gets its own clone of the generated class. Tensors in
    `replaced` ((module path, tensor name)) are removed without evaluation: the caller sets them.
    """
    for path, module in model.named_modules():
        if parametrize.is_parametrized(module):
            cls = module.__class__
            own = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, own)
            for tensor_name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(
                    module, tensor_name, leave_parametrized=(path, tensor_name) not in replaced
                )


def _baked_copy(
    model: torch.nn.Module, layers: Mapping[str, LayerState], stand_ins: bool = False
) -> tuple[torch.nn.Module, dict[str, LayerState]]:
    """Eval copy with each compressed parameter set to its state's dense weight; states by canonical name.

    The compressed parameters (and their parametrizations' buffers) are not copied: the copy gets
    each state's weight instead, after checking it against the model's current weight. With
    `stand_ins`, it gets a memory-free stand-in of the weight's shape (see `_stand_in`) instead;
    `_set_weights` puts the real weights in later if needed.
    """
    params = {canonical_param_name(n): p for n, p in model.named_parameters()}
    targets: dict[str, tuple[str, LayerState]] = {}
    memo: dict[int, object] = {}
    for given, state in layers.items():
        name = canonical_param_name(given)
        if name not in params:
            raise CompressError(f"layers[{given!r}]: the model has no parameter {name!r}")
        targets[name] = (given, state)
        path, _, tensor_name = name.rpartition(".")
        module = model.get_submodule(path)
        skipped = [params[name]]
        if parametrize.is_parametrized(module, tensor_name):
            skipped += list(module.parametrizations[tensor_name].buffers())
        for tensor in skipped:  # placeholders: replaced below, never evaluated
            memo[id(tensor)] = (
                torch.nn.Parameter(torch.empty(0), requires_grad=False)
                if isinstance(tensor, torch.nn.Parameter)
                else torch.empty(0)
            )
    baked = copy.deepcopy(model, memo).eval()
    _strip_parametrizations(baked, frozenset(tuple(n.rpartition(".")[::2]) for n in targets))
    by_name: dict[str, LayerState] = {}
    for index, (name, (given, state)) in enumerate(targets.items()):
        path, _, tensor_name = name.rpartition(".")
        module = model.get_submodule(path)
        if stand_ins and _same_shared_weight(module, tensor_name, state):
            tensor = _stand_in(state.shape, index)  # the state is what the model computes with: no dense check needed
        else:
            weight = _checked_weight(given, module, tensor_name, state)
            tensor = _stand_in(state.shape, index) if stand_ins else torch.from_numpy(weight)
            del weight
        setattr(baked.get_submodule(path), tensor_name, torch.nn.Parameter(tensor, requires_grad=False))
        by_name[name] = state
    return baked, by_name


def _stand_in(shape, index: int) -> torch.Tensor:
    """A tensor of `shape` that costs (almost) no memory: zeros from calloc'ed pages, one value set.

    numpy's zeros come from calloc: fresh pages that the kernel maps only when written (reading
    them costs nothing), and the exporter only reads. Zeros keep the traced forward harmless
    (no NaN reaches e.g. LAPACK). The first value is a distinct tiny number per stand-in because the
    exporter merges equal initializers (`torch.equal`): stand-ins must equal nothing.
    """
    array = np.zeros(tuple(shape), dtype=np.float32)
    if array.size:
        array.reshape(-1)[0] = np.float32(2.0**-100) * np.float32(index + 1)  # normal: no flush-to-zero
    return torch.from_numpy(array)


def _set_weights(baked: torch.nn.Module, states: Mapping[str, LayerState]) -> None:
    """Put each state's dense weight into the baked copy (replacing its stand-in)."""
    for name, state in states.items():
        path, _, tensor_name = name.rpartition(".")
        setattr(
            baked.get_submodule(path),
            tensor_name,
            torch.nn.Parameter(torch.from_numpy(state.weight()), requires_grad=False),
        )


def _same_array(a, b) -> bool:
    """a and b hold the same values (None only equals None); shared memory short-cuts the comparison."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype and a.__array_interface__ == b.__array_interface__:
        return True  # the very same memory (the pipeline's states alias the model's buffers)
    return bool(np.array_equal(a, b))


def _same_shared_weight(module: torch.nn.Module, tensor_name: str, state: LayerState) -> bool:
    """True when `module`'s only parametrization of `tensor_name` is the pipeline's SharedWeight holding
    exactly the state's codebook, labels and mask: the weight it computes is then state.weight(),
    which can be trusted without building either dense tensor (2 x the weight in memory)."""
    from dcz.compressor.share import SharedWeight

    if not state.shared or not parametrize.is_parametrized(module, tensor_name):
        return False
    chain = module.parametrizations[tensor_name]
    if len(chain) != 1 or not isinstance(chain[0], SharedWeight):
        return False
    shared = chain[0]
    with torch.no_grad():
        centroids = shared.centroids.detach().cpu().numpy()
        labels = shared.labels.detach().cpu().numpy().reshape(state.shape)
        mask = None if shared.mask is None else shared.mask.detach().cpu().numpy().reshape(state.shape)
    if shared.row_group is not None and state.group_rows != shared.group_rows:
        return False
    return (
        _same_array(np.asarray(state.codebook, dtype=np.float32), centroids)
        and _same_array(None if state.labels is None else np.asarray(state.labels).reshape(state.shape), labels)
        and _same_array(None if state.mask is None else np.asarray(state.mask, dtype=bool).reshape(state.shape), mask)
    )


def _checked_weight(given: str, module: torch.nn.Module, tensor_name: str, state: LayerState) -> np.ndarray:
    """state.weight(), after checking that it is what `module` computes with now (shape, drift)."""
    weight = state.weight()
    with torch.no_grad():
        current = getattr(module, tensor_name).detach().cpu().numpy()
    if tuple(current.shape) != tuple(weight.shape):
        raise CompressError(
            f"layers[{given!r}]: state shape {tuple(weight.shape)} != parameter shape {tuple(current.shape)}"
        )
    drift = _max_abs_difference(current, weight)
    scale = max(1.0, float(weight.max()), -float(weight.min())) if weight.size else 1.0  # max |w|, no temporary
    if drift > _STALE_TOLERANCE * scale:
        raise CompressError(
            f"layers[{given!r}]: the model's weight differs from the compressed state by {drift:.3g} "
            "(state is stale: re-run the sharing step or pass the model it was computed on)"
        )
    return weight


def _max_abs_difference(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> float:
    """max |a - b| over row chunks (no whole-tensor temporary)."""
    if a.size == 0:
        return 0.0
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    step = max(1, chunk // max(1, a2.shape[1]))
    return max(float(np.max(np.abs(a2[i : i + step] - b2[i : i + step]))) for i in range(0, a2.shape[0], step))


# --- 2. export ---------------------------------------------------------------------------------


def _as_args(example_input) -> tuple:
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def _io_names(model: torch.nn.Module, args: tuple) -> tuple[list[str], list[str]]:
    try:
        with torch.no_grad():
            out = model(*args)
    except Exception as error:  # the user's forward can raise anything: one clear line
        raise CompressError(
            f"example_input: {type(model).__name__} fails on it ({type(error).__name__}: {error})".splitlines()[0]
        ) from error
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    inputs = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    outputs = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    return inputs, outputs


@contextlib.contextmanager
def _shape_inference_without(stand_ins: list[torch.Tensor]):
    """Hide the stand-ins from the TorchScript exporter's ONNX shape inference.

    That pass serializes every parameter a node reads into a scratch ONNX model (~2x the largest
    weight in memory, stand-ins included, as it copies their bytes); weights of Conv / Gemm /
    MatMul never decide a shape, and without their values the pass types them from the trace.
    """
    name = "_jit_pass_onnx_graph_shape_type_inference"
    original = getattr(torch._C, name, None)
    hidden = {t.data_ptr() for t in stand_ins}
    if original is None or not hidden:
        yield
        return

    def without_stand_ins(graph, params, opset):
        return original(
            graph,
            {k: v for k, v in params.items() if not (isinstance(v, torch.Tensor) and v.data_ptr() in hidden)},
            opset,
        )

    setattr(torch._C, name, without_stand_ins)
    try:
        yield
    finally:
        setattr(torch._C, name, original)


def _dynamic_axes(inputs: list[str], outputs: list[str], args) -> dict:
    """Batch (dim 0) is dynamic everywhere; integer inputs (token ids, masks) also get a dynamic
    sequence length (dim 1), so a model exported with 16 tokens runs on any length."""
    axes = {n: {0: "batch"} for n in inputs + outputs}
    for name, arg in zip(inputs, args):
        if isinstance(arg, torch.Tensor) and not arg.is_floating_point() and arg.dim() >= 2:
            axes[name][1] = "sequence"
    return axes


def _to_onnx(
    model: torch.nn.Module, example_input, export_params: bool = True, stand_ins: list[torch.Tensor] | None = None
) -> onnx.ModelProto:
    """TorchScript ONNX export of an eval model: opset 17, dynamic batch axis on inputs and outputs.

    With `export_params=False` the graph holds no weight data: every initializer the exporter
    would write (after constant folding and deduplication) is a graph input of the same name
    instead, in the same order.
    """
    args = _as_args(example_input)
    inputs, outputs = _io_names(model, args)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        try:
            with _shape_inference_without(stand_ins or []):
                torch.onnx.export(
                    model,
                    args,
                    buffer,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes=_dynamic_axes(inputs, outputs, args),
                    keep_initializers_as_inputs=False,
                    training=torch.onnx.TrainingMode.PRESERVE,
                    do_constant_folding=True,
                    export_params=export_params,
                )
        except Exception as error:  # torch raises many types; the user needs one clear message
            raise CompressError(
                f"torch.onnx.export failed for {type(model).__name__}: {error}".splitlines()[0]
            ) from error
    return onnx.load_from_string(buffer.getvalue())


def _to_onnx_by_name(model: torch.nn.Module, example_input, states: Mapping[str, LayerState]) -> onnx.ModelProto | None:
    """The export with every compressed weight already a placeholder, or None when names do not suffice.

    Exports without parameters (the serialized weights would cost ~3x their size in memory), then
    turns each parameter input back into an initializer by its name: compressed weights become
    placeholders (name, float32, the state's dims), other tensors take the model's values. Returns
    None - the caller then exports with values and matches by value - when the exporter created a
    tensor that is no parameter or buffer (constant folding, e.g. a transposed weight) or when a
    state's weight is not used under its own name (e.g. a tied parameter's second name).
    """
    named = dict(model.named_parameters()) | dict(model.named_buffers())
    graph = _to_onnx(model, example_input, export_params=False, stand_ins=[named[n] for n in states if n in named])
    user_inputs = len(_as_args(example_input))
    stored = [value.name for value in graph.graph.input[user_inputs:]]
    if any(name not in named for name in stored) or any(name not in stored for name in states):
        return None
    stored = _merge_equal_states(graph, stored, states)
    initializers = []
    for name in stored:
        if name in states:
            initializers.append(make_placeholder(name, onnx.TensorProto.FLOAT, tuple(named[name].shape)))
        else:
            initializers.append(numpy_helper.from_array(named[name].detach().cpu().numpy(), name))
    del graph.graph.input[user_inputs:]
    graph.graph.initializer.extend(initializers)
    return graph


def _state_digest(state: LayerState) -> str:
    """A hash of everything that defines state.weight() (equal digests: equal weights)."""
    digest = hashlib.sha256(repr((tuple(state.shape), state.group_rows)).encode())
    for part in (state.codebook, state.labels, state.mask, state.values):
        array = None if part is None else np.ascontiguousarray(part)
        digest.update(b"-" if array is None else f"{array.dtype}{array.shape}".encode())
        if array is not None:
            digest.update(array.data)
    return digest.hexdigest()


def _merge_equal_states(graph: onnx.ModelProto, stored: list[str], states: Mapping[str, LayerState]) -> list[str]:
    """Store equal compressed weights once, as the exporter does with equal initializers.

    Stand-ins never compare equal, so the exporter cannot merge them: states with the same
    encoding are merged here instead - later names are renamed to the first in every node (and
    subgraph) and dropped from `stored`, which is returned.
    """
    first: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name in stored:
        if name in states:
            renamed_to = first.setdefault(_state_digest(states[name]), name)
            if renamed_to != name:
                renamed[name] = renamed_to
    if renamed:
        _rename_inputs(graph.graph, renamed)
    return [name for name in stored if name not in renamed]


def _rename_inputs(graph: onnx.GraphProto, renamed: Mapping[str, str]) -> None:
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in renamed:
                node.input[index] = renamed[name]
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                _rename_inputs(subgraph, renamed)


# --- 3. initializers back to parameters -------------------------------------------------------


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()


@dataclass
class _Match:
    state: LayerState
    transposed: bool = False


def _match_initializers(graph: onnx.ModelProto, states: Mapping[str, LayerState]) -> dict[str, _Match]:
    """initializer name -> the state it stores. Each state is used at most once.

    Names first (the TorchScript exporter keeps parameter names), when the values agree; only the
    states left over are hashed and compared with the remaining float initializers (renamed or
    constant-folded ones).
    """
    floats = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    # a name is trusted only with equal values: an exporter may fold e.g. BatchNorm into a weight
    # and keep the parameter's name for the folded tensor
    matches = {
        t.name: _Match(states[t.name])
        for t in floats
        if t.name in states and np.array_equal(initializer_array(t), states[t.name].weight())
    }
    left = {name: states[name].weight() for name in states if name not in matches}
    if left:
        by_digest = {_digest(w): (name, False) for name, w in left.items()}
        for name, w in left.items():
            if w.ndim == 2:
                by_digest.setdefault(_digest(w.T), (name, True))  # a symmetric W stays untransposed
        for tensor in floats:
            if tensor.name in matches or not left:
                continue
            found = by_digest.get(_digest(initializer_array(tensor)))
            if found is not None and found[0] in left:
                matches[tensor.name] = _Match(states[found[0]], transposed=found[1])
                del left[found[0]]
    if left:  # the exporter stores equal tensors once: a state equal to a matched one is covered by it
        stored = {_digest(m.state.weight()) for m in matches.values()}
        left = {name: w for name, w in left.items() if _digest(w) not in stored}
    if left:
        raise CompressError(f"layers[{sorted(left)[0]!r}]: no initializer of the exported graph holds this weight")
    return matches


def _transposed(state: LayerState) -> LayerState:
    """The state of W.T (MatMul exports of Linear layers store the weight transposed)."""
    if state.group_rows is not None:
        raise CompressError(f"layers[{state.name!r}]: exported transposed, which per-row codebook groups cannot follow")
    t = lambda a: None if a is None else np.ascontiguousarray(np.asarray(a).T)  # noqa: E731
    return LayerState(
        state.name,
        state.layer_type,
        tuple(reversed(state.shape)),
        t(state.mask),
        state.codebook,
        t(state.labels),
        state.label_bits,
        state.gap_bits,
        None,
        t(state.values),
    )


# --- 4. states by initializer name -----------------------------------------------------------


def _states_by_initializer(matches: Mapping[str, _Match]) -> dict[str, LayerState]:
    return {name: (_transposed(m.state) if m.transposed else m.state) for name, m in matches.items()}


# --- public API ---------------------------------------------------------------------------------


def _metadata(
    model: torch.nn.Module,
    plan: TensorPlan,
    metadata: Mapping[str, Any] | None,
    accuracies: Mapping[str, float] | None,
    metric: str,
    lean: bool = False,
) -> dict[str, Any]:
    # provenance and the parameter -> tensor map document the file; a lean file (a ~10 KB model whose
    # header is several % of it) leaves them out: nothing that loads or runs the file reads them
    meta: dict[str, Any] = (
        {}
        if lean
        else {
            "source.framework": "torch",
            "source.torch_version": torch.__version__.split("+")[0],
            "source.model_class": type(model).__name__,
            "source.exporter": f"torch.onnx.export (TorchScript), opset {OPSET}",
            **plan_metadata(plan),
        }
    )
    if accuracies:
        meta[ACCURACY_KEY] = {str(stage): float(value) for stage, value in accuracies.items()}
        meta[METRIC_KEY] = metric
    meta.update(dict(metadata or {}))
    if isinstance(meta.get("compress.skipped"), Mapping):  # compressed at export after all: not skipped
        done = set(plan.compressed) | set(plan.compressed.values())
        meta["compress.skipped"] = {k: v for k, v in meta["compress.skipped"].items() if k not in done}
    return meta


def export_graph(
    model: torch.nn.Module,
    example_input,
    layers: Mapping[str, LayerState],
    raw_small: bool = True,
    kept_raw: Mapping[str, str] | None = None,
) -> tuple[onnx.ModelProto, TensorPlan]:
    """The placeholder graph and the `.dcz` tensors for `model` (no file written).

    kept_raw: parameter name -> why the compressor left it uncompressed (recorded in the report).
    """
    baked, states = _baked_copy(model, layers, stand_ins=True)
    reasons = {canonical_param_name(name): reason for name, reason in (kept_raw or {}).items()}
    graph = _to_onnx_by_name(baked, example_input, states)
    if graph is not None:  # compressed weights never serialized: placeholders by name
        del baked
        extra = share_left_over(graph, states, reasons, model)
        plan = plan_tensors(graph, {**states, **extra}, reasons, raw_small=raw_small)
        to_placeholders(graph, [t.name for t in plan.tensors if t.name not in states])
        return graph, plan
    _set_weights(baked, states)  # the exporter made tensors of its own: match them by value
    graph = _to_onnx(baked, example_input)
    del baked  # the graph holds every weight now: free the copy before planning (peak memory)
    by_initializer = _states_by_initializer(_match_initializers(graph, states))
    by_initializer.update(share_left_over(graph, by_initializer, reasons, model))
    plan = plan_tensors(graph, by_initializer, reasons, raw_small=raw_small)
    to_placeholders(graph, [t.name for t in plan.tensors])
    return graph, plan


def share_left_over(graph: onnx.ModelProto, states: Mapping[str, LayerState], reasons: dict, model=None) -> dict:
    """Safe-default codebooks for graph weights the torch pipeline could not handle.

    nn.MultiheadAttention's packed in_proj_weight and other parameters of layer types the pipeline
    does not know reach the graph as MatMul / Gemm / Gather weights: they are shared post-training
    here (compressor.safe, no fine-tuning), so the `.dcz` differs from `Compressed.model` by their
    sharing error (>= 38 dB SQNR). Weights the user's config kept raw stay raw. Removes the
    compressed ones from `reasons` (param name -> why kept raw).
    """
    from dcz.compressor.onnx_in import layer_state, weight_array

    plan = CompressConfig().for_layer("", "other")
    extra = {}
    for index, source in enumerate(find_weights(graph)):
        reason = reasons.get(source.name, "unsupported layer type")
        if source.name in states or source.origin != "initializer" or not reason.startswith("unsupported"):
            continue
        weight = weight_array(graph, source)
        state = layer_state(source, weight, None, plan, seed=index)
        if not isinstance(state, str):
            extra[source.name] = state
            state.name = _parameter_named(model, weight) or source.name
            reasons.pop(state.name, None)
    return extra


def _parameter_named(model, weight: np.ndarray) -> str | None:
    """The kept-raw parameter whose values the exporter stored as `weight` (as is or transposed:
    constant folding renames e.g. MultiheadAttention's in_proj_weight to onnx::MatMul_N)."""
    if model is None:
        return None
    for name, tensor in model.named_parameters():
        if tensor.numel() != weight.size or "parametrizations" in name:
            continue
        param = tensor.detach().cpu().numpy()
        if param.shape == weight.shape and np.array_equal(param, weight):
            return name
        if param.ndim == 2 and param.T.shape == weight.shape and np.array_equal(param.T, weight):
            return name
    return None


def export_dcz(
    model: torch.nn.Module,
    example_input,
    layers: Mapping[str, LayerState],
    path,
    metadata: Mapping[str, Any] | None = None,
    huffman: bool = True,
    raw_small: bool = True,
    *,
    accuracies: Mapping[str, float] | None = None,
    metric: str = "accuracy",
    kept_raw: Mapping[str, str] | None = None,
    compact_header: bool | None = None,
    compact_graph: bool = False,
    lean_metadata: bool = False,
    range_coding: bool = False,
    compact_container: bool = False,
):
    """Write `model` with its compressed `layers` (param name -> LayerState) to a `.dcz` at `path`.

    Compressed weights are stored in their Deep Compression encodings, other float initializers
    raw (with `raw_small`; otherwise they stay inline in the graph), int initializers inline.
    `metadata` adds keys (`compress.config`, `user.*`, ...); `accuracies` (stage -> metric value,
    in stage order) is recorded as `compress.accuracy` for the report; `kept_raw` (parameter name
    -> reason) names the weights the compressor chose not to compress. `compact_header` writes the
    header zlib-compressed (format 1.2; None: when that saves >= 1% of the file); `compact_graph` stores
    onnx_graph.compacted_graph's smaller equivalent graph (any reader); `lean_metadata` leaves out the
    provenance (`source.*`) and `compress.layers` / `kept_raw` (what `metadata` gives is kept); `range_coding` lets
    streams take the adaptive range coding where it is smaller (format 1.3); `compact_container` writes format 1.4's
    compact container (SPEC 2.6) and the graph as `onnx.deflate` (SPEC 2.5.1). The file is never larger than
    the model's float ONNX export (compressor/never_larger.py). The write is atomic. Returns the file's
    `formats.SizeReport`.
    """
    try:
        graph, plan = export_graph(model, example_input, layers, raw_small, kept_raw)
        meta = {**_metadata(model, plan, metadata, accuracies, metric, lean_metadata), **linear_metadata(layers, plan)}

        def dumps(graph_model: onnx.ModelProto, compact: bool | None) -> tuple:
            options = dict(compact_header=compact, range_coding=range_coding, compact_container=compact_container)
            return dumps_with_graph(plan.tensors, graph_model, meta, huffman, **options), plan.tensors

        plain = dumps(compacted_graph(graph) if compact_graph else graph, compact_header)
        data, _ = first_within(
            [
                lambda: plain,
                lambda: dumps(compacted_graph(graph), True),
                lambda: inline_candidate(graph, plain[0], meta, huffman)[:2],
            ],
            lambda: len(export_onnx_dense(model, example_input)),
        )
        atomic_write_bytes(Path(path), data)
        return formats.loads(data).size_report()
    except formats.FormatError as error:
        raise CompressError(f"writing {path}: {error}") from error


def export_onnx_dense(
    model: torch.nn.Module, example_input, layers: Mapping[str, LayerState] | None = None, path=None
) -> bytes:
    """An ordinary ONNX model with the compressed weights stored dense (the "no .dcz" baseline).

    Returns the serialized model; also writes it to `path` when given.
    """
    baked, _ = _baked_copy(model, layers or {})
    data = _to_onnx(baked, example_input).SerializeToString()
    if path is not None:
        with open(path, "wb") as out:
            out.write(data)
    return data
