"""Streaming: compressing a checkpoint holds one tensor at a time, so peak memory does not grow with
the number of tensors (peak RSS read from /proc in a fresh subprocess; Linux only).

Sizes are small (2 and 8 layers of hidden 256: 5.3 MB and 14.9 MB of bf16) because the shared 2-core
machine compresses ~0.7 M parameters/s; the multi-gigabyte figures come from
tools/bench/bench_checkpoints.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench.ckpt_synth import write_checkpoint

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
