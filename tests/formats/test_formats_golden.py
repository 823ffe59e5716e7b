"""Golden files of every format version (tests/golden/v1_0, v1_1): the generator reproduces them
byte for byte, and they decode to the stored arrays. Every later reader must keep passing the
second test for every folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dcz import formats
from dcz.formats import codec
from tools.dev.make_golden import VERSIONS, generate

GOLDEN_ROOT = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_DIR = GOLDEN_ROOT / "v1_0"
MANIFESTS = {v: json.loads((GOLDEN_ROOT / v / "manifest.json").read_text()) for v in VERSIONS}
CASES = [(v, file) for v, manifest in MANIFESTS.items() for file in sorted(manifest)]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_generator_reproduces_the_golden_files_byte_for_byte(tmp_path, version):
    generate(tmp_path, version)
    fresh, stored = _files(tmp_path), _files(GOLDEN_ROOT / version)
    assert sorted(fresh) == sorted(stored)
    changed = [name for name in fresh if fresh[name] != stored[name]]
    assert not changed, f"regenerated golden files differ: {changed} (format change? bump the version)"


def _same(got, want) -> bool:
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("version,file", CASES, ids=[f"{v}/{f}" for v, f in CASES])
def test_golden_file_decodes_to_its_expected_arrays(version, file):
    folder = GOLDEN_ROOT / version
    with formats.open(folder / file) as f:
        assert f.version == tuple(int(x) for x in version[1:].split("_"))
        assert f.names == [name for name, _ in MANIFESTS[version][file]]
        assert f.metadata["user.golden"] == version.replace("_", ".")
        batched = f.tensors()
        for name, npy in MANIFESTS[version][file]:
            want = np.load(folder / npy, allow_pickle=False)
            assert _same(f.tensor(name), want) and _same(batched[name], want), name
        report = f.size_report()
        assert report.file_bytes == (folder / file).stat().st_size


@pytest.mark.parametrize("version,file", [c for c in CASES if c[0] == "v1_1"])
def test_v1_1_golden_files_decode_the_same_by_walk_and_by_bitarray(version, file, monkeypatch):
    """The lockstep walk and the sequential decoder agree (small files take the sequential path
    by default; forcing MIN_WALK_LANES to 1 sends every chunked stream through the walk)."""
    with formats.open(GOLDEN_ROOT / version / file) as f:
        sequential = f.tensors()
        monkeypatch.setattr(codec, "MIN_WALK_LANES", 1)
        walked = f.tensors()
        assert all(_same(walked[n], sequential[n]) for n in f.names)


def test_every_generator_entry_has_a_golden_file():
    for version, entries in VERSIONS.items():
        assert sorted(MANIFESTS[version]) == sorted(f"{stem}.dcz" for stem in entries)


def test_v1_1_golden_files_use_the_chunked_coding():
    for file in MANIFESTS["v1_1"]:
        report = formats.open(GOLDEN_ROOT / "v1_1" / file).size_report()
        assert "huffman-chunked" in {d.get("coding") for t in report.tensors for d in t.streams.values()}, file


def test_huffman_golden_file_uses_huffman_streams():
    report = formats.open(GOLDEN_DIR / "deep_compression_huffman.dcz").size_report()
    codings = {d.get("coding") for t in report.tensors for d in t.streams.values()}
    assert "huffman" in codings
