"""`runtime.load`: a .dcz opened, checked against its graph, and ready to run on a backend."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from dcz import formats
from dcz.formats.layout import DEFAULT_MAX_DENSE_BYTES, SPARSE_ENCODINGS

from .errors import DczRuntimeError, ModelDenseBudgetError, run_error
from .lazy import LazyTensors
from .onnx_graph import (
    Placeholder,
    graph_bytes,
    graph_inputs,
    graph_outputs,
    inline_functions,
    parse_graph_bytes,
    placeholders,
)
from .qdq import to_qdq, wants_qdq
from .qdq_dynamic import to_dynamic, wants_dynamic
from .validate import InputChecker, check_placeholders

BACKENDS = ("ort", "numpy", None)  # None: inspect tensors / report / metadata without a backend


class Model:
    """A loaded .dcz. Use `runtime.load` to make one.

    tensors   lazy mapping name -> decoded array (decoded on first use from the memory-mapped file)
    graph     the stored ONNX graph (bytes, with placeholders)
    metadata  the file's metadata dict
    report    the per-stage size report (formats.SizeReport)
    run(x)    inputs (dict name -> array, or one array) -> list of output arrays
    """

    def __init__(
        self,
        dcz_file,
        backend: str | None,
        lazy: bool,
        providers,
        threads,
        inter_op_threads,
        sparse,
        low_memory: bool | None = None,
    ):
        self._file = dcz_file
        self.backend = backend
        self.graph: bytes = graph_bytes(dcz_file.graph_format, dcz_file.graph)  # the ONNX bytes, inflated
        self.metadata: dict = dict(dcz_file.metadata)
        stored = parse_graph_bytes(self.graph)
        self.onnx_model: onnx.ModelProto = inline_functions(stored)
        # ORT can take the stored bytes as they are unless inlining changed the graph: no re-serializing.
        self._graph_as_stored = self.graph if self.onnx_model is stored else None
        self.placeholders: dict[str, Placeholder] = placeholders(self.onnx_model)
        check_placeholders(self.placeholders, {name: dcz_file.info(name) for name in dcz_file.names})
        self._inputs = graph_inputs(self.onnx_model)
        self._outputs = graph_outputs(self.onnx_model)
        self.tensors = LazyTensors(dcz_file)
        if not lazy:
            self.tensors.decode_all()
        self._engine = self._make_engine(providers, threads, inter_op_threads, sparse, low_memory)
        # ORT refuses a wrong rank or fixed dim itself: the per-call check leaves shapes to it.
        self._check_inputs = InputChecker(self._inputs, engine_checks_shapes=self.backend == "ort")
        self._direct = self._direct_path()
        self._run_feeds = _no_backend if self._engine is None else self._engine.run  # bound once, not per call

    def _make_engine(self, providers, threads, inter_op_threads, sparse, low_memory):
        if self.backend is None:
            return None
        if self.backend == "ort":
            if sparse:
                raise DczRuntimeError("sparse=True is a NumPy backend option; ONNX Runtime computes dense")
            from .ort_backend import OrtSession

            # ORT needs every weight when it builds the session: all are decoded here (batched), each once.
            graph, weights, serialized = self.onnx_model, self.tensors.decode_all(), self._graph_as_stored
            if wants_qdq(self.metadata):  # 8-bit linear weights: int8 kernels through a QDQ graph (runtime/qdq.py)
                graph, weights = to_qdq(graph, weights, self.metadata)
                serialized = None
            elif wants_dynamic(self.metadata):  # int8 weights, activations quantized at run time (qdq_dynamic.py)
                graph, weights = to_dynamic(graph, weights, self.metadata)
                serialized = None
            engine = OrtSession(
                graph,
                weights,
                providers,
                threads,
                inter_op_threads,
                weights_as_inputs=low_memory,
                serialized=serialized,
            )
            for name in engine.releasable:  # ORT holds its own copy now: ours would only double memory
                self.tensors.release(name)
            return engine
        if providers is not None or low_memory is not None:
            raise DczRuntimeError("providers and low_memory apply to backend='ort' only")
        from .numpy_exec import NumpyExecutor

        sparse_weights = self._sparse_weights() if sparse else {}
        dense = _DenseView(self.tensors, exclude=set(sparse_weights))
        return NumpyExecutor(self.onnx_model, dense, sparse_weights)

    def _direct_path(self) -> tuple | None:
        """(input name, dtype, InferenceSession.run, output names) for `run`'s one-array fast path:
        one float32 ndarray goes straight to ORT, which checks rank and dims itself."""
        single = self._check_inputs.dtype_only_single
        direct = getattr(self._engine, "direct", None)
        if single is None or direct is None:
            return None
        return single[0], single[1], direct[0], direct[1]

    def _sparse_weights(self) -> dict:
        """CSR forms of pruned FC weights whose every consumer can compute from CSR."""
        from .numpy_exec import CsrRows
        from .numpy_exec.executor import sparse_candidates

        chosen = {}
        for name, transpose in sparse_candidates(self.onnx_model).items():
            if name not in self.placeholders or self._file.info(name).encoding not in SPARSE_ENCODINGS:
                continue
            shape = self.placeholders[name].shape
            csr = CsrRows.from_file(self._file, name, (shape[0], int(np.prod(shape[1:]))))
            chosen[name] = csr.transposed() if transpose else csr
        return chosen

    # --- public API ----------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self._outputs]

    @property
    def report(self):
        return self._file.size_report()

    @property
    def version(self) -> tuple[int, int]:
        return tuple(self._file.version)

    def run(self, inputs) -> list[np.ndarray]:
        """Run the network: `inputs` is a dict name -> array, or one array for a single-input graph."""
        direct = self._direct
        if direct is not None and type(inputs) is _NDARRAY and inputs.dtype is direct[1]:
            try:
                return direct[2](direct[3], {direct[0]: inputs})
            except Exception as exc:  # ORT's own exception types
                error = run_error(exc)
        else:
            try:
                return self._run_feeds(self._check_inputs(inputs))
            except DczRuntimeError as failure:
                error = failure
        if self._engine is not None:
            self._check_inputs.explain(inputs)  # if the inputs are at fault, this error names the input
        raise error

    def close(self) -> None:
        """Drop the backend and the decoded tensors, and unmap the file."""
        self._engine = None
        self._run_feeds = _no_backend
        self._direct = None
        self._file.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<runtime.Model backend={self.backend!r} tensors={len(self.tensors)} inputs={self.input_names} outputs={self.output_names}>"


_NDARRAY = np.ndarray


def _no_backend(feeds) -> list[np.ndarray]:
    raise DczRuntimeError("this model was loaded with backend=None (or closed): nothing can run it")


class _DenseView(Mapping):
    """The lazy tensors minus the ones the executor holds in CSR form."""

    def __init__(self, tensors: LazyTensors, exclude: set[str]):
        self._tensors, self._exclude = tensors, exclude

    def __getitem__(self, name):
        if name in self._exclude:
            raise KeyError(name)
        return self._tensors[name]

    def __iter__(self):
        return (n for n in self._tensors if n not in self._exclude)

    def __len__(self):
        return len(self._tensors) - len(self._exclude)


def open_dcz(source, max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES):
    """formats.loads for bytes, else the file read into memory once (formats.open(mmap=False)): a
    loaded model never reads the file again, so replacing or truncating it cannot crash the process
    (a memory map would raise SIGBUS). The format's own error passes through unchanged."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return formats.loads(bytes(source), max_dense_bytes=max_dense_bytes)
    return formats.open(os.fspath(source), mmap=False, max_dense_bytes=max_dense_bytes)


