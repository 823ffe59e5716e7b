"""The graph section: 'onnx' as is, 'onnx.zlib' and 'onnx.deflate' inflated with a cap; anything else is one
clear error."""

import zlib

import pytest

from dcz.formats.graph_codec import GRAPH_DICTIONARY, deflate_graph
from dcz.runtime import DczRuntimeError
from dcz.runtime.onnx_graph import graph_bytes

GRAPH = b"\x08\x08" + b"a graph" * 100


def test_both_formats_give_the_onnx_bytes():
    assert graph_bytes("onnx", GRAPH) == GRAPH
    assert graph_bytes("onnx.zlib", zlib.compress(GRAPH, 9)) == GRAPH
    assert graph_bytes("onnx.deflate", deflate_graph(GRAPH)) == GRAPH


@pytest.mark.parametrize(
    "graph_format, data, message",
    [
        ("tflite", GRAPH, "graph_format is 'tflite'"),
        ("onnx.zlib", GRAPH, "not a valid zlib stream"),
        ("onnx.zlib", zlib.compress(GRAPH)[:-5], "truncated"),
        ("onnx.zlib", zlib.compress(GRAPH) + b"xx", "2 bytes after its zlib stream"),
        ("onnx.deflate", b"\xff\xff", "not a valid deflate stream"),
        ("onnx.deflate", deflate_graph(GRAPH)[:-3], "truncated"),
        ("onnx.deflate", deflate_graph(GRAPH) + b"x", "1 bytes after its deflate stream"),
        ("onnx.deflate", zlib.compress(GRAPH), "not a valid deflate stream"),  # a zlib wrapper is not raw deflate
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


def test_a_deflate_bomb_stops_at_the_cap(monkeypatch):
    import dcz.runtime.onnx_graph as onnx_graph

    monkeypatch.setattr(onnx_graph, "MAX_GRAPH_BYTES", 1000)
    with pytest.raises(DczRuntimeError, match="inflates past 1,000 bytes"):
        graph_bytes("onnx.deflate", deflate_graph(bytes(10**6)))


def test_the_dictionary_is_what_deflate_refers_to():
    """Without the dictionary the stream does not inflate to the graph: the dictionary is part of the format."""
    data = deflate_graph(GRAPH_DICTIONARY[:200] + GRAPH)
    assert zlib.decompressobj(-15, GRAPH_DICTIONARY).decompress(data) == GRAPH_DICTIONARY[:200] + GRAPH
    with pytest.raises(zlib.error):
        zlib.decompressobj(-15).decompress(data)
