"""Compressing a safetensors checkpoint to a weights-only .dcz, tensor by tensor, on many cores.

Each tensor is one job: read it from its shard, palettize it (or keep it raw), encode its
sections. Jobs run on a local process pool (`workers`, default all cores) or on a Dask
distributed cluster (`scheduler`: an address, or "local" for an embedded local cluster); the
parent writes results in checkpoint order with formats' StreamWriter, so the file's bytes do
not depend on the worker count or placement. At most `workers + 1` jobs are in flight, so
memory stays a small multiple of the largest tensor.

Kept raw (lossless): integer and bool tensors, tensors under `min_elements`, and 1-D tensors
(norms, biases). bfloat16 has no raw .dcz dtype: raw bf16 tensors are stored as float32 (exact)
and `source.dtypes` records every tensor's checkpoint dtype so export restores it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dcz.formats import Raw
from dcz.formats.streaming import StreamWriter, encode, encode_shared_fixed

from . import checkpoint_read as cr
from .errors import CompressError
from .palettize import default_group_rows, palettize


@dataclass(frozen=True)
class Settings:
    bits: int = 4
    group_rows: int | None = None  # None: default_group_rows per tensor
    sensitivity: str | None = None  # None or "magnitude"
    min_elements: int = 4096
    min_sqnr_db: float | None = None  # a tensor below this weight SQNR takes more bits (up to 8)

    def check(self) -> None:
        if not 1 <= self.bits <= 8:
            raise CompressError(f"bits must be in 1..8, got {self.bits}")
        if self.group_rows is not None and self.group_rows < 1:
            raise CompressError(f"group_rows must be >= 1, got {self.group_rows}")
        if self.min_sqnr_db is not None and not 0 <= self.min_sqnr_db <= 100:
            raise CompressError(f"min_sqnr_db must be in 0..100 dB, got {self.min_sqnr_db}")
        if self.sensitivity not in (None, "magnitude"):
            raise CompressError(f"sensitivity must be 'magnitude' or none, got {self.sensitivity!r}")


def compress_tensor(ref: cr.TensorRef, settings: Settings):
    """(entry, parts) of one tensor: the unit of work a worker does."""
    arr = cr.load(ref)
    floating = ref.dtype in ("float32", "float16", "bfloat16", "float64")
    if not floating or arr.ndim < 2 or arr.size < settings.min_elements:
        return encode(Raw(ref.name, _raw_array(arr, ref.dtype)), huffman=True)
    rows = int(arr.shape[0])
    cols = arr.size // rows
    group_rows = settings.group_rows or default_group_rows(rows, cols, settings.bits)
    group_rows = min(group_rows, rows)
    to_f32 = cr.bf16_to_f32 if ref.dtype == "bfloat16" else None
    matrix = arr.reshape(rows, cols)
    bits = settings.bits
    while True:
        labels, book = palettize(matrix, bits, group_rows, settings.sensitivity, to_f32)
        if (
            settings.min_sqnr_db is None
            or bits >= 8
            or sqnr_db(matrix, labels, book, group_rows, to_f32) >= settings.min_sqnr_db
        ):
            return encode_shared_fixed(ref.name, ref.shape, labels, book, bits, group_rows)
        bits += 2 if bits < 6 else 8 - bits
        group_rows = settings.group_rows or min(default_group_rows(rows, cols, bits), rows)


def sqnr_db(matrix, labels, book, group_rows: int, to_f32=None) -> float:
    """Weight SQNR of the palettized tensor, computed block by block."""
    convert = to_f32 or (lambda a: np.asarray(a, dtype=np.float32))
    signal = noise = 0.0
    step = max(group_rows, (1 << 22) // max(matrix.shape[1], 1) // group_rows * group_rows)
    for r in range(0, matrix.shape[0], step):
        x = convert(matrix[r : r + step]).astype(np.float64)
        y = book[(np.arange(r, r + x.shape[0]) // group_rows)[:, None], labels[r : r + step]]
        signal += float((x * x).sum())
        noise += float(((x - y) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-300) / noise)


def _raw_array(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return cr.bf16_to_f32(arr)
    if dtype == "float64":
        return arr.astype(np.float32)
    if dtype in ("int16",):
        return arr.astype(np.int32)
    if dtype == "bool":
        return arr.astype(np.uint8)
    return arr


def _job(ref, settings):  # module-level: picklable for process pools and Dask
    return compress_tensor(ref, settings)


def compress_checkpoint(
    source,
    out,
    settings: Settings | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> dict:
    """Compress the checkpoint at `source` into `out`; returns a summary (tensors, bytes, seconds)."""
    settings = settings or Settings()
    settings.check()
    refs = cr.read_checkpoint(source)
    if not refs:
        raise CompressError(f"{source}: the checkpoint holds no tensor")
    workers = workers or os.cpu_count() or 1
    metadata = {
        "source.format": "safetensors",
        "source.dtypes": {r.name: r.dtype for r in refs},
        "compress.checkpoint": asdict(settings),
    }
    total = sum(r.numel * cr.itemsize(r.dtype) for r in refs)
    bar = Progress(len(refs), total, progress)
    start = time.perf_counter()
    with StreamWriter(out, graph_format="", metadata=metadata) as writer:
        for ref, (entry, parts) in _results(refs, settings, workers, scheduler):
            writer.add_encoded(entry, parts)
            bar.step(ref)
    bar.close()
    return dict(
        tensors=len(refs), dense_bytes=total, file_bytes=Path(out).stat().st_size, seconds=time.perf_counter() - start
    )


def _results(refs, settings, workers, scheduler):
    """(ref, result) in checkpoint order, computed in parallel with a bounded window."""
    if scheduler is not None:
        yield from _dask_results(refs, settings, workers, scheduler)
        return
    if workers == 1:
        for ref in refs:
            yield ref, compress_tensor(ref, settings)
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield from _windowed(refs, lambda r: pool.submit(_job, r, settings), workers + 1)


def _windowed(refs, submit, window: int):
    pending, it = [], iter(refs)
    for ref in it:
        pending.append((ref, submit(ref)))
        if len(pending) >= window:
            ref0, fut = pending.pop(0)
            yield ref0, fut.result()
    for ref0, fut in pending:
        yield ref0, fut.result()


def _dask_results(refs, settings, workers, scheduler):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CompressError("--scheduler needs Dask distributed: pip install 'dcz[distributed]'") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        n = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        yield from _windowed(refs, lambda r: client.submit(_job, r, settings, pure=False), n + 1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class Progress:
    """Per-tensor and overall progress with throughput and ETA (tqdm, only on a terminal)."""

    def __init__(self, count: int, total_bytes: int, enabled: bool | None):
        self._bar = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)
            self._bar.set_description(f"0/{count} tensors")
        self._count, self._done = count, 0

    def step(self, ref: cr.TensorRef) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_description(f"{self._done}/{self._count} {ref.name[-40:]}")
            self._bar.update(ref.numel * cr.itemsize(ref.dtype))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