def _check_total_dense(dcz_file, budget: int) -> None:
    """A model holds every tensor decoded: their sum is capped too (formats caps each one)."""
    total = 0
    for name in dcz_file.names:
        info = dcz_file.info(name)
        total += math.prod(info.shape) * np.dtype(info.dtype).itemsize  # Python ints: no overflow
    if total > budget:
        raise ModelDenseBudgetError(total, budget)


def load(
    path,
    backend: str = "ort",
    providers: Sequence | None = None,
    threads: int | None = None,
    lazy: bool = True,
    *,
    inter_op_threads: int | None = None,
    sparse: bool = False,
    low_memory: bool | None = None,
    max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> Model:
    """Open a .dcz and prepare it to run.

    backend           "ort" (ONNX Runtime), "numpy" (the built-in executor) or None (inspect only).
    providers         ORT execution providers (default CPU); `threads` / `inter_op_threads` set ORT's pools.
    lazy              decode each tensor on first use (default) instead of all at load.
    sparse            NumPy backend: compute pruned fully connected layers from their CSR form.
    low_memory        ORT backend, how weights reach ORT (see runtime/ort_backend.py):
                      None (default): fully connected weights of >= 16 MiB are fed in place as graph
                      inputs (one copy in memory; faster at batch 1, ~1.1x slower at batch 64 than
                      prepacked), the rest are initializers that ORT copies and prepacks;
                      True: every weight in place (lowest memory, no prepacking anywhere);
                      False: every weight an initializer (fastest batched FC, peak two copies of the
                      weights while the session is created).
    max_dense_bytes   budget of decoded dense bytes, per tensor and summed (default 2 GiB), checked when
                      the file is opened: raise it for a trusted model that is larger. Over it:
                      formats.DenseBudgetError (one tensor) or ModelDenseBudgetError (the sum).
    Raises formats.FormatError for a damaged file (before any inference) and DczRuntimeError when
    the graph and the stored tensors disagree (message names the tensor) or arguments are invalid.
    """
    if backend not in BACKENDS:
        raise DczRuntimeError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if threads is not None and (not isinstance(threads, int) or threads < 0):
        raise DczRuntimeError(f"threads must be a non-negative int (0 = ORT's default), got {threads!r}")
    dcz_file = open_dcz(path, max_dense_bytes)
    try:
        _check_total_dense(dcz_file, max_dense_bytes)
        return Model(dcz_file, backend, lazy, providers, threads, inter_op_threads, sparse, low_memory)
    except BaseException:
        dcz_file.close()
        raise
