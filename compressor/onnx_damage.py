"""Damage of replaced weights, measured by ONNX Runtime on the calibration data (no torch).

`OrtRunner` builds ONE session in which the compressible weights are graph inputs instead of
initializers, so trying a candidate is one `run` with that weight fed, not a new session (a
session costs ~the model's load time; the search tries hundreds of candidates).

`Damage` compares outputs with the dense model's on the same samples:
- with labels: the loss is top-1 accuracy lost in percentage points (what the user states with
  --max-loss, held by `bound`: the share of samples broken, not the net loss, plus one standard
  error); per-layer sensitivity uses the mean KL divergence KL(softmax(dense) || softmax(ours))
  of the first output instead, since accuracy on a few hundred samples moves in steps of 1/N and
  cannot rank small perturbations, while KL is smooth and, to second order, adds up over layers;
- without labels: the loss is the relative output error ||Y' - Y|| / ||Y|| over every float output
  and sample (for L2-normalised embeddings ||y' - y||^2 = 2 (1 - cos), so 0.2 is a cosine of 0.98);
  per-layer sensitivity is its square, the error energy, which adds up over independent errors.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from dcz.compressor.calib_data import Calibration
from dcz.compressor.errors import CompressError

MAX_BATCH = 256


class OrtRunner:
    """One ORT session over `model` with the named float32 initializers fed at run time."""

    def __init__(self, model: onnx.ModelProto, weights: Mapping[str, np.ndarray], threads: int | None = None):
        import onnxruntime as ort

        self.dense = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in weights.items()}
        self.fed_model = fed = _weights_as_inputs(model, set(self.dense))
        self.options = options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(fed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own types: one line
            raise CompressError(f"ONNX Runtime cannot load the model: {error}".splitlines()[0]) from None
        self.batch = batch_size_of(model)

    def run(self, calib: Calibration, replaced: Mapping[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Every output over every sample, with `replaced` weights instead of the dense ones."""
        weights = {**self.dense, **(replaced or {})}
        parts: list[list[np.ndarray]] = []
        for start in range(0, calib.rows, self.batch):
            feeds = {name: a[start : start + self.batch] for name, a in calib.inputs.items()}
            parts.append(self.session_run(self.session, {**feeds, **weights}, start))
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    @staticmethod
    def session_run(session, feeds: Mapping[str, np.ndarray], start: int) -> list[np.ndarray]:
        """Every output of one batch (rows from `start`); ORT's errors as one line."""
        try:
            return session.run(None, feeds)
        except Exception as error:
            raise CompressError(
                f"ONNX Runtime failed on the calibration data (rows {start}..): {error}".splitlines()[0]
            ) from None


