"""The graph section: 'onnx' as is, 'onnx.zlib' inflated with a cap; anything else is one clear error."""

import zlib

import pytest

from dcz.runtime import DczRuntimeError
from dcz.runtime.onnx_graph import graph_bytes

GRAPH = b"\x08\x08" + b"a graph" * 100


def test_both_formats_give_the_onnx_bytes():
    assert graph_bytes("onnx", GRAPH) == GRAPH
    assert graph_bytes("onnx.zlib", zlib.compress(GRAPH, 9)) == GRAPH


@pytest.mark.parametrize(
    "graph_format, data, message",
    [
        ("tflite", GRAPH, "graph_format is 'tflite'"),
        ("onnx.zlib", GRAPH, "not a valid zlib stream"),
        ("onnx.zlib", zlib.compress(GRAPH)[:-5], "truncated"),
        ("onnx.zlib", zlib.compress(GRAPH) + b"xx", "2 bytes after its zlib stream"),
    ],
)
def test_bad_graph_sections_are_refused(graph_format, data, message):
    with pytest.raises(DczRuntimeError, match=message):
        graph_bytes(graph_format, data)


def test_a_zlib_bomb_stops_at_the_cap(monkeypatch):
    import dcz.runtime.onnx_graph as onnx_graph

    monkeypatch.setattr(onnx_graph, "MAX_GRAPH_BYTES", 1000)
    with pytest.raises(DczRuntimeError, match="inflates past 1,000 bytes"):
        graph_bytes("onnx.zlib", zlib.compress(bytes(10**6)))
