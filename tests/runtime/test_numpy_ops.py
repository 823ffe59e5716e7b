"""Each NumPy op against ONNX Runtime on the same single-node graph (ORT is the oracle)."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from rt_onnx_builders import OPSET, single_op

from dcz.runtime import DczRuntimeError
from dcz.runtime.numpy_exec import NumpyExecutor, supported_ops

RNG = np.random.default_rng(0)


def _compare(model, arrays, atol=1e-5):
    feeds = {f"in{i}": a for i, a in enumerate(arrays)}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = NumpyExecutor(model, {}).run(feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-5)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CONV_CASES = [
    dict(x=(2, 3, 9, 9), w=(4, 3, 3, 3)),
    dict(x=(1, 4, 10, 8), w=(6, 2, 3, 3), group=2, pads=[1, 0, 2, 1], strides=[2, 1]),
    dict(x=(1, 6, 7, 7), w=(6, 1, 3, 3), group=6, pads=[1, 1, 1, 1]),  # depthwise (mobilenet)
    dict(x=(1, 2, 11, 11), w=(3, 2, 3, 3), dilations=[2, 2], strides=[2, 3]),
    dict(x=(1, 2, 9, 10), w=(3, 2, 4, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(x=(1, 2, 9, 10), w=(3, 2, 4, 3), auto_pad="SAME_LOWER"),
    dict(x=(1, 2, 9, 10), w=(3, 2, 2, 2), auto_pad="VALID", strides=[3, 3]),
    dict(x=(2, 3, 12), w=(5, 3, 3), pads=[2, 1]),  # 1-D
    dict(x=(1, 3, 32, 32), w=(8, 3, 7, 7), pads=[3, 3, 3, 3], strides=[2, 2]),  # resnet stem
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("bias", [False, True])
def test_conv(case, bias):
    case = dict(case)
    x, w = rand(*case.pop("x")), rand(*case.pop("w"))
    arrays = [x, w] + ([rand(w.shape[0])] if bias else [])
    _compare(single_op("Conv", arrays, **case), arrays)


POOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    dict(kernel_shape=[3, 2], strides=[1, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 2], dilations=[2, 2]),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: str(c))
def test_max_pool(case):
    x = rand(2, 3, 9, 10)
    _compare(single_op("MaxPool", [x], **case), [x])


@pytest.mark.parametrize("case", [c for c in POOL_CASES if "dilations" not in c], ids=lambda c: str(c))
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(case, count_include_pad):
    x = rand(2, 3, 9, 10)
    _compare(single_op("AveragePool", [x], count_include_pad=count_include_pad, **case), [x])


@pytest.mark.parametrize(
    "op,arrays,attrs",
    [
        ("Relu", [rand(3, 4)], {}),
        ("Sigmoid", [rand(3, 4)], {}),
        ("Tanh", [rand(3, 4)], {}),
        ("LeakyRelu", [rand(3, 4)], {"alpha": 0.2}),
        ("HardSigmoid", [rand(3, 4)], {}),
        ("HardSwish", [rand(3, 4)], {}),
        ("Add", [rand(2, 3, 4), rand(4)], {}),
        ("Sub", [rand(2, 3, 4), rand(3, 1)], {}),
        ("Mul", [rand(2, 3, 4), rand(1, 3, 4)], {}),
        ("Div", [rand(2, 3), rand(2, 3) + 4], {}),
        ("Div", [np.array([7, -7, 6], np.int64), np.array([2, 2, -4], np.int64)], {}),
        ("Sqrt", [np.abs(rand(5))], {}),
        ("Neg", [rand(5)], {}),
        ("Identity", [rand(3)], {}),
        ("MatMul", [rand(2, 5, 3), rand(3, 4)], {}),
        ("Gemm", [rand(3, 5), rand(4, 5), rand(4)], {"transB": 1}),
        ("Gemm", [rand(5, 3), rand(5, 4), rand(3, 4)], {"transA": 1, "alpha": 0.5, "beta": 2.0}),
        ("Softmax", [rand(3, 7)], {}),
        ("Softmax", [rand(2, 3, 4)], {"axis": 1}),
        ("LogSoftmax", [rand(3, 7)], {}),
        ("GlobalAveragePool", [rand(2, 3, 5, 5)], {}),
        ("GlobalMaxPool", [rand(2, 3, 5, 5)], {}),
        ("Flatten", [rand(2, 3, 4, 5)], {"axis": 2}),
        ("Reshape", [rand(2, 3, 4), np.array([0, -1], np.int64)], {}),
        ("Transpose", [rand(2, 3, 4)], {"perm": [2, 0, 1]}),
        ("Concat", [rand(2, 3), rand(2, 5)], {"axis": 1}),
        ("Shape", [rand(2, 3, 4)], {"start": 1}),
        ("Gather", [rand(5, 4), np.array([[0, -1], [2, 3]], np.int64)], {"axis": 0}),
        ("Unsqueeze", [rand(3, 4), np.array([0, -1], np.int64)], {}),
        ("Squeeze", [rand(1, 3, 1, 4), np.array([2], np.int64)], {}),
        ("Clip", [rand(4, 5), np.array(0, np.float32), np.array(6, np.float32)], {}),
        ("Cast", [rand(4)], {"to": 7}),
        ("ReduceMean", [rand(2, 3, 4)], {"axes": [1, -1], "keepdims": 1}),
        ("ReduceSum", [rand(2, 3, 4), np.array([1], np.int64)], {"keepdims": 0}),
        (
            "Slice",
            [
                rand(5, 6),
                np.array([1, 0], np.int64),
                np.array([4, 6], np.int64),
                np.array([0, 1], np.int64),
                np.array([2, 3], np.int64),
            ],
            {},
        ),
        ("Pad", [rand(2, 3), np.array([1, 0, 0, 2], np.int64), np.array(1.5, np.float32)], {}),
        ("Expand", [rand(3, 1), np.array([2, 3, 4], np.int64)], {}),
        ("ConstantOfShape", [np.array([2, 3], np.int64)], {}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_simple_ops(op, arrays, attrs):
    _compare(single_op(op, arrays, **attrs), arrays)


def test_batch_normalization():
    arrays = [rand(2, 3, 4, 4), rand(3), rand(3), rand(3), np.abs(rand(3)) + 0.1]
    _compare(single_op("BatchNormalization", arrays, epsilon=1e-3), arrays)


def test_softmax_before_opset_13_coerces_to_2d():
    arrays = [rand(2, 3, 4)]
    _compare(single_op("Softmax", arrays, opset=11, axis=1), arrays)


def test_reduce_mean_axes_as_input_from_opset_18():
    arrays = [rand(2, 3, 4), np.array([2, 3], np.int64)[:1] - 1]
    _compare(single_op("ReduceMean", arrays, opset=18, keepdims=0), arrays)


def test_dropout_is_identity_at_inference():
    x = rand(3, 4)
    (y,) = NumpyExecutor(single_op("Dropout", [x]), {}).run({"in0": x})
    np.testing.assert_array_equal(y, x)


def test_unknown_op_is_named_with_supported_list():
    model = single_op("Einsum", [rand(2, 2)], equation="ij->ji")
    with pytest.raises(DczRuntimeError, match="Einsum") as info:
        NumpyExecutor(model, {})
    assert "Conv" in str(info.value) and "Gemm" in str(info.value)


def test_control_flow_is_refused_naming_the_node_and_op():
    branch = helper.make_graph(
        [helper.make_node("Identity", ["in1"], ["b"])], "branch", [], [helper.make_tensor_value_info("b", 1, None)]
    )
    model = single_op("If", [np.array(True), rand(2)], then_branch=branch, else_branch=branch)
    del model.graph.node[0].input[1:]  # If takes the condition only; the branches read in1 from outside
    with pytest.raises(DczRuntimeError, match=r"node 'If_0' \(If\): attribute '(then|else)_branch' holds a subgraph"):
        NumpyExecutor(model, {})


def test_required_ops_are_registered():
    required = {
        "Conv",
        "Gemm",
        "MatMul",
        "Relu",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Add",
        "Concat",
        "Flatten",
        "Reshape",
        "Softmax",
        "BatchNormalization",
        "Dropout",
        "Identity",
        "Clip",
        "Mul",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Constant",
    }
    assert required <= set(supported_ops())


def test_opset_is_what_the_builder_declares():
    assert OPSET >= 13


def test_sigmoid_of_large_logits_matches_onnxruntime_without_warnings():
    x = np.array([-1e4, -100.0, -88.8, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.exp(-x) overflowed here on nudenet's logits
        _compare(single_op("Sigmoid", [x]), [x])