def _weights_as_inputs(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of `model` where the named initializers are graph inputs (same name, dtype, dims)."""
    fed = onnx.ModelProto()
    fed.CopyFrom(model)
    graph = fed.graph
    keep = [t for t in graph.initializer if t.name not in names]
    moved = [t for t in graph.initializer if t.name in names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    listed = {v.name for v in graph.input}
    for tensor in moved:
        if tensor.name not in listed:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return fed


def batch_size_of(model: onnx.ModelProto) -> int:
    """Rows per run: a fixed leading dimension of an input (e.g. 1) is respected."""
    inits = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits or not value.type.tensor_type.shape.dim:
            continue
        first = value.type.tensor_type.shape.dim[0]
        if first.HasField("dim_value") and first.dim_value > 0:
            return int(first.dim_value)
    return MAX_BATCH


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64).reshape(logits.shape[0], -1)
    if np.all(z >= 0) and np.allclose(z.sum(1), 1.0, atol=1e-3):  # already probabilities
        return np.log(np.clip(z, 1e-12, None))
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


class Damage:
    """What the dense model does on the calibration data, and how far another run is from it."""

    def __init__(self, reference: list[np.ndarray], labels: np.ndarray | None, where: str = "calibration data"):
        self.reference = [r for r in reference if r.dtype.kind == "f"]
        if not self.reference:
            raise CompressError("the model has no float output to compare: damage cannot be measured")
        self.labels = labels
        if labels is not None:
            first = self.reference[0]
            classes = int(np.prod(first.shape[1:]))
            if first.ndim < 2 or classes < 2:
                raise CompressError(
                    f"--calib {where}: labels 'y' given, but the first output has shape {first.shape}, "
                    "not (N, classes); drop 'y' to compare outputs instead"
                )
            if labels.max() >= classes:
                raise CompressError(
                    f"--calib {where}: array 'y' holds label {int(labels.max())} but the first output has "
                    f"{classes} classes"
                )
            self.dense_logp = _log_softmax(first)
            self.dense_accuracy = self.accuracy(reference)
        self.energy = [float(np.sum(r.astype(np.float64) ** 2)) or 1.0 for r in self.reference]

    @property
    def kind(self) -> str:
        return "accuracy" if self.labels is not None else "relative"

    @property
    def unit(self) -> str:
        return "pp top-1" if self.labels is not None else "relative output error"

    def accuracy(self, outputs: list[np.ndarray]) -> float:
        first = [o for o in outputs if o.dtype.kind == "f"][0]
        predicted = first.reshape(first.shape[0], -1).argmax(1)
        return 100.0 * float(np.mean(predicted == self.labels))

    def loss(self, outputs: list[np.ndarray]) -> float:
        """The user's measure: pp of top-1 lost (labels) or the relative output error."""
        if self.labels is not None:
            return self.dense_accuracy - self.accuracy(outputs)
        return float(np.sqrt(self.energy_error(outputs)))

    def bound(self, outputs: list[np.ndarray]) -> float:
        """What --max-loss holds to: with labels, the share of samples the dense model gets right and
        ours wrong, plus one standard error of that share (pp); without labels, the relative error.

        Samples ours gets right and the dense model wrong are not credited: a search that tries many
        allocations on the same N samples picks those whose gains there are luck. On LeNet-5 with
        1,000 calibration digits, the allocation chosen under "net loss + 1 SE <= 0.5" fixed 1.2% of
        them but 0.5% of the held-out digits, and lost 0.79 pp held out (net -0.3 pp on calibration)."""
        if self.labels is None:
            return self.loss(outputs)
        first = [o for o in outputs if o.dtype.kind == "f"][0]
        ours = first.reshape(first.shape[0], -1).argmax(1) == self.labels
        dense = self.reference[0].reshape(first.shape[0], -1).argmax(1) == self.labels
        broken = float(np.mean(dense & ~ours))
        return 100.0 * (broken + np.sqrt(broken * (1.0 - broken) / dense.size))

    def sensitivity(self, outputs: list[np.ndarray]) -> float:
        """The additive damage the allocation minimises: mean KL (labels) or the error energy."""
        if self.labels is not None:
            logp = _log_softmax([o for o in outputs if o.dtype.kind == "f"][0])
            p = np.exp(self.dense_logp)
            return float(np.mean(np.sum(p * (self.dense_logp - logp), axis=1)))
        return self.energy_error(outputs)

    def energy_error(self, outputs: list[np.ndarray]) -> float:
        """sum ||Y' - Y||^2 / ||Y||^2 over the float outputs, averaged over them."""
        floats = [o for o in outputs if o.dtype.kind == "f"]
        errors = [
            float(np.sum((o.astype(np.float64) - r) ** 2)) / e for o, r, e in zip(floats, self.reference, self.energy)
        ]
        return float(np.mean(errors))

    def describe(self, outputs: list[np.ndarray]) -> dict[str, float]:
        """Figures for the report: loss, and accuracy or the cosine of the first output's rows."""
        out = {"loss": self.loss(outputs), "bound": self.bound(outputs)}
        if self.labels is not None:
            out["accuracy"] = self.accuracy(outputs)
            out["dense_accuracy"] = self.dense_accuracy
        else:
            a = self.reference[0].reshape(self.reference[0].shape[0], -1).astype(np.float64)
            b = [o for o in outputs if o.dtype.kind == "f"][0].reshape(a.shape[0], -1).astype(np.float64)
            cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
            out["min_cosine"], out["mean_cosine"] = float(cos.min()), float(cos.mean())
        return out
