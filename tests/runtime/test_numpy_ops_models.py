"""The ops real models bring (transformers, OCR detectors) against ONNX Runtime on single-node graphs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper
from rt_onnx_builders import inline, make_model, single_op, value

from dcz.runtime.numpy_exec import NumpyExecutor

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def compare(model, feeds, atol=1e-5):
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = NumpyExecutor(model, {}).run(feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, atol=atol, rtol=1e-5)


def compare_single(op_type, arrays, opset=17, atol=1e-5, **attrs):
    compare(single_op(op_type, arrays, opset=opset, **attrs), {f"in{i}": a for i, a in enumerate(arrays)}, atol)


def test_elementwise_and_reductions():
    x = rand(3, 5, 7) * 3
    compare_single("Erf", [x], atol=2e-7)
    compare_single("Gelu", [x], opset=20, atol=1e-6)
    compare_single("Pow", [np.abs(x), np.array(0.5, np.float32)])
    compare_single("Where", [x > 0, x, -x])
    compare_single("Equal", [np.round(x), np.round(x[:1])])
    compare_single("ReduceL2", [x, np.array([1, 2])], opset=18, keepdims=1)
    compare_single("Range", [np.array(2, np.int64), np.array(11, np.int64), np.array(3, np.int64)])


def test_layer_normalization():
    compare_single("LayerNormalization", [rand(2, 4, 16), rand(16), rand(16)], epsilon=1e-12, atol=1e-5)


RESIZE_CASES = [
    dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor", scales=[1, 1, 2, 2]),
    dict(mode="nearest", scales=[1, 1, 2, 3]),  # half_pixel, round_prefer_floor (the defaults)
    dict(mode="linear", scales=[1, 1, 2, 2]),
    dict(mode="linear", coordinate_transformation_mode="align_corners", sizes=[2, 3, 9, 13]),
    dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel", scales=[1, 1, 0.5, 0.5]),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=str)
def test_resize(case):
    case = dict(case)
    x = rand(2, 3, 6, 5)
    scales, sizes = case.pop("scales", None), case.pop("sizes", None)
    extra = [inline("scales", np.array(scales, np.float32))] if scales else [inline("sizes", np.array(sizes, np.int64))]
    node_inputs = ["x", "", "scales"] if scales else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", node_inputs, ["y"], **case)
    model = make_model([node], [value("x", list(x.shape))], [helper.make_empty_tensor_value_info("y")], extra)
    compare(model, {"x": x})


CONV_TRANSPOSE_CASES = [
    dict(x=(1, 4, 5, 5), w=(4, 3, 2, 2), strides=[2, 2]),  # PP-OCR detectors' 2x upsampling
    dict(x=(2, 4, 5, 6), w=(4, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], group=2),
    dict(x=(1, 2, 7), w=(2, 3, 3), pads=[1, 0]),  # 1-D, stride 1
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=str)
def test_conv_transpose(case):
    case = dict(case)
    x, w = rand(*case.pop("x")), rand(*case.pop("w"))
    compare_single("ConvTranspose", [x, w, rand(w.shape[1] * case.get("group", 1))], **case)


def test_magika_and_yolo_ops():
    x = rand(3, 5, 7)
    compare_single("Exp", [x])
    compare_single("Reciprocal", [x + 4])
    compare_single("Max", [x, x[:1] * 2, np.array(0.1, np.float32)])
    compare_single("Min", [x, x[:, :1]])
    compare_single("Max", [x])


@pytest.mark.parametrize(
    "sizes, attrs, outputs, opset",
    [
        ([2, 5], {"axis": 1}, 2, 17),  # sizes as an input (YOLOv8's C2f)
        (None, {"axis": -1}, 3, 17),  # equal parts, as many as outputs
        (None, {"axis": 1, "split": [1, 4, 2]}, 3, 11),  # sizes as an attribute
        (None, {"axis": 1, "num_outputs": 4}, 4, 18),  # 7 = 2 + 2 + 2 + 1
    ],
)
def test_split(sizes, attrs, outputs, opset):
    x = rand(2, 7, 6)
    arrays = [x] if sizes is None else [x, np.array(sizes, np.int64)]
    compare(
        single_op("Split", arrays, n_outputs=outputs, opset=opset, **attrs), {f"in{i}": a for i, a in enumerate(arrays)}
    )


def test_split_sizes_that_do_not_add_up_are_refused():
    from dcz.runtime import DczRuntimeError

    model = single_op("Split", [rand(2, 7), np.array([3, 3], np.int64)], n_outputs=2, axis=1)
    with pytest.raises(DczRuntimeError, match=r"\(Split\): split sizes \[3, 3\] do not add up"):
        NumpyExecutor(model, {}).run({"in0": rand(2, 7), "in1": np.array([3, 3], np.int64)})
    uneven = single_op("Split", [rand(2, 7)], n_outputs=3, axis=1)  # before opset 18: equal parts only
    with pytest.raises(DczRuntimeError, match=r"\(Split\): dim 1 of shape \(2, 7\) does not split into 3"):
        NumpyExecutor(uneven, {}).run({"in0": rand(2, 7)})
