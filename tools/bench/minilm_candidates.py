"""What would lift all-MiniLM-L6-v2's sentence cosine at 1/10: candidate ideas measured before building them.

    python -m tools.bench.minilm_candidates [--out DIR] [--gptq]

Part 1 (weight error only, no ORT): relative weight error ||W' - W||^2 / ||W||^2 of one k-means codebook per
tensor against row-group codebooks (the format's group_rows: rows = MatMul inputs, Gather tokens) and
per-output-column codebooks (the transposed tensor's rows; not in the format without a graph Transpose).

Part 2 (ORT on the calibration / held-out sentences of tools.bench.calib_onnx): every one of the 36 MatMul weights
at the same label width (embeddings dense) with
- plain k-means (what the search's candidates are),
- bias correction (compressor/bias_correction: E[x] measured on the calibration sentences),
- activation-aware scaling (AWQ-like: k-means of diag(s) W, s = (E[x^2] / mean)^alpha, stored as per-row
  codebooks c / s_k; the codebook bytes are counted),
- with --gptq: GPTQ-style error feedback onto the later rows (H = X^T X of the calibration tokens + damping).
Reports the relative output error on the calibration sentences and the held-out cosine (min / mean).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def weight_errors(weights: dict[str, np.ndarray]) -> list[dict]:
    from dcz.compressor.kmeans import cluster_weights
    from dcz.compressor.state import gather_codebook

    def error(w, bits, group_rows):
        book, labels = cluster_weights(w, None, bits, group_rows=group_rows)
        rows = labels.reshape(w.shape[0], -1)
        approx = book[labels] if group_rows is None else gather_codebook(book, rows, group_rows).reshape(w.shape)
        return float(np.sum((approx - w) ** 2) / np.sum(w**2))

    rows = []
    names = list(weights)
    for name in (names[0], names[2], names[6], names[7]):  # word embeddings, a query, FFN up, FFN down
        w = weights[name]
        for bits in (2, 3) if w.shape[0] > 10_000 else (3, 4):
            row = {"tensor": name, "shape": list(w.shape), "bits": bits, "per_tensor": error(w, bits, None)}
            for group in (256, 1) if w.shape[0] < 10_000 else (4096, 256):
                row[f"row_groups_of_{group}"] = error(w, bits, group)
            row["per_output_column"] = error(np.ascontiguousarray(w.T), bits, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


class Probe:
    """The ONNX model with replaced initializers, run on the calibration and held-out sentences."""

    def __init__(self, onnx_path: Path):
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper

        from tools.bench import minilm as mini

        self.model = onnx.load(str(onnx_path))
        self.inits = {t.name: numpy_helper.to_array(t) for t in self.model.graph.initializer}
        half = len(mini.SENTENCES) // 2
        ids, mask = mini.tokenize(mini.SENTENCES[:half], length=32)
        hid, hmask = mini.tokenize(mini.SENTENCES[half:], length=32)
        self.calib = {"input_ids": ids, "attention_mask": mask}
        self.held = {"input_ids": hid, "attention_mask": hmask}
        self.mask = mask.astype(bool)
        self.pairs = [
            (n.input[1], n.input[0])
            for n in self.model.graph.node
            if n.op_type == "MatMul" and n.input[1] in self.inits
        ]
        probe = onnx.ModelProto()
        probe.CopyFrom(self.model)
        listed = {o.name for o in probe.graph.output}
        for x in dict.fromkeys(x for _, x in self.pairs):
            if x not in listed:
                probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(x))
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = session.run([o.name for o in probe.graph.output], self.calib)
        by_name = dict(zip([o.name for o in probe.graph.output], outs))
        self.inputs = {w: by_name[x][self.mask].astype(np.float64) for w, x in self.pairs}
        self.reference = (self.run({}, self.calib), self.run({}, self.held))

    def run(self, replaced: dict[str, np.ndarray], feeds) -> np.ndarray:
        import onnx
        import onnxruntime as ort
        from onnx import numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        for tensor in model.graph.initializer:
            if tensor.name in replaced:
                tensor.CopyFrom(numpy_helper.from_array(replaced[tensor.name].astype(np.float32), tensor.name))
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    def score(self, label: str, bits: int, replaced: dict[str, np.ndarray], nbytes: int) -> dict:
        calib, held = self.run(replaced, self.calib), self.run(replaced, self.held)
        ref_c, ref_h = self.reference
        cos = np.sum(ref_h * held, -1) / (np.linalg.norm(ref_h, axis=-1) * np.linalg.norm(held, axis=-1))
        row = {
            "variant": label,
            "bits": bits,
            "matmul_bytes": nbytes,
            "calib_relative_error": float(np.linalg.norm(calib - ref_c) / np.linalg.norm(ref_c)),
            "held_out_min_cosine": float(cos.min()),
            "held_out_mean_cosine": float(cos.mean()),
        }
        print(json.dumps(row), flush=True)
        return row


def nearest(book: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted((book[:-1] + book[1:]) / 2, w), 0, book.size - 1)


def gptq_labels(w: np.ndarray, x: np.ndarray, book: np.ndarray, damp: float) -> np.ndarray:
    """Rows (inputs) quantized in order, each one's error spread onto the later rows through H^-1."""
    h = x.T @ x / x.shape[0]
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    work = w.astype(np.float64).copy()
    labels = np.zeros(w.shape, np.int64)
    for k in range(w.shape[0]):
        labels[k] = nearest(book, work[k])
        work[k + 1 :] -= np.outer(upper[k, k + 1 :], (work[k] - book[labels[k]]) / upper[k, k])
    return labels


