"""Basic round trips of every encoding through dumps/loads and write/open."""

import os

import numpy as np
import pytest
from formats_helpers import quantized, sample_file, sample_tensors

from dcz import formats


@pytest.mark.parametrize("huffman", [True, False])
def test_every_encoding_round_trips_bit_exactly(huffman):
    tensors = sample_tensors()
    f = formats.loads(formats.dumps(tensors, huffman=huffman))
    assert f.names == [t.name for t in tensors]
    for t in tensors:
        got, want = f.tensor(t.name), quantized(t)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes(), t.name


def test_info_describes_each_tensor():
    f = formats.loads(sample_file())
    dc = f.info("dc")
    assert (dc.encoding, dc.shape, dc.label_bits, dc.gap_bits, dc.codebook_size, dc.groups) == (
        "sparse_shared",
        (12, 20),
        3,
        5,
        8,
        1,
    )
    assert dc.nnz == int(sample_tensors()[4].mask.sum())
    assert f.info("conv").groups == 2
    assert f.info("shape_i64").dtype == "int64"
    assert "dc" in f and "nope" not in f
    with pytest.raises(formats.FormatError, match="nope"):
        f.tensor("nope")


def test_graph_metadata_and_version():
    f = formats.loads(sample_file())
    assert f.graph == b"graph-bytes" and f.graph_format == "onnx"
    assert f.metadata["user.note"] == "test" and f.metadata["dcz.producer"].startswith("dcz-formats")
    # 1.0 unless a stream is chunked or range-coded, the header compressed or the container compact
    assert f.version == (1, 0) and formats.VERSION == (1, 4)


def test_write_then_open_memory_mapped(tmp_path):
    path = tmp_path / "m.dcz"
    report = formats.write(path, sample_tensors(), graph=b"g")
    assert report.file_bytes == os.path.getsize(path)
    with formats.open(path) as f:
        assert np.array_equal(f.tensor("dc"), quantized(sample_tensors()[4]))


def test_same_input_gives_identical_bytes():
    assert sample_file(3) == sample_file(3)
    assert sample_file(3) != sample_file(4)


def test_size_report_parts_add_up_to_file_size():
    data = sample_file()
    r = formats.loads(data).size_report()
    assert r.header_bytes + r.graph_bytes + r.padding_bytes + sum(t.huffman_bytes for t in r.tensors) == len(data)
    assert r.padding_bytes >= 0 and r.file_bytes == len(data)
    dc = next(t for t in r.tensors if t.name == "dc")
    assert dc.dense_bytes == 12 * 20 * 4
    assert dc.pruned_bytes < dc.dense_bytes and dc.quantized_bytes < dc.pruned_bytes
    assert set(r.to_dict()) >= {"tensors", "header_bytes", "graph_bytes", "padding_bytes", "file_bytes"}
    assert "weights% (P)" in r.to_text() and r.to_markdown().startswith("| tensor |")


def test_fixed_width_file_is_the_p_plus_q_stage():
    r = formats.loads(sample_file(huffman=False)).size_report()
    for t in r.tensors:
        for d in t.streams.values():
            assert d.get("coding", "fixed") == "fixed"


def test_identical_bytes_across_processes_and_hash_seeds():
    """No dict or set order leaks into the file: two interpreters with different hash seeds agree."""
    import hashlib
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, hashlib; sys.path.insert(0, %r); from formats_helpers import sample_file; "
        "print(hashlib.sha256(sample_file(7)).hexdigest())"
    ) % str(Path(__file__).parent)
    digests = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        digests.add(out.stdout.strip())
    assert digests == {hashlib.sha256(sample_file(7)).hexdigest()}


def test_closed_file_raises_format_error(tmp_path):
    path = tmp_path / "m.dcz"
    formats.write(path, sample_tensors())
    f = formats.open(path)
    f.close()
    f.close()  # idempotent
    with pytest.raises(formats.FormatError, match="closed"):
        f.tensor("dc")
    with pytest.raises(formats.FormatError, match="closed"):
        _ = f.graph
    assert f.names and f.info("dc").encoding == "sparse_shared"  # the table stays readable


def test_writer_records_stage_totals_in_metadata():
    f = formats.loads(sample_file())
    totals = f.size_report().totals()
    assert f.metadata["dcz.sizes"] == {
        k: totals[k] for k in ("dense_bytes", "pruned_bytes", "quantized_bytes", "huffman_bytes")
    }


@pytest.mark.parametrize(
    "sides, counted_once",
    [
        ({"w": "w.outliers"}, True),
        (None, False),
        ({"w": "missing"}, False),  # a map naming no tensor of the file: the report ignores it
        (["w", "w.outliers"], False),
    ],
)
def test_size_report_counts_a_side_tensor_of_outliers_once(sides, counted_once):
    """A checkpoint's side tensor of outliers (metadata checkpoint.outliers) adds its bytes to the file but
    not its weights or dense size: the ratio is the source tensor's over the file, not twice it."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 16, (64, 96))
    mask = np.zeros((64, 96), bool)
    mask[rng.random((64, 96)) < 0.05] = True
    tensors = [
        formats.Shared("w", labels, np.linspace(-1, 1, 16, dtype=np.float32), 4),
        formats.Sparse("w.outliers", rng.standard_normal((64, 96)).astype(np.float32) * mask, mask, 8),
    ]
    metadata = {} if sides is None else {"checkpoint.outliers": sides}
    f = formats.loads(formats.dumps(tensors, metadata=metadata))
    report = f.size_report()
    totals = report.totals()
    assert totals["numel"] == 64 * 96 * (1 if counted_once else 2)
    assert totals["dense_bytes"] == 4 * 64 * 96 * (1 if counted_once else 2)
    assert totals["huffman_bytes"] == sum(t.huffman_bytes for t in report.tensors)  # every byte still counted
    assert [t.side_of for t in report.tensors] == ([None, "w"] if counted_once else [None, None])
