"""ONNX Runtime backend: decoded arrays handed to ORT in memory, with no temp files and no protobuf copy.

Two ways to hand ORT a weight, both without serializing it into the graph:

* as an initializer: `SessionOptions.add_external_initializers(names, OrtValues)` fills the
  placeholder when ORT builds the session (onnxruntime InjectExternalInitializedTensors). ORT 1.31
  *copies* the value while creating the session (checked by `ort_copies_external_initializers`), so
  our decoded array is dropped right after; the session then owns the only copy and may prepack it
  (Gemm/MatMul) or reorder it (NCHWc Conv). Session creation peaks at two copies of such weights.
* in place: the placeholder becomes a graph input and our OrtValue is fed with every run; ORT reads
  our buffer, so that weight is in memory once, always. ORT cannot prepack it.

`SessionOptions.add_initializer` (shared initializers, used in place) is not usable here: ORT wants a
full initializer in the graph to override, and refuses the convention's placeholder (external data
'dcz' does not exist) and a data-less one (data count 0 does not match the shape).

Default: fully connected weights (every consumer a Gemm or MatMul) of >= IN_PLACE_BYTES go in
place, everything else is an initializer. Measured (docs/benchmarks/runtime.md): a 100M-parameter
FC stack peaks at ~1.2x its dense size instead of 2.3x; batch-1 Gemm is as fast or faster in place
(ORT's prepacked GEMM loses to its unpacked path at M=1), batch 64 ~1.1x slower; LeNets and resnet18
have no weight that large and keep every initializer. `weights_as_inputs` (runtime.load's
`low_memory`) overrides: True puts every weight in place, False none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from dcz.formats.layout import DCZ_LOCATION

from .errors import DczRuntimeError, run_error

_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")

IN_PLACE_BYTES = 16 * 2**20  # smaller weights: a second copy during session creation costs little
IN_PLACE_OPS = frozenset({"Gemm", "MatMul"})  # Conv weights stay initializers: NCHWc needs them constant


class OrtSession:
    """An InferenceSession built from a placeholder graph and the decoded arrays.

    weights_copied  ORT holds its own copy of the weights given as initializers (probed once)
    in_place        names of the weights ORT reads from our arrays (kept alive with the session)
    releasable      names whose decoded arrays the caller may drop: ORT has its own copy
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        weights: Mapping[str, np.ndarray],
        providers: Sequence | None = None,
        threads: int | None = None,
        inter_op_threads: int | None = None,
        weights_as_inputs: bool | None = None,
        serialized: bytes | None = None,
    ):
        """`serialized`: `model` as bytes, if the caller has them (the stored graph): ORT gets them as they
        are, unless weights go in place (then the adapted graph is serialized)."""
        self._providers = _check_providers(providers)
        self._threads = (threads, inter_op_threads)
        self.weights_as_inputs = weights_as_inputs
        # ORT drops initializers nothing reads while resolving the graph, then refuses to fill them.
        used = referenced_names(model.graph)
        arrays = {n: np.ascontiguousarray(weights[n]) for n in weights if n in used}
        if weights_as_inputs is None:
            in_place = in_place_weights(model, arrays, IN_PLACE_BYTES)
        else:
            in_place = set(arrays) if weights_as_inputs else set()
        initializers = [n for n in arrays if n not in in_place]
        if in_place:
            model, serialized = _placeholders_as_inputs(model, in_place), None
        external = (
            (initializers, [ort.OrtValue.ortvalue_from_numpy(arrays[n]) for n in initializers])
            if initializers
            else None
        )
        self.session = self._create(model, serialized, external)
        self.weights_copied = bool(initializers) and ort_copies_external_initializers()
        # If ORT kept pointers instead of copying, every array must live as long as the session.
        self.releasable = initializers if self.weights_copied else []
        self.in_place = sorted(in_place)
        self._arrays = {n: a for n, a in arrays.items() if n not in self.releasable}
        self._weight_feeds = {n: ort.OrtValue.ortvalue_from_numpy(arrays[n]) for n in self.in_place}
        self._output_names = [o.name for o in self.session.get_outputs()]
        # InferenceSession.run, bound once: with every weight an initializer it is all a run needs.
        self._run = self._run_with_weights if self._weight_feeds else self.session.run
        # (InferenceSession.run, output names) when a run needs nothing but the caller's feeds:
        # Model.run's one-array fast path calls it directly, without this object's own frame.
        self.direct = None if self._weight_feeds else (self.session.run, self._output_names)

    def _options(self, external) -> ort.SessionOptions:
        options = ort.SessionOptions()
        # errors reach the caller as one DczRuntimeError: ORT's own warning lines would only precede it
        options.log_severity_level = 3
        threads, inter = self._threads
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        if inter is not None:
            options.inter_op_num_threads = int(inter)
        if external is not None:
            options.add_external_initializers(*external)
        return options

    def _create(self, model: onnx.ModelProto, serialized: bytes | None, external) -> ort.InferenceSession:
        try:
            return self._session(model.SerializeToString() if serialized is None else serialized, external)
        except DczRuntimeError as exc:
            lowered = _lower_ir_version(model, str(exc))
            if lowered is None:
                raise
            return self._session(lowered, external)

    def _session(self, graph: bytes, external) -> ort.InferenceSession:
        try:
            # enable_fallback=0: ORT's Python layer would otherwise print an "EP Error" banner and retry on
            # any failure, before the one-line DczRuntimeError (an atheris finding: a non-UTF-8 name)
            return ort.InferenceSession(graph, self._options(external), providers=self._providers, enable_fallback=0)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise DczRuntimeError(f"ONNX Runtime refused the graph: {exc}") from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._run(self._output_names, feeds)
        except Exception as exc:
            raise run_error(exc) from None

    def _run_with_weights(self, output_names: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        # The in-place weights are graph inputs: fed as OrtValues over our arrays (no copy, no binding
        # object per call). Feed names never clash: the caller's are the graph's own inputs.
        return self.session.run(output_names, {**feeds, **self._weight_feeds})

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()


def referenced_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node of `graph` or of its subgraphs reads, and the graph's outputs."""
    names = {o.name for o in graph.output}
    stack = [graph]
    while stack:
        current = stack.pop()
        for node in current.node:
            names.update(node.input)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    stack.append(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(attribute.graphs)
    names.discard("")
    return names


def in_place_weights(model: onnx.ModelProto, arrays: Mapping[str, np.ndarray], min_bytes: int) -> set[str]:
    """Weights of at least `min_bytes` whose every consumer is a Gemm or MatMul (default domain)."""
    if not any(a.nbytes >= min_bytes for a in arrays.values()):
        return set()  # the common case (every weight small): no graph walk
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        kind = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        for name in node.input:
            if name in arrays:
                consumers.setdefault(name, set()).add(kind)
    return {n for n, kinds in consumers.items() if kinds <= IN_PLACE_OPS and arrays[n].nbytes >= min_bytes}


def _placeholders_as_inputs(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of `model` whose placeholder initializers are graph inputs of the same type and shape."""
    adapted = onnx.ModelProto()
    adapted.CopyFrom(model)
    graph = adapted.graph
    moved = [init for init in graph.initializer if init.name in names]
    kept = [init for init in graph.initializer if init.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {v.name for v in graph.input}
    for init in moved:
        if init.name not in declared:  # IR < 4 graphs list initializers among the inputs already
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return adapted


@functools.cache
def ort_copies_external_initializers() -> bool:
    """Does this ORT copy `add_external_initializers` values (True) or use the buffers in place?

    Checked once per process: y = x + big + small with a 16 KiB and a 4-byte weight (ORT may treat
    small initializers differently), read by Add (a kernel that reads the initializer itself, and
    prepacking off, so a prepacked copy cannot hide a buffer used in place); change both arrays
    after session creation and see whether the session notices. ORT's docs differ across versions;
    the check is what counts. False if either is read in place: then every array must stay alive.
    """
    big, small = np.ones((64, 64), np.float32), np.ones((1,), np.float32)
    placeholders = []
    for name, array in (("big", big), ("small", small)):
        placeholder = TensorProto(
            name=name, data_type=TensorProto.FLOAT, dims=list(array.shape), data_location=TensorProto.EXTERNAL
        )
        entry = placeholder.external_data.add()
        entry.key, entry.value = "location", DCZ_LOCATION
        placeholders.append(placeholder)
    nodes = [helper.make_node("Add", ["x", "big"], ["xb"]), helper.make_node("Add", ["xb", "small"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
        placeholders,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.add_external_initializers(["big", "small"], [ort.OrtValue.ortvalue_from_numpy(a) for a in (big, small)])
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    big *= 2.0
    small *= 2.0
    (y,) = session.run(None, {"x": np.zeros((64, 64), np.float32)})
    return bool(np.allclose(y, 2.0))


def _check_providers(providers: Sequence | None) -> list:
    if providers is None:
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    for entry in providers:
        name = entry[0] if isinstance(entry, (tuple, list)) else entry
        if name not in available:
            raise DczRuntimeError(f"execution provider {name!r} is not available here; available: {available}")
    return list(providers)


def _lower_ir_version(model: onnx.ModelProto, message: str) -> bytes | None:
    """If ORT is older than the graph's IR version, retry stamped with the IR ORT supports,
    provided the graph's opsets fit in it.

    onnx's helper stamps the newest IR on models it builds; the opsets, not the stamp, decide what
    the graph uses. Only the in-memory copy handed to ORT changes.
    """
    match = _IR_TOO_NEW.search(message)
    if match is None:
        return None
    supported = int(match.group(2))
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if needed > supported:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = supported
    return copy.SerializeToString()
