"""Linear weight quantization (compressor.linear): grids, exact integer rebuild, the ONNX-in path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from dcz import formats
from dcz.compressor.config import CompressConfig
from dcz.compressor.errors import CompressError
from dcz.compressor.linear import LinearScheme, integer_weight, parse_quantize, quantize
from dcz.compressor.onnx_in import compress_onnx

SCHEMES = st.builds(LinearScheme, st.integers(2, 8), st.booleans(), st.booleans(), st.booleans())


@given(
    SCHEMES,
    st.integers(1, 6),
    st.integers(1, 20),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.0, 0.5]),
)
def test_quantize_rounds_to_the_nearest_level_and_rebuilds_the_integers(scheme, rows, cols, seed, sparsity):
    rng = np.random.default_rng(seed)
    weight = (rng.normal(0, 1, (rows, cols)) * rng.uniform(0.01, 3)).astype(np.float32)
    mask = rng.random(weight.shape) >= sparsity if sparsity else None
    result = quantize(weight, mask, scheme)
    book = result.codebook if scheme.per_channel else np.broadcast_to(result.codebook, (rows, result.codebook.size))
    assert book.shape[1] == 2**scheme.bits
    decoded = np.take_along_axis(book, result.labels.astype(np.intp), axis=1)
    kept = np.ones(weight.shape, bool) if mask is None else mask
    # nearest level: the error is at most half a step, per row's scale
    scale = np.broadcast_to(result.scale, (rows,))[:, None]
    assert np.all(np.abs(decoded - weight)[kept] <= (scale * 0.5 * (1 + 1e-5) + 1e-7)[np.nonzero(kept)[0], 0])
    # the integers rebuilt from labels + metadata dequantize to exactly the codebook values
    info = result.metadata(scheme)
    q = integer_weight(result.labels, info).astype(np.int64)
    assert q.min() >= scheme.qmin and q.max() <= scheme.qmax
    zero = np.broadcast_to(np.array(info["zero_point"]), (rows,))[:, None]
    scales = np.broadcast_to(np.array(info["scale"], dtype=np.float32), (rows,))[:, None]
    assert np.array_equal((q - zero).astype(np.float32) * scales, decoded)
    if scheme.symmetric and scheme.signed:
        assert set(info["zero_point"]) == {0}


def test_parse_quantize_and_config_reject_bad_names():
    assert parse_quantize("int8") == (8, True) and parse_quantize("uint4") == (4, False)
    for bad in ("int9", "int1", "float8", "int"):
        with pytest.raises(CompressError, match="quantize"):
            parse_quantize(bad)
    with pytest.raises(CompressError, match=r"config.global.quantize"):
        CompressConfig.from_dict({"global": {"quantize": "int12"}})
    with pytest.raises(CompressError, match=r"config.global.per_channel"):
        CompressConfig.from_dict({"global": {"per_channel": "yes"}})


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (16, 64)).astype(np.float32), "w")
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dequantized(dcz_bytes: bytes, name: str) -> np.ndarray:
    """A per-channel weight as the graph computes it: DequantizeLinear(int8, scale, zero point, axis 0)."""
    from dcz import runtime

    loaded = runtime.load(dcz_bytes, backend=None)
    dq = next(n for n in loaded.onnx_model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == name)
    assert [a.i for a in dq.attribute if a.name == "axis"] == [0]
    inits = {i.name: numpy_helper.to_array(i) for i in loaded.onnx_model.graph.initializer}
    source = dq.input[0]
    cast = [n for n in loaded.onnx_model.graph.node if n.output[0] == source]
    q = loaded.tensors.decode_all()[cast[0].input[0]] if cast else inits[source]
    assert np.array_equal(q, np.round(q)) and -8 <= q.min() and q.max() <= 7  # int4 levels, as int8
    scale, zero = inits[dq.input[1]], inits[dq.input[2]].astype(np.int64)
    return ((q.astype(np.int64) - zero[:, None]) * scale[:, None]).astype(np.float32)


@pytest.mark.parametrize("per_channel", [False, True])
def test_onnx_in_stores_the_grid_and_its_scheme(per_channel):
    model = _model()
    config = {"global": {"quantize": "int4", "per_channel": per_channel, "prune": "sparsity", "sparsity": 0.5}}
    result = compress_onnx(model, config)
    with formats.loads(result.dcz) as dcz:
        info = dcz.metadata["compress.linear"]["w"]
        decoded = _dequantized(result.dcz, "w") if per_channel else dcz.tensor("w")
    assert info["scheme"] == "int4" and info["axis"] == (0 if per_channel else None)
    assert len(info["scale"]) == (16 if per_channel else 1)
    weight = numpy_helper.to_array(model.graph.initializer[0])
    assert np.count_nonzero(decoded) == weight.size // 2
    scale = np.array(info["scale"], dtype=np.float32).reshape(-1, 1)
    kept = decoded != 0
    assert np.all(np.abs(decoded - weight)[kept] <= np.broadcast_to(scale / 2 * 1.0001, weight.shape)[kept])


def test_torch_path_stores_the_grid_under_the_onnx_names(tmp_path):
    torch = pytest.importorskip("torch")
    import dcz

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    result = dcz.compress(net, torch.randn(2, 64), {"global": {"quantize": "int8", "symmetric": False}})
    assert not result.model[0].parametrizations["weight"][0].centroids.requires_grad  # the grid stays fixed
    path = tmp_path / "t.dcz"
    result.save(path)
    with formats.open(path) as dcz_file:
        linear = dcz_file.metadata["compress.linear"]
        assert set(linear) <= set(dcz_file.names) and linear
        name = sorted(linear)[0]
        info, decoded = linear[name], dcz_file.tensor(name)
    assert info["scheme"] == "int8" and not info["symmetric"]
    q = np.round(decoded / info["scale"][0]) + info["zero_point"][0]
    assert np.array_equal((q - info["zero_point"][0]).astype(np.float32) * np.float32(info["scale"][0]), decoded)
