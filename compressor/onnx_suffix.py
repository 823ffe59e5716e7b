"""One replaced weight's outputs from only the part of the graph it reaches (ONNX Runtime, no torch).

A layer's sensitivity is measured with every other weight dense, so every node the weight does not
reach computes exactly what the dense model computes. The tensors such nodes hand to the reached
ones (the "frontier": on MiniLM a block's input and the attention mask's bias, on a CNN the
previous layer's activation) are computed once by a dense run exposing them, and a model made of
the reached nodes alone is then run on them for each candidate. On a 6-block transformer a
MatMul in block b runs (6 - b) / 6 of the encoder instead of all of it.

The frontier is kept per calibration batch (a value may depend on the batch, e.g. a Shape), within
a byte cap: layers are grouped in order so that one dense run gives each group's frontier. A layer
in a graph holding a subgraph (If / Loop / Scan), whose frontier alone is over the cap, or
whose partial model ORT refuses is run whole, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper

from dcz.compressor.calib_data import Calibration
from dcz.compressor.onnx_damage import OrtRunner

FRONTIER_BYTES = 256 << 20


def reached_nodes(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto] | None:
    """The nodes whose value depends on tensor `name`, in graph order; None if the graph holds a
    subgraph anywhere (If / Loop / Scan read outer tensors without listing them as inputs)."""
    subgraph = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in subgraph for node in graph.node for a in node.attribute):
        return None
    reached: set[str] = {name}
    nodes = []
    for node in graph.node:  # graph order is topological (ONNX requires it)
        if any(i in reached for i in node.input if i):
            nodes.append(node)
            reached.update(o for o in node.output if o)
    return nodes


def frontier(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[str]:
    """Tensors the nodes read that other nodes make (graph inputs and initializers are not among them)."""
    made = {o for node in nodes for o in node.output}
    given = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    seen: dict[str, None] = {}
    for node in nodes:
        for name in node.input:
            if name and name not in made and name not in given:
                seen.setdefault(name)
    return list(seen)


def partial_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], border: Mapping[str, np.ndarray]):
    """The model of `nodes` alone: the border tensors (typed by their sample values) and the graph
    inputs the nodes read are its inputs; its outputs are the graph outputs the nodes make."""
    graph = model.graph
    read = {name for node in nodes for name in node.input if name}
    made = {o for node in nodes for o in node.output}
    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)
        for name, value in border.items()
    ]
    inputs += [v for v in graph.input if v.name in read]
    sub = helper.make_graph(
        list(nodes),
        f"{graph.name}_part",
        inputs,
        [v for v in graph.output if v.name in made],
        [t for t in graph.initializer if t.name in read],
    )
    part = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    part.functions.extend(model.functions)
    return part


class _Plan:
    """One weight's partial run: its nodes, border tensor names, and (once built) its session."""

    def __init__(self, nodes, border: list[str]):
        self.nodes, self.border = nodes, border
        self.session = None
        self.failed = False
        self.input_names: list[str] = []
        self.output_names: list[str] = []


