"""Weights inside If / Loop / Scan bodies: found where they are, moved to the main graph to be compressed.

A `.dcz` placeholder is a top-level initializer (the runtime fills only those). Exporters that write
control flow (silero-vad's If on the sample rate holds a whole model per branch) keep the weights as
Constant nodes or initializers of the branch. Such a tensor can move to the main graph's initializers
under the same name: a subgraph reads outer-scope names, so every node computes the same thing. Only a
name defined once in the whole model moves (no shadowing to get wrong). numpy + onnx only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx
from onnx import TensorProto


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def all_graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph, then every nested graph depth-first in node order (deterministic)."""

    def walk(graph: onnx.GraphProto):
        yield graph
        for node in graph.node:
            for inner in subgraphs(node):
                yield from walk(inner)

    return walk(model.graph)


@dataclass(frozen=True)
class Scope:
    """One graph and what its nodes see: producers of every visible name (inner ones shadow outer ones)
    and the initializers of enclosing subgraphs (the main graph's are not among them)."""

    graph: onnx.GraphProto
    producers: dict[str, onnx.NodeProto]
    inner_initializers: dict[str, TensorProto]


def scopes(model: onnx.ModelProto) -> Iterator[Scope]:
    """Every graph of `model` with its visible names, main graph first, depth-first in node order."""

    def walk(graph: onnx.GraphProto, producers: dict, inits: dict, top: bool):
        producers = {**producers, **{out: node for node in graph.node for out in node.output if out}}
        if not top:
            inits = {**inits, **{t.name: t for t in graph.initializer}}
        yield Scope(graph, producers, inits)
        for node in graph.node:
            for inner in subgraphs(node):
                yield from walk(inner, producers, inits, False)

    return walk(model.graph, {}, {}, True)


def definition_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How many times each name is defined anywhere (node outputs, initializers, graph inputs)."""
    counts: dict[str, int] = {}
    for graph in all_graphs(model):
        names = [o for n in graph.node for o in n.output if o] + [t.name for t in graph.initializer]
        inits = {t.name for t in graph.initializer}
        names += [v.name for v in graph.input if v.name not in inits]  # IR < 4 lists initializers as inputs
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts


def constant_value(node: onnx.NodeProto) -> TensorProto | None:
    """The tensor of a Constant node given by its `value` attribute (the only form weights take)."""
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            return attr.t
    return None


def hoist_to_main(model: onnx.ModelProto, names) -> None:
    """Move the Constant nodes (at any depth) and subgraph initializers producing `names` into the main
    graph's initializers, same name and values: consumers are untouched and compute the same thing."""
    wanted = set(names)
    moved: list[TensorProto] = []
    for graph in all_graphs(model):
        keep = []
        for node in graph.node:
            tensor = constant_value(node) if node.op_type == "Constant" else None
            if tensor is not None and node.output[0] in wanted:
                moved.append(_renamed(tensor, node.output[0]))
            else:
                keep.append(node)
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
        if graph is not model.graph and any(t.name in wanted for t in graph.initializer):
            moved.extend(_renamed(t, t.name) for t in graph.initializer if t.name in wanted)
            _remove_initializers(graph, wanted)
    model.graph.initializer.extend(moved)


def _renamed(tensor: TensorProto, name: str) -> TensorProto:
    copy = TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def _remove_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    kept = [t for t in graph.initializer if t.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [v for v in graph.input if v.name not in names]  # IR < 4: the initializer was an input too
    del graph.input[:]
    graph.input.extend(inputs)
