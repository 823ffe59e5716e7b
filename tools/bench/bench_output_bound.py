"""What keeping a corpus model's raw outputs within ~1% would cost: per-layer output error, then the bytes.

    nice -n 10 python -m tools.bench.bench_output_bound MODEL [--targets 0.05,0.02,0.01] [--sqnr DB --no-layers]

MODEL: a corpus model name (tools/bench/corpus.py). The model is compressed with the safe defaults
(compressor.safe). Then, on the folded float graph in ONNX Runtime with the fixed corpus inputs:
1. each compressed layer alone takes its stored weights (the others dense): its output error e_i
   (relative L2 of the first output, as corpus.relative_error);
2. all compressed layers take them: the defaults' error E;
3. for each target t: the layers with the largest e_i^2 per byte saved are kept dense until the
   others' sum of e_i^2 is within t^2 (errors of different layers add about in squares), then the
   output error and the file size are measured with those layers dense (their raw float32 bytes
   replace their stored bytes in the `.dcz` size: an upper bound on any higher-precision codebook).
Prints one line per layer that dominates and one per target: error measured, decisions, bytes, ratio.
--sqnr DB compresses with another tensor bound instead (the whole-model trade-off, with --no-layers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def prepared(path: Path):
    """The folded float graph the compressor works on, and its safe-default states by initializer name."""
    from dcz.compressor.config import as_config
    from dcz.compressor.onnx_fold import fold_batchnorm
    from dcz.compressor.onnx_in import compress_graph, load_onnx_model
    from dcz.compressor.onnx_inline import drop_unused_initializers

    model = load_onnx_model(path)
    drop_unused_initializers(model)
    fold_batchnorm(model)
    states, _ = compress_graph(model, as_config(None))
    return model, states


def with_weights(model, weights: dict) -> bytes:
    """`model` serialized with the initializers named in `weights` replaced by those arrays."""
    import onnx
    from onnx import numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in copy.graph.initializer:
        if tensor.name in weights:
            tensor.CopyFrom(numpy_helper.from_array(weights[tensor.name].astype(np.float32), tensor.name))
    return copy.SerializeToString()


def main(argv=None) -> int:
    from dcz import formats
    from dcz.compressor.onnx_in import compress_onnx
    from tools.bench import corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--targets", default="0.05,0.02,0.01")
    parser.add_argument("--show", type=int, default=8, help="layers listed (largest e_i first)")
    parser.add_argument("--sqnr", type=float, default=None, help="the tensor bound in dB (safe.SAFE_SQNR_DB: 38)")
    parser.add_argument("--no-layers", action="store_true", help="only the all-stored line (no per-layer runs)")
    args = parser.parse_args(argv)
    if args.sqnr is not None:  # choose()'s bound_db default, this process only
        from dcz.compressor import safe

        defaults = safe.choose.__defaults__
        safe.choose.__defaults__ = (*defaults[:-2], args.sqnr, defaults[-1])
    entry = next(m for m in corpus.ocr_models() if m.name == args.model)
    inputs = entry.inputs()
    reference = corpus.run_onnx(entry.path, inputs)
    model, states = prepared(entry.path)
    stored = {name: state.weight() for name, state in states.items()}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.dcz"
        compress_onnx(entry.path, out_path=out)
        dcz_bytes = os.path.getsize(out)
        sizes = {t.name: t for t in formats.open(out).size_report().tensors}
    dense_bytes = os.path.getsize(entry.path)

    def error(quantized: set) -> tuple[float, list]:
        outputs = corpus.run_onnx(with_weights(model, {n: stored[n] for n in quantized}), inputs)
        return corpus.relative_error(reference[0], outputs[0]), outputs

    every = set(stored)
    total, outputs = error(every)
    bound = "" if args.sqnr is None else f" (bound {args.sqnr:g} dB)"
    print(
        f"{args.model}{bound}: {len(stored)} compressed layers, dense {dense_bytes:,} B, .dcz {dcz_bytes:,} B "
        f"({dense_bytes / dcz_bytes:.2f}x), all stored: rel_error {total:.4f} {entry.fidelity(reference, outputs)}"
    )
    if args.no_layers:
        return 0
    alone = {name: error({name})[0] for name in sorted(every)}
    saved = {n: max(sizes[n].dense_bytes - sizes[n].huffman_bytes, 1) for n in every if n in sizes}
    ranked = sorted(alone, key=lambda n: -alone[n])
    print(f"sum of e_i^2 = {sum(e * e for e in alone.values()):.3e} (E^2 = {total * total:.3e})")
    for name in ranked[: args.show]:
        s = states[name]
        print(
            f"  {name}: e_i {alone[name]:.4f}, sqnr {s.sqnr_db:.1f} dB, {s.label_bits} bits"
            f"{'' if s.group_rows is None else f' groups of {s.group_rows} rows'}, {s.shape}, saves {saved.get(name, 0):,} B"
        )
    by_value = sorted(every, key=lambda n: -(alone[n] ** 2) / saved.get(n, 1))
    for target in (float(t) for t in args.targets.split(",")):
        kept, rest = [], sum(alone[n] ** 2 for n in every)
        for name in by_value:
            if rest <= target * target:
                break
            kept.append(name)
            rest -= alone[name] ** 2
        measured, outputs = error(every - set(kept))
        size = dcz_bytes + sum(saved.get(n, 0) for n in kept)
        print(
            f"target {target:.3f}: {len(kept)} layers dense, rel_error {measured:.4f}, "
            f"{entry.fidelity(reference, outputs)}, {size:,} B = {dense_bytes / size:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
