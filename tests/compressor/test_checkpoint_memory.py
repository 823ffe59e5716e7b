"""Streaming: compressing a checkpoint holds one tensor at a time, so peak memory does not grow with
the number of tensors (peak RSS read from /proc in a fresh subprocess; Linux only).

Two tests: the growth test (2 vs 8 small layers: 5.3 MB and 14.9 MB of bf16, peak VmHWM of one
process), and a ~1 GB bf16 checkpoint (547 M parameters) compressed with 2 workers and decoded back
tensor by tensor, the peak summed RSS of the process tree (parent + workers, sampled every 50 ms)
held under 1 GB. The second is the suite's costliest test: ~80 CPU-seconds (generating and palettizing
547 M weights at ~14 M weights/s per core, then decoding them), ~45 s wall on 2 idle cores, 208 s at
load ~5.5; it stays because the memory bound only means something at a size where a whole-model copy
would break it. The 7B figures come from tools/bench/bench_checkpoints.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench.bench_checkpoints import DECODE, measure
from tools.bench.ckpt_synth import llama_shapes, parameters, write_checkpoint

CHILD = """
import sys
from dcz.compressor.checkpoint import compress_checkpoint
compress_checkpoint(sys.argv[1], sys.argv[2], workers=1, progress=False)
status = open("/proc/self/status").read()
print(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) * 1024)
"""


def peak_rss(source: Path, out: Path) -> int:
    done = subprocess.run([sys.executable, "-c", CHILD, str(source), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_peak_memory_does_not_grow_with_the_model(tmp_path):
    shape = dict(hidden=256, inter=704, vocab=2000)
    small = write_checkpoint(tmp_path / "small", layers=2, **shape)
    large = write_checkpoint(tmp_path / "large", layers=8, **shape)
    small_peak = peak_rss(small, tmp_path / "s.dcz")
    large_peak = peak_rss(large, tmp_path / "l.dcz")
    assert large.stat().st_size > 2.5 * small.stat().st_size
    assert large_peak <= 1 << 30
    # 2.8x the weights, at most 24 MB more peak (largest tensor: 2000 x 256, 1 MB of bf16)
    assert large_peak - small_peak < 24 << 20, (small_peak, large_peak)


GIGABYTE = dict(layers=10, hidden=2048, inter=5632, vocab=8000)  # 547 M bf16 parameters, 1.09 GB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_one_gigabyte_checkpoint_in_one_gigabyte(tmp_path):
    source = write_checkpoint(tmp_path / "ckpt", **GIGABYTE)
    assert source.stat().st_size > 1.0e9
    out = tmp_path / "m.dcz"
    cmd = [sys.executable, "-m", "dcz", "compress", str(source), "-o", str(out), "--workers", "2", "--no-progress"]
    compress = measure(cmd)
    source.unlink()  # the decode below must not lean on the checkpoint's pages
    decode = measure([sys.executable, "-c", DECODE, str(out)])
    assert int(decode["out"]) == parameters(llama_shapes(**GIGABYTE))
    print(f"1 GB checkpoint: compress {compress['seconds']:.0f} s peak {compress['peak'] / 1e9:.2f} GB, "
          f"decode {decode['seconds']:.0f} s peak {decode['peak'] / 1e9:.2f} GB")  # fmt: skip
    assert compress["peak"] <= 1 << 30, compress
    assert decode["peak"] <= 1 << 30, decode
