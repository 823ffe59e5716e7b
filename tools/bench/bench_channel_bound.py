"""The per-channel weight-error bound on one corpus model: size, output fidelity, kept-raw count.

    python -m tools.bench.bench_channel_bound MODEL CHANNEL_DB

MODEL: a corpus model name (tools/bench/corpus.py, e.g. PP-OCRv6_rec_small); CHANNEL_DB: the bound
every row must keep (compressor/safe.py CHANNEL_SQNR_DB, 0 by default; -1000 switches it off).
Seconds are compress + load + run, one process, on a shared machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    from dcz import runtime
    from dcz.compressor import safe
    from dcz.compressor.onnx_in import compress_onnx
    from tools.bench import corpus

    name, channel = (argv or sys.argv[1:])[:2]
    defaults = safe.choose.__defaults__
    safe.choose.__defaults__ = defaults[:-1] + (float(channel),)  # the channel_db default, this process only
    model = next(m for m in corpus.ocr_models() if m.name == name)
    inputs = model.inputs()
    reference = corpus.run_onnx(model.path, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.dcz"
        start = time.perf_counter()
        result = compress_onnx(model.path, out_path=out)
        with runtime.load(out, threads=1) as loaded:
            outputs = loaded.run(dict(zip(loaded.input_names, inputs)))
        size = os.path.getsize(out)
    ratio = os.path.getsize(model.path) / size
    print(
        name,
        channel,
        f"{ratio:.2f}x",
        size,
        f"{time.perf_counter() - start:.0f}s",
        model.fidelity(reference, outputs),
        "kept raw",
        len(result.plan.kept_raw),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