def output_errors(probe: Probe, gptq: bool) -> list[dict]:
    from dcz.compressor.bias_correction import corrected_bias, find_links
    from dcz.compressor.budget.sizes import shared_bytes
    from dcz.compressor.kmeans import cluster_weights

    weights = {w: probe.inits[w].astype(np.float32) for w, _ in probe.pairs}
    links = find_links(probe.model, set(weights))
    means = {w: probe.inputs[w].mean(0) for w in weights}
    energy = {w: np.mean(probe.inputs[w] ** 2, axis=0) for w in weights}
    rows = []
    for bits in (3, 4):
        plain, corrected, nbytes = {}, {}, 0
        books = {}
        for name, w in weights.items():
            book, labels = cluster_weights(w, None, bits)
            books[name] = np.sort(book.astype(np.float64))
            plain[name] = corrected[name] = book[labels]
            nbytes += shared_bytes(labels.reshape(-1).astype(np.int64), book.size, bits)
            link = links[name]
            corrected[link.bias] = corrected_bias(link, means[name], probe.inits[link.bias], w, plain[name])
        rows.append(probe.score("plain k-means", bits, plain, nbytes))
        rows.append(probe.score("bias corrected", bits, corrected, nbytes))
        for alpha in (0.25, 0.5):
            scaled, nbytes = {}, 0
            for name, w in weights.items():
                s = (energy[name] / energy[name].mean()) ** alpha
                book, labels = cluster_weights(w * s[:, None].astype(np.float32), None, bits)
                scaled[name] = book[labels] / s[:, None]
                nbytes += shared_bytes(labels.reshape(-1).astype(np.int64), book.size, bits) + 4 * book.size * (
                    w.shape[0] - 1
                )
            rows.append(probe.score(f"activation-aware per-row scales, alpha {alpha}", bits, scaled, nbytes))
        if gptq:
            errfed = {
                name: books[name][gptq_labels(w, probe.inputs[name], books[name], 0.1)] for name, w in weights.items()
            }
            rows.append(probe.score("GPTQ error feedback (damping 0.1)", bits, errfed, 0))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/dcz-calib-bench")
    parser.add_argument("--gptq", action="store_true", help="also GPTQ-style error feedback (~2 min per width)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from tools.bench import minilm as mini

    onnx_path = out / "minilm.onnx"
    if not onnx_path.exists():
        mini.export_onnx(onnx_path)
    probe = Probe(onnx_path)
    weights = {**{n: a.astype(np.float32) for n, a in probe.inits.items() if n.endswith("weight") and a.ndim == 2}}
    weights = {n: weights[n] for n in ("word.weight", "position.weight") if n in weights} | {
        w: probe.inits[w].astype(np.float32) for w, _ in probe.pairs
    }
    result = {"weight_errors": weight_errors(weights), "output_errors": output_errors(probe, args.gptq)}
    (out / "minilm-candidates.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
