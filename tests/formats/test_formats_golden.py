"""Golden files of format v1.0: the generator reproduces them byte for byte, and they decode
to the stored arrays. Every later reader must keep passing the second test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import formats
from tools.make_golden import GOLDEN, generate

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "v1_0"
MANIFEST = json.loads((GOLDEN_DIR / "manifest.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generator_reproduces_the_golden_files_byte_for_byte(tmp_path):
    generate(tmp_path)
    fresh, stored = _files(tmp_path), _files(GOLDEN_DIR)
    assert sorted(fresh) == sorted(stored)
    changed = [name for name in fresh if fresh[name] != stored[name]]
    assert not changed, f"regenerated golden files differ: {changed} (format change? bump the version)"


@pytest.mark.parametrize("file", sorted(MANIFEST))
def test_golden_file_decodes_to_its_expected_arrays(file):
    with formats.open(GOLDEN_DIR / file) as f:
        assert f.version == (1, 0)
        assert f.names == [name for name, _ in MANIFEST[file]]
        assert f.metadata["user.golden"] == "v1.0"
        for name, npy in MANIFEST[file]:
            want = np.load(GOLDEN_DIR / npy, allow_pickle=False)
            got = f.tensor(name)
            assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes(), name
        report = f.size_report()
        assert report.file_bytes == (GOLDEN_DIR / file).stat().st_size


def test_every_generator_entry_has_a_golden_file():
    assert sorted(MANIFEST) == sorted(f"{stem}.dcz" for stem in GOLDEN)


def test_huffman_golden_file_uses_huffman_streams():
    report = formats.open(GOLDEN_DIR / "deep_compression_huffman.dcz").size_report()
    codings = {d.get("coding") for t in report.tensors for d in t.streams.values()}
    assert "huffman" in codings
