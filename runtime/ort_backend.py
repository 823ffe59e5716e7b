"""ONNX Runtime backend: decoded arrays handed to ORT in memory, no temp files, no protobuf copy.

`SessionOptions.add_external_initializers(names, OrtValues)` injects each placeholder's data when
ORT builds the session graph (onnxruntime InjectExternalInitializedTensors). On CPU the OrtValues
wrap the numpy buffers, so the arrays must outlive the session: `OrtSession` keeps them.
The placeholder form of the .dcz convention is accepted by ORT as is.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from .errors import DczRuntimeError
from .onnx_graph import opset_version

_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")


class OrtSession:
    """An InferenceSession plus the arrays it reads its weights from."""

    def __init__(self, model: onnx.ModelProto, weights: Mapping[str, np.ndarray], providers: Sequence | None = None,
                 threads: int | None = None, inter_op_threads: int | None = None):
        providers = _check_providers(providers)
        self._arrays = [np.ascontiguousarray(weights[name]) for name in weights]
        self._values = [ort.OrtValue.ortvalue_from_numpy(a) for a in self._arrays]
        names = list(weights)
        graph = model.SerializeToString()
        try:
            self.session = self._create(graph, names, providers, threads, inter_op_threads)
        except DczRuntimeError as exc:
            lowered = _lower_ir_version(model, str(exc))
            if lowered is None:
                raise
            self.session = self._create(lowered, names, providers, threads, inter_op_threads)

    def _create(self, graph: bytes, names, providers, threads, inter_op_threads) -> ort.InferenceSession:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        if inter_op_threads is not None:
            options.inter_op_num_threads = int(inter_op_threads)
        options.add_external_initializers(names, self._values)
        try:
            return ort.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise DczRuntimeError(f"ONNX Runtime refused the graph: {exc}") from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, dict(feeds))
        except Exception as exc:
            raise DczRuntimeError(f"ONNX Runtime failed while running: {exc}") from None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()


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
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if needed > supported:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = supported
    opset_version(copy)  # the default domain must be declared
    return copy.SerializeToString()
