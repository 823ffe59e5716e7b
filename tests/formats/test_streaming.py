"""formats.streaming: the tensor-by-tensor writer gives formats.dumps' bytes and publishes atomically."""

from __future__ import annotations

import numpy as np
import pytest

from dcz import formats
from dcz.formats import codec
from dcz.formats.streaming import StreamWriter, encode_shared_fixed, encode_sparse_flat


def sample_tensors(seed: int):
    rng = np.random.default_rng(seed)
    return [
        formats.Raw("norm", rng.standard_normal(7).astype(np.float32)),
        formats.Shared("w", rng.integers(0, 16, (33, 70)), rng.standard_normal((3, 16)), 4, 12),
        formats.SparseShared("s", rng.random((9, 40)) < 0.3, rng.integers(0, 4, (9, 40)), [0.5, -1, 2, 3], 2, 3),
        formats.Raw("ids", np.arange(5, dtype=np.int64)),
        formats.Shared("big", rng.integers(0, 4, (300, 400)), rng.standard_normal(4), 2),  # chunked stream
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_bytes_as_dumps(tmp_path, seed):
    tensors = sample_tensors(seed)
    meta = {"source.format": "test"}
    with StreamWriter(tmp_path / "a.dcz", graph_format="", metadata=meta) as w:
        for t in tensors:
            w.add(t)
    assert (tmp_path / "a.dcz").read_bytes() == formats.dumps(tensors, graph_format="", metadata=meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcz"]


@pytest.mark.parametrize("copy", ["kernel", "kernel refuses", "no copy_file_range"])
def test_body_copy_paths_give_the_same_bytes(tmp_path, monkeypatch, copy):
    """The body goes behind the header by copy_file_range, or by Python blocks when the kernel call
    fails or does not exist."""
    from dcz.formats import streaming

    if copy == "kernel refuses":

        def refuse(*args):
            raise OSError(18, "cross-device")

        monkeypatch.setattr(streaming.os, "copy_file_range", refuse, raising=False)
    elif copy == "no copy_file_range":
        monkeypatch.delattr(streaming.os, "copy_file_range", raising=False)
    tensors = sample_tensors(3)
    with StreamWriter(tmp_path / "a.dcz", graph_format="") as w:
        for t in tensors:
            w.add(t)
    assert (tmp_path / "a.dcz").read_bytes() == formats.dumps(tensors, graph_format="")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcz"]


def test_empty_file(tmp_path):
    with StreamWriter(tmp_path / "e.dcz") as w:
        pass
    assert w is not None
    assert (tmp_path / "e.dcz").read_bytes() == formats.dumps([], graph_format="")


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x.dcz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with StreamWriter(target) as w:
            w.add(sample_tensors(0)[0])
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dcz"]


def test_duplicate_name_refused(tmp_path):
    with pytest.raises(formats.FormatError, match="given twice"):
        with StreamWriter(tmp_path / "d.dcz") as w:
            w.add(formats.Raw("a", np.zeros(2, np.float32)))
            w.add(formats.Raw("a", np.zeros(2, np.float32)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_shared_fixed_matches_general_encoder(tmp_path, bits):
    rng = np.random.default_rng(bits)
    labels = rng.integers(0, 1 << bits, (50, 41)).astype(np.uint8)
    book = rng.standard_normal((5, 1 << bits)).astype(np.float32)
    entry, parts = encode_shared_fixed("w", (50, 41), labels, book, bits, 10)
    with StreamWriter(tmp_path / "f.dcz", huffman=False) as w:
        w.add_encoded(entry, parts)
    general = formats.dumps([formats.Shared("w", labels, book, bits, 10)], graph_format="", huffman=False)
    assert (tmp_path / "f.dcz").read_bytes() == general
    out = formats.open(tmp_path / "f.dcz").tensor("w")
    np.testing.assert_array_equal(out, book[np.arange(50)[:, None] // 10, labels])


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_shared_fixed_blocks_packed_in_parallel_give_the_same_bytes(monkeypatch, bits, native):
    """Many small blocks packed in place by a thread pool (and by numpy without the compiled core):
    the stream of the general encoder, byte for byte."""
    from concurrent.futures import ThreadPoolExecutor

    from dcz.formats import streaming

    monkeypatch.setattr(streaming, "PACK_BLOCK", 16)
    monkeypatch.setenv("DCZ_NATIVE", native)
    labels = np.random.default_rng(bits).integers(0, 1 << bits, (37, 13)).astype(np.uint8)
    book = np.zeros((4, 1 << bits), np.float32)
    with ThreadPoolExecutor(3) as pool:
        _, parts = encode_shared_fixed("w", (37, 13), labels, book, bits, 10, pool)
    assert bytes(parts[1].data) == codec.encode_stream(labels.reshape(-1), bits, False, None)


def test_shared_fixed_refuses_label_out_of_range():
    with pytest.raises(formats.FormatError, match="codebook size"):
        encode_shared_fixed("w", (2, 2), np.full((2, 2), 3, np.uint8), np.zeros((1, 3), np.float32), 2, None)


@pytest.mark.parametrize("density", [0.0, 0.005, 0.3])
def test_sparse_flat_matches_general_encoder(tmp_path, density):
    rng = np.random.default_rng(7)
    values = rng.standard_normal((60, 700)).astype(np.float32)
    mask = rng.random(values.shape) < density
    flat = np.flatnonzero(mask)
    entry, parts = encode_sparse_flat("o", values.shape, flat, values.reshape(-1)[flat], 8)
    with StreamWriter(tmp_path / "s.dcz") as w:
        w.add_encoded(entry, parts)
    general = formats.dumps([formats.Sparse("o", values, mask, 8)], graph_format="")
    assert (tmp_path / "s.dcz").read_bytes() == general


@pytest.mark.parametrize("flat", [[3, 2], [-1], [4200]])
def test_sparse_flat_refuses_bad_indices(flat):
    with pytest.raises(formats.FormatError, match="ascending"):
        encode_sparse_flat("o", (60, 70), np.array(flat), np.ones(len(flat), np.float32), 8)


def test_body_in_place_when_predicted_else_copied(tmp_path, monkeypatch):
    """body_at = body_start of the planned tensors: the body is written in place (never copied); a wrong
    prediction falls back to the copy; both give formats.dumps' bytes and leave no temporary file."""
    from dcz.formats import streaming

    rng = np.random.default_rng(4)
    labels, book = rng.integers(0, 16, (33, 70)), rng.standard_normal((3, 16)).astype(np.float32)
    raw = rng.standard_normal(7).astype(np.float32)
    tensors = [formats.Raw("norm", raw), formats.Shared("w", labels, book, 4, 12)]
    expected = formats.dumps(tensors, graph_format="", metadata={"test.k": 1}, huffman=False)
    planned = [streaming.planned_raw("norm", (7,), "float32"), streaming.planned_shared_fixed("w", (33, 70), 4, 16, 12)]
    at = streaming.body_start(planned, metadata={"test.k": 1}, huffman=False)
    copies = []
    real_copy = streaming._copy_file
    monkeypatch.setattr(streaming, "_copy_file", lambda *a: copies.append(a) or real_copy(*a))
    for body_at, copied in ((at, 0), (at + 8, 1), (at - 8, 2)):
        with StreamWriter(tmp_path / "a.dcz", metadata={"test.k": 1}, huffman=False, body_at=body_at) as w:
            w.add(tensors[0])
            w.add_encoded(*encode_shared_fixed("w", (33, 70), labels, book, 4, 12))
        assert (tmp_path / "a.dcz").read_bytes() == expected
        assert len(copies) == copied
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcz"]


def test_body_in_place_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x.dcz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with StreamWriter(target, body_at=4096) as w:
            w.add(sample_tensors(0)[0])
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dcz"]


@pytest.mark.parametrize("body_at", [-8, 12, 4097, True])
def test_body_at_refused_unless_aligned(tmp_path, body_at):
    with pytest.raises(formats.FormatError, match="body_at"):
        StreamWriter(tmp_path / "b.dcz", body_at=body_at)
    assert list(tmp_path.iterdir()) == []
