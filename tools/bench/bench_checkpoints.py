"""Checkpoint benchmark: a random Llama-shaped bf16 checkpoint compressed at 4 bits and decoded back.

    python -m tools.bench.bench_checkpoints --layers 32          # LLaMA-7B shapes (13.5 GB on disk)
    python -m tools.bench.bench_checkpoints --layers 2 --vocab 8000
    python -m tools.bench.bench_checkpoints --checkpoint /work/tmp-ckpt-7b   # generate once, keep, reuse

Per run, in fresh subprocesses: `dcz compress` with --workers 1 and --workers 2 (same bytes
checked), then a tensor-by-tensor decode through dcz.checkpoint. Peak memory is the largest sum
of RSS over the process tree (parent + workers), sampled every 50 ms, split into anonymous
memory and file-backed pages (the .dcz reader memory-maps the file). The outputs are deleted at
the end, and so is the checkpoint unless `--checkpoint DIR` names where to keep it: a DIR that
already holds the same shapes is reused (generation skipped), else the checkpoint is generated
into it and left there. Before the compress runs the checkpoint is read once (`warm` row), so every
run starts from the same page cache as far as memory allows. Prints one Markdown table row per
measurement.
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

from tools.bench.ckpt_synth import LLAMA_7B, llama_shapes, parameters, reuse_or_write, write_checkpoint

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
    parser.add_argument("--checkpoint", help="folder to keep the generated checkpoint in (reused when it matches)")
    parser.add_argument("--no-decode", action="store_true", help="skip the tensor-by-tensor decode")
    args = parser.parse_args(argv)
    config = {k: getattr(args, k) for k in LLAMA_7B}
    params = parameters(llama_shapes(**config))
    if args.checkpoint and args.shards != 1:
        raise SystemExit("--checkpoint keeps a single-file checkpoint: drop --shards")
    folder = Path(tempfile.mkdtemp(dir=Path(args.folder).parent, prefix=Path(args.folder).name))
    print(f"# {params / 1e9:.3f} B parameters {config}, load {_load()}, {os.cpu_count()} cores")
    try:
        t = time.perf_counter()
        if args.checkpoint:
            source, made = reuse_or_write(args.checkpoint, **config)
            ckpt_files = [source]
        else:
            source, made = write_checkpoint(folder / "ckpt", shards=args.shards, **config), True
            ckpt_files = list((folder / "ckpt").glob("*.safetensors"))
        dense = sum(p.stat().st_size for p in ckpt_files)
        print(f"{'generated' if made else 'reused'} {dense:,} bytes in {time.perf_counter() - t:.0f} s ({source})")
        print(f"warm: read the checkpoint once in {_warm(ckpt_files):.1f} s, load {_load()}")
        print("| step | wall s | params/s | peak RSS GB (anon) | bytes | load at start (1/5/15 min) |")
        print("|---|---|---|---|---|---|")
        outputs, seconds = [], {}
        for workers in [int(w) for w in args.workers.split(",")]:
            out = folder / f"w{workers}.dcz"
            cmd = [sys.executable, "-m", "dcz", "compress", str(source), "-o", str(out), "--workers", str(workers)]
            load = _load()
            r = measure(cmd + ["--no-progress"])
            outputs.append(out)
            seconds[workers] = r["seconds"]
            print(
                f"| compress --workers {workers} | {r['seconds']:.1f} | {params / r['seconds'] / 1e6:.1f} M "
                f"| {r['peak'] / 1e9:.2f} ({r['peak_anon'] / 1e9:.2f}) | {out.stat().st_size:,} ({dense / out.stat().st_size:.2f}x) | load {load} |",
                flush=True,
            )
        same = len({o.read_bytes() for o in outputs}) == 1 if outputs[0].stat().st_size < 1 << 30 else _same(outputs)
        print(f"same bytes for every worker count: {same}")
        if 1 in seconds:
            print("speedup vs 1 worker: " + ", ".join(f"{w} workers {seconds[1] / s:.2f}x" for w, s in seconds.items()))
        if args.no_decode:
            return 0
        load = _load()
        r = measure([sys.executable, "-c", DECODE, str(outputs[0])])
        print(f"| decode tensor by tensor | {r['seconds']:.1f} | {params / r['seconds'] / 1e6:.1f} M "
              f"| {r['peak'] / 1e9:.2f} ({r['peak_anon'] / 1e9:.2f}) | {r['out']} values | load {load} |")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _warm(paths) -> float:
    """Read the files once (into the page cache, if it holds them); returns the seconds it took."""
    t = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(16 << 20)
            while f.readinto(buf):
                pass
    return time.perf_counter() - t


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
