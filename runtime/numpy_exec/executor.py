"""The NumPy executor: runs an ONNX graph node by node with the registered op functions.

The graph is compiled once into a plan (op function, input/output names, attributes); `run` then
walks the plan, freeing every intermediate after its last use so peak memory stays near the largest
layer's activations rather than the sum of all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

from ..errors import DczRuntimeError
from ..onnx_graph import opset_version
from . import ops_models, ops_nn, ops_quant, ops_tensor  # noqa: F401  (importing registers the ops)
from .registry import OpContext, lookup
from .sparse import CsrRows, matmul_transposed


def inline_array(tensor: onnx.TensorProto, what: str) -> np.ndarray:
    """The values of a tensor stored in the graph; a malformed one (e.g. an undefined element type) is the
    runtime's error, naming it, not onnx's TypeError / ValueError."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # onnx raises TypeError, ValueError, KeyError ... for malformed tensors
        raise DczRuntimeError(f"graph {what}: cannot read its values ({exc})") from None


@dataclass(frozen=True)
class Step:
    fn: object
    ctx: OpContext
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    attrs: dict
    op_type: str


def _attribute(attr: onnx.AttributeProto, node: onnx.NodeProto, label: str):
    if attr.type == AttributeProto.GRAPH or attr.type == AttributeProto.GRAPHS:
        raise DczRuntimeError(
            f"node {label!r} ({node.op_type}): attribute {attr.name!r} holds a subgraph; control flow "
            "(If / Loop / Scan) is not supported by the NumPy backend, ONNX Runtime runs it"
        )
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return value  # Constant/ConstantOfShape convert it themselves
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def _arity(fn) -> tuple[int, int | None]:
    """(required, most) positional inputs of an op function (most None: variadic)."""
    params = list(inspect.signature(fn).parameters.values())[1:]  # after ctx
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    variadic = any(p.kind == p.VAR_POSITIONAL for p in params)
    return required, None if variadic else len(positional)


def _check_arity(fn, node: onnx.NodeProto, label: str) -> None:
    """Refuse at load a node whose required inputs are missing (absent or "") or that has too many."""
    required, most = _arity(fn)
    given = list(node.input)
    missing = [i for i in range(required) if i >= len(given) or not given[i]]
    if missing:
        raise DczRuntimeError(
            f"node {label!r} ({node.op_type}) lacks required input #{missing[0]} (it needs {required})"
        )
    if most is not None and len(given) > most:
        raise DczRuntimeError(f"node {label!r} ({node.op_type}) has {len(given)} inputs, at most {most} allowed")


class SparseFC:
    """Internal op: a Gemm/MatMul whose weight is held as CSR rows (see sparse.py)."""

    def __init__(self, weight: CsrRows, alpha: float = 1.0, beta: float = 1.0):
        self.weight, self.alpha, self.beta = weight, alpha, beta

    def __call__(self, ctx, x, c=None):
        lead = x.shape[:-1]
        y = matmul_transposed(x.reshape(-1, x.shape[-1]), self.weight)
        if self.alpha != 1.0:
            y *= np.float32(self.alpha)
        if c is not None:
            y += c * np.float32(self.beta) if self.beta != 1.0 else c
        return y.reshape(lead + (y.shape[-1],))


def _weight_orientation(node: onnx.NodeProto) -> bool | None:
    """For x @ W-style nodes: True if W must be transposed to get (out, in) rows, None if not FC."""
    if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm" and not attrs.get("transA", 0):
        return not attrs.get("transB", 0)
    if node.op_type == "MatMul":
        return True
    return None


