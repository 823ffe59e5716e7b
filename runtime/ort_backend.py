"""ONNX Runtime backend: decoded arrays handed to ORT in memory, with no temp files and no protobuf copy.

Two ways to hand ORT the weights, both without serializing them into the graph:

* `initializers` (default): `SessionOptions.add_external_initializers(names, OrtValues)` fills the
  placeholders when ORT builds the session (onnxruntime InjectExternalInitializedTensors). The
  convention's placeholder form is accepted as is. ORT 1.31 *copies* the values while creating the
  session (checked by `ort_copies_external_initializers`), so our decoded arrays are dropped right
  after: steady state holds one copy, but session creation peaks at two.
* `inputs` (low_memory=True): placeholders become graph inputs and the arrays are bound with
  IOBinding at every run; ORT reads our buffers in place, so memory stays at one copy throughout.
  Graph optimizations that need constant weights (e.g. NCHWc conv layouts, weight prepacking)
  are skipped; BENCHMARKS.md measures what that costs.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from .errors import DczRuntimeError

_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")


class OrtSession:
    """An InferenceSession built from a placeholder graph and the decoded arrays."""

    def __init__(self, model: onnx.ModelProto, weights: Mapping[str, np.ndarray], providers: Sequence | None = None,
                 threads: int | None = None, inter_op_threads: int | None = None, weights_as_inputs: bool = False):
        self._providers = _check_providers(providers)
        self._threads = (threads, inter_op_threads)
        self.weights_as_inputs = weights_as_inputs
        names = list(weights)
        arrays = [np.ascontiguousarray(weights[n]) for n in names]
        values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
        if weights_as_inputs:
            self.session = self._create(_placeholders_as_inputs(model, set(names)), None)
            self._bound = dict(zip(names, values))
            self._arrays = arrays  # the OrtValues point into these: keep them alive
            self.weights_copied = False
        else:
            self.session = self._create(model, (names, values))
            self.weights_copied = ort_copies_external_initializers()
            # If ORT kept pointers instead of copying, the arrays must live as long as the session.
            self._arrays, self._values = ([], []) if self.weights_copied else (arrays, values)
        self._output_names = [o.name for o in self.session.get_outputs()]
        # InferenceSession.run, bound once: with weights as initializers it is all a run needs.
        self._run = self._run_bound if weights_as_inputs else self.session.run

    def _options(self, external) -> ort.SessionOptions:
        options = ort.SessionOptions()
        threads, inter = self._threads
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        if inter is not None:
            options.inter_op_num_threads = int(inter)
        if external is not None:
            options.add_external_initializers(*external)
        return options

    def _create(self, model: onnx.ModelProto, external) -> ort.InferenceSession:
        try:
            return self._session(model.SerializeToString(), external)
        except DczRuntimeError as exc:
            lowered = _lower_ir_version(model, str(exc))
            if lowered is None:
                raise
            return self._session(lowered, external)

    def _session(self, graph: bytes, external) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(graph, self._options(external), providers=self._providers)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise DczRuntimeError(f"ONNX Runtime refused the graph: {exc}") from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._run(self._output_names, feeds)
        except Exception as exc:
            raise DczRuntimeError(f"ONNX Runtime failed while running: {exc}") from None

    def _run_bound(self, output_names: list[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        binding = self.session.io_binding()  # one per call: run() stays thread-safe
        for name, value in self._bound.items():
            binding.bind_ortvalue_input(name, value)
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name in output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()


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


@functools.lru_cache(maxsize=None)
def ort_copies_external_initializers() -> bool:
    """Does this ORT copy `add_external_initializers` values (True) or use the buffers in place?

    Checked once per process on a 2x2 MatMul: change the array after session creation and see
    whether the session notices. ORT's own docs differ across versions; the check is what counts.
    """
    weight = np.eye(2, dtype=np.float32)
    placeholder = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 2], data_location=TensorProto.EXTERNAL)
    entry = placeholder.external_data.add()
    entry.key, entry.value = "location", "dcz"
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [placeholder])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    options = ort.SessionOptions()
    value = ort.OrtValue.ortvalue_from_numpy(weight)
    options.add_external_initializers(["w"], [value])
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    weight *= 2.0
    (y,) = session.run(None, {"x": np.ones((1, 2), np.float32)})
    return bool(np.allclose(y, 1.0))


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
