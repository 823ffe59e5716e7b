"""A memory-mapped .dcz does not stay resident: the CRC check of every section at open, and the
tensor-by-tensor checkpoint reader, give the file's pages back after use (MADV_DONTNEED), so resident
memory holds the sections being read, not the whole file (the 7B checkpoint: 3.46 GB of file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dcz import formats

CHILD = """
import sys
from dcz import formats
from dcz.runtime.safetensors_out import iter_tensors

def rss_file():
    line = next(l for l in open("/proc/self/status") if l.startswith("RssFile:"))
    return int(line.split()[1]) << 10

base = rss_file()
with formats.open(sys.argv[1]) as f:
    opened = rss_file() - base
    f.tensor("a")
    f.drop_pages()
    dropped = rss_file() - base
peak = 0
for name, arr in iter_tensors(sys.argv[1]):
    peak = max(peak, rss_file() - base)
print(opened, dropped, peak)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_file_pages_not_kept_resident(tmp_path):
    rng = np.random.default_rng(0)
    parts = [formats.Raw(n, rng.standard_normal(2_000_000).astype(np.float32)) for n in "abcd"]  # 4 x 8 MB
    path = tmp_path / "m.dcz"
    formats.write(path, parts, graph_format="", huffman=False)
    assert path.stat().st_size > 32e6
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    opened, dropped, peak = (int(v) for v in done.stdout.split())
    assert opened < 4e6, opened  # the whole 32 MB went through the CRC check
    assert dropped < 4e6, dropped
    assert peak < 12e6, peak  # one 8 MB tensor's section at a time