def sparse_candidates(model: onnx.ModelProto) -> dict[str, bool]:
    """Weights (input 1 of Gemm/MatMul) that every consumer could read as CSR rows -> transpose flag.

    The CSR holds W as (out, in) rows: Gemm(transB=1) stores it so; MatMul and Gemm(transB=0)
    store (in, out) and need the transpose. A 2-D weight with any other consumer stays dense.
    """
    orientation: dict[str, bool | None] = {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if not name:
                continue
            flag = _weight_orientation(node) if position == 1 else None
            if name in orientation and orientation[name] != flag:
                flag = None
            orientation[name] = flag
    dims = {t.name: len(t.dims) for t in model.graph.initializer}
    return {n: f for n, f in orientation.items() if f is not None and dims.get(n) == 2}


class NumpyExecutor:
    """Compile an ONNX ModelProto against a mapping of initializer arrays; `run` feeds inputs."""

    def __init__(
        self,
        model: onnx.ModelProto,
        weights: Mapping[str, np.ndarray],
        sparse_weights: Mapping[str, CsrRows] | None = None,
    ):
        self._opset = opset_version(model)
        # Stored weights stay behind their (lazy) mapping and are fetched when a node first reads them.
        self._weights = weights
        self._constants: dict[str, object] = {
            init.name: inline_array(init, f"initializer {init.name!r}")
            for init in model.graph.initializer
            if init.data_location != onnx.TensorProto.EXTERNAL
        }
        self._outputs = [o.name for o in model.graph.output]
        self._steps = [self._compile(i, node, sparse_weights or {}) for i, node in enumerate(model.graph.node)]
        self._last_use = self._last_uses()
        self.sparse_nodes = [s.ctx.node for s in self._steps if isinstance(s.fn, SparseFC)]

    def _compile(self, index: int, node: onnx.NodeProto, sparse: Mapping[str, CsrRows]) -> Step:
        label = node.name or f"{node.op_type}_{index}"
        ctx = OpContext(self._opset, label, node.op_type, len(node.output))
        attrs = {a.name: _attribute(a, node, label) for a in node.attribute}
        sparse_step = self._sparse_step(node, attrs, sparse, ctx)
        if sparse_step is not None:
            return sparse_step
        fn = lookup(node.op_type, node.domain, label)
        _check_arity(fn, node, label)
        return Step(fn, ctx, tuple(node.input), tuple(node.output), attrs, node.op_type)

    @staticmethod
    def _sparse_step(node, attrs, sparse, ctx) -> Step | None:
        """Gemm(x, W, b, transB=1) / MatMul(x, W) with W chosen for sparse -> SparseFC."""
        if node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] not in sparse:
            return None
        csr = sparse[node.input[1]]
        if _weight_orientation(node) is None:
            return None
        if node.op_type == "Gemm":
            fn = SparseFC(csr, attrs.get("alpha", 1.0), attrs.get("beta", 1.0))
        else:
            fn = SparseFC(csr)
        inputs = (node.input[0],) + tuple(node.input[2:3])
        return Step(fn, ctx, inputs, tuple(node.output[:1]), {}, "SparseFC")

    def _last_uses(self) -> dict[str, int]:
        last: dict[str, int] = {}
        for i, step in enumerate(self._steps):
            for name in step.inputs:
                if name:
                    last[name] = i
        return last

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        env: dict[str, object] = dict(self._constants)
        env.update(feeds)
        keep = set(self._outputs)
        for i, step in enumerate(self._steps):
            args = []
            for name in step.inputs:
                if not name:
                    args.append(None)
                elif name in env:
                    args.append(env[name])
                elif name in self._weights:
                    args.append(self._weights[name])
                else:
                    raise DczRuntimeError(
                        f"node {step.ctx.node!r} ({step.op_type}) reads {name!r}, which nothing produced"
                    )
            try:
                result = step.fn(step.ctx, *args, **step.attrs)
            except DczRuntimeError:
                raise
            except MemoryError:
                raise DczRuntimeError(f"node {step.ctx.node!r} ({step.op_type}) ran out of memory") from None
            except Exception as exc:  # noqa: BLE001 - numpy's errors on bad graph data, as the runtime's one error
                raise DczRuntimeError(
                    f"node {step.ctx.node!r} ({step.op_type}) failed: {type(exc).__name__}: {exc}"
                ) from None
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(step.outputs, results):
                if name:
                    env[name] = np.asarray(value)
            for name in step.inputs:
                if name and self._last_use.get(name) == i and name not in keep:
                    env.pop(name, None)
        missing = [o for o in self._outputs if o not in env]
        if missing:
            raise DczRuntimeError(f"graph output {missing[0]!r} is never produced")
        return [env[o] for o in self._outputs]
