"""Checkpoint benchmark: a random Llama-shaped bf16 checkpoint compressed at 4 bits and decoded back.

    python -m tools.bench.bench_checkpoints --layers 32          # LLaMA-7B shapes (13.5 GB on disk)
    python -m tools.bench.bench_checkpoints --layers 2 --vocab 8000

Per run, in fresh subprocesses: `dcz compress` with --workers 1 and --workers 2 (same bytes
checked), then a tensor-by-tensor decode through dcz.checkpoint. Peak memory is the largest sum
of RSS over the process tree (parent + workers), sampled every 50 ms, split into anonymous
memory and file-backed pages (the .dcz reader memory-maps the file). The checkpoint and the
outputs are deleted at the end. Prints one Markdown table row per measurement.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tools.bench.ckpt_synth import LLAMA_7B, llama_shapes, parameters, write_checkpoint

DECODE = """
import sys, dcz.checkpoint
n = 0
for name, t in dcz.checkpoint.state_dict_items(sys.argv[1], framework="numpy"):
    n += t.size
print(n)
"""


def _rss(proc: psutil.Process) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of proc and its children."""
    anon = files = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            mem = p.memory_info()
            shared = getattr(mem, "shared", 0)
            anon += mem.rss - shared
            files += shared
        except psutil.Error:
            pass
    return anon, files


def measure(cmd: list[str]) -> dict:
    """Wall time and peak tree RSS of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak_total = peak_anon = 0
    while proc.poll() is None:
        anon, files = _rss(ps)
        peak_total, peak_anon = max(peak_total, anon + files), max(peak_anon, anon)
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()[-500:]}")
    return dict(seconds=time.perf_counter() - start, peak=peak_total, peak_anon=peak_anon, out=out.strip())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in LLAMA_7B.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--folder", default="/work/tmp-ckpt-bench")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args(argv)
    config = {k: getattr(args, k) for k in LLAMA_7B}
    params = parameters(llama_shapes(**config))
    folder = Path(tempfile.mkdtemp(dir=Path(args.folder).parent, prefix=Path(args.folder).name))
    print(f"# {params / 1e9:.3f} B parameters {config}, load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    try:
        t = time.perf_counter()
        source = write_checkpoint(folder / "ckpt", shards=args.shards, **config)
        dense = sum(p.stat().st_size for p in (folder / "ckpt").glob("*.safetensors"))
        print(f"generated {dense:,} bytes in {time.perf_counter() - t:.0f} s")
        print("| step | wall s | params/s | peak RSS GB (anon) | bytes |")
        print("|---|---|---|---|---|")
        outputs = []
        for workers in [int(w) for w in args.workers.split(",")]:
            out = folder / f"w{workers}.dcz"
            cmd = [sys.executable, "-m", "dcz", "compress", str(source), "-o", str(out), "--workers", str(workers)]
            r = measure(cmd + ["--no-progress"])
            outputs.append(out)
            print(
                f"| compress --workers {workers} | {r['seconds']:.1f} | {params / r['seconds'] / 1e6:.1f} M "
                f"| {r['peak'] / 1e9:.2f} ({r['peak_anon'] / 1e9:.2f}) | {out.stat().st_size:,} ({dense / out.stat().st_size:.2f}x) |",
                flush=True,
            )
        same = len({o.read_bytes() for o in outputs}) == 1 if outputs[0].stat().st_size < 1 << 30 else _same(outputs)
        print(f"same bytes for every worker count: {same}")
        r = measure([sys.executable, "-c", DECODE, str(outputs[0])])
        print(f"| decode tensor by tensor | {r['seconds']:.1f} | {params / r['seconds'] / 1e6:.1f} M "
              f"| {r['peak'] / 1e9:.2f} ({r['peak_anon'] / 1e9:.2f}) | {r['out']} values |")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _same(paths) -> bool:
    files = [open(p, "rb") for p in paths]
    try:
        while True:
            blocks = [f.read(1 << 24) for f in files]
            if len(set(blocks)) != 1:
                return False
            if not blocks[0]:
                return True
    finally:
        for f in files:
            f.close()


if __name__ == "__main__":
    raise SystemExit(main())