class SuffixRunner:
    """`run(weight, replaced)` = OrtRunner.run(calib, replaced) when `replaced` holds that weight
    (and possibly its bias) and every other weight is dense, computed from the reached nodes only."""

    def __init__(self, runner: OrtRunner, calib: Calibration, names: list[str]):
        self.runner, self.calib = runner, calib
        self.model = runner.fed_model
        graph = self.model.graph
        self.outputs = [v.name for v in graph.output]
        self.plans: dict[str, _Plan] = {}
        for name in names:
            nodes = reached_nodes(graph, name)
            border = frontier(graph, nodes) if nodes else []
            if border:  # no border: the weight is read straight from the inputs, the whole model runs
                self.plans[name] = _Plan(nodes, border)
        self.groups = self._groups(names)
        self.loaded: set[str] = set()
        self.values: list[dict[str, np.ndarray]] = []  # per calibration batch: border and output values

    def run(self, name: str, replaced: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        plan = self.plans.get(name)
        if plan is None or plan.failed or not self._load(name):
            return self.runner.run(self.calib, replaced)
        if plan.session is None:
            for other in self.plans.values():  # one partial session alive at a time (each holds its own arena)
                other.session = None
            if not self._build(plan):
                return self.runner.run(self.calib, replaced)
        try:
            return self._run_part(plan, {**self.runner.dense, **replaced})
        except Exception:  # never worse than before: a partial run that fails is run whole from then on
            plan.failed = True
            return self.runner.run(self.calib, replaced)

    def _run_part(self, plan: _Plan, weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        parts = []
        for batch, values in zip(self._batches(), self.values):
            feeds = {
                n: (values[n] if n in values else batch[n] if n in batch else weights[n]) for n in plan.input_names
            }
            made = dict(zip(plan.output_names, plan.session.run(None, feeds)))
            parts.append([made[o] if o in made else values[o] for o in self.outputs])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.outputs))]

    # --- border values, a group of layers at a time -------------------------------------------------

    def _groups(self, names: list[str]) -> dict[str, frozenset[str]]:
        """weight -> the border tensors one dense run computes for its group (consecutive weights
        whose borders fit FRONTIER_BYTES together); weights with no border are left out."""
        wanted = sorted({b for plan in self.plans.values() for b in plan.border})
        if not wanted:
            return {}
        per_row = self._bytes_per_row(wanted)
        groups: dict[str, frozenset[str]] = {}
        current: set[str] = set()
        members: list[str] = []
        for name in names:
            if name not in self.plans:
                continue
            border = set(self.plans[name].border)
            if sum(per_row[b] for b in current | border) > FRONTIER_BYTES and members:
                groups.update(dict.fromkeys(members, frozenset(current)))
                current, members = set(), []
            if sum(per_row[b] for b in border) > FRONTIER_BYTES:
                self.plans[name].failed = True  # alone over the cap: run whole
                continue
            current |= border
            members.append(name)
        groups.update(dict.fromkeys(members, frozenset(current)))
        return groups

    def _bytes_per_row(self, wanted: list[str]) -> dict[str, int]:
        """Bytes of each border tensor over the whole calibration set, from one dense run on its first row."""
        one = self.calib.head(1)
        values = self._probe(wanted, one)[0]
        return {name: int(values[name].nbytes) * self.calib.rows for name in wanted}

    def _load(self, name: str) -> bool:
        group = self.groups.get(name)
        if group is None:
            return False
        if group != self.loaded:
            self.values = self._probe(sorted(group), self.calib)
            self.loaded = set(group)
        return True

    def _probe(self, wanted: list[str], calib: Calibration) -> list[dict[str, np.ndarray]]:
        """Per batch: the dense values of `wanted` and of the graph outputs."""
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        extra = [n for n in wanted if n not in self.outputs]
        probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in extra)
        session = ort.InferenceSession(
            probe.SerializeToString(), self.runner.options, providers=["CPUExecutionProvider"]
        )
        names = self.outputs + extra
        values = []
        for start in range(0, calib.rows, self.runner.batch):
            feeds = {n: a[start : start + self.runner.batch] for n, a in calib.inputs.items()}
            values.append(dict(zip(names, self.runner.session_run(session, {**feeds, **self.runner.dense}, start))))
        return values

    def _batches(self):
        rows, size = self.calib.rows, self.runner.batch
        for start in range(0, rows, size):
            yield {n: a[start : start + size] for n, a in self.calib.inputs.items()}

    def _build(self, plan: _Plan) -> bool:
        import onnxruntime as ort

        sample = {n: self.values[0][n] for n in plan.border}
        try:
            part = partial_model(self.model, plan.nodes, sample)
            plan.session = ort.InferenceSession(
                part.SerializeToString(), self.runner.options, providers=["CPUExecutionProvider"]
            )
        except Exception:  # ORT refuses some partial graphs (an op wanting a constant input): run whole
            plan.failed = True
            return False
        plan.input_names = [i.name for i in plan.session.get_inputs()]
        plan.output_names = [o.name for o in plan.session.get_outputs()]
        return True
