"""Post-training pruning sweep: accuracy and sparsity as the threshold (x layer std) grows.

Prunes copies of the weight tensors with |w| < q * std(w) per layer (Han et al. 2015's quality
parameter), evaluates each, and returns the curve. The evaluator is passed in, so the same sweep
serves an ONNX model (ONNX Runtime) and a torch model (the demo).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

DEFAULT_QUALITIES = tuple(np.round(np.arange(0.0, 2.51, 0.25), 2))


def prune_by_quality(weights: Mapping[str, np.ndarray], quality: float) -> tuple[dict[str, np.ndarray], float]:
    """Copies with |w| < quality * std(w) zeroed per tensor, and the overall fraction of zeros."""
    pruned, zeros, total = {}, 0, 0
    for name, weight in weights.items():
        nonzero = weight[weight != 0]
        threshold = quality * float(nonzero.std()) if nonzero.size else 0.0
        kept = np.where(np.abs(weight) < threshold, 0, weight).astype(weight.dtype)
        pruned[name] = kept
        zeros += int(kept.size - np.count_nonzero(kept))
        total += kept.size
    return pruned, zeros / max(total, 1)


def sweep(
    weights: Mapping[str, np.ndarray],
    evaluate: Callable[[Mapping[str, np.ndarray]], float],
    qualities: Sequence[float] = DEFAULT_QUALITIES,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[float], list[float]]:
    """(accuracy per quality, sparsity per quality)."""
    accuracy, sparsity = [], []
    for quality in qualities:
        pruned, zeros = prune_by_quality(weights, quality)
        accuracy.append(float(evaluate(pruned)))
        sparsity.append(zeros)
        if progress is not None:
            progress(quality)
    return accuracy, sparsity


def is_weight(array: np.ndarray) -> bool:
    """The tensors a sweep prunes: float matrices and kernels (biases and small tensors stay)."""
    return array.dtype.kind == "f" and array.ndim >= 2 and array.size >= 256


class OnnxEvaluator:
    """Top-1 accuracy of an ONNX model on (x, y) with some initializers replaced (ONNX Runtime)."""

    def __init__(self, model, x: np.ndarray, y: np.ndarray):
        import onnx.numpy_helper

        self.model = model
        self.x = x.astype(np.float32)
        self.y = y
        self.weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}

    def prunable(self) -> dict[str, np.ndarray]:
        return {name: array for name, array in self.weights.items() if is_weight(array)}

    def __call__(self, replaced: Mapping[str, np.ndarray]) -> float:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        values = [onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in replaced.values()]
        for name, value in zip(replaced, values):
            options.add_initializer(name, value)  # overrides the graph's initializer of that name
        session = onnxruntime.InferenceSession(
            self.model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        logits = session.run(None, {session.get_inputs()[0].name: self.x})[0]
        return float((logits.argmax(axis=1) == self.y).mean())
