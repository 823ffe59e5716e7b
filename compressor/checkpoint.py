"""Compressing a safetensors checkpoint to a weights-only .dcz, tensor by tensor, on many cores.

Each tensor is one job: read it from its shard, palettize it (or keep it raw), encode its
sections. Jobs run on local threads (`workers`, default all cores) or on a Dask distributed
cluster (`scheduler`: an address, or "local" for an embedded local cluster); the parent writes
results in checkpoint order with formats' StreamWriter, so the file's bytes do not depend on the
worker count or placement. At most `workers + 1` jobs are in flight, so memory stays a small
multiple of the largest tensor.

Threads, not processes: the k-means step is compiled and runs without the GIL (as do numpy's
reads, conversions and partitions), so threads share the tensors with no pickling or copies; and
a second pool of `workers` threads labels the row blocks of each tensor in parallel, so the
embedding tables (the largest tensors, at both ends of an LLM checkpoint) do not run alone on
one core. Each block's codebooks depend on that block only: the same bytes for any worker count.

Outliers (`Settings.outliers`, a fraction of each palettized tensor, or per tensor-name pattern with
`outliers_for`; SqueezeLLM's dense-and-sparse split): the weights of largest magnitude are kept
exactly in a `sparse` side tensor named `<name>.outliers` (f32 values, Huffman-coded CSR gaps; with
error feedback, the values the feedback left them at) and take no part in fitting the codebooks;
metadata `checkpoint.outliers` maps each tensor to its side tensor, and the checkpoint readers
(dcz.checkpoint, export-safetensors) write the side tensor's values over the palettized ones.

Kept raw (lossless): integer and bool tensors, tensors under `min_elements`, and 1-D tensors
(norms, biases). bfloat16 has no raw .dcz dtype: raw bf16 tensors are stored as float32 (exact)
and `source.dtypes` records every tensor's checkpoint dtype so export restores it.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dcz.formats import Raw, Shared
from dcz.formats.streaming import (
    StreamWriter,
    body_start,
    encode,
    encode_shared_fixed,
    encode_sparse_flat,
    planned_raw,
    planned_shared_fixed,
)

from . import checkpoint_read as cr
from .errors import CompressError
from .gptq import feedback_palettize
from .palettize import ITERATIONS, default_group_rows, palettize
from .refit import read_moments, refit_codebooks

MAX_OUTLIERS = 0.1
OUTLIER_SUFFIX = ".outliers"
OUTLIER_GAP_BITS = 8  # mean gap 1/fraction: ~1 symbol per outlier at 0.5%
OUTLIER_SAMPLE = 1 << 20  # weights the outlier threshold is estimated on


@dataclass(frozen=True)
class Settings:
    bits: int = 4
    group_rows: int | None = None  # None: default_group_rows per tensor
    sensitivity: str | None = None  # None or "magnitude"
    min_elements: int = 4096
    min_sqnr_db: float | None = None  # a tensor below this weight SQNR takes more bits (up to 8)
    outliers: float = 0.0  # fraction of each palettized tensor kept exactly in a side tensor
    iterations: int = ITERATIONS  # Lloyd iterations on each codebook's sample
    huffman: bool = False  # Huffman-code the labels (needs ~9 bytes per weight of the tensor while encoding)
    bits_for: tuple[tuple[str, int], ...] = ()  # (name pattern, bits): the first match wins over bits
    outliers_for: tuple[tuple[str, float], ...] = ()  # (name pattern, fraction): the first match wins over outliers
    error_feedback: bool = True  # with an input moment (--calib): labels by GPTQ-style error feedback (compressor.gptq)

    def bits_of(self, name: str) -> int:
        """Label bits of one tensor: the first `bits_for` pattern (fnmatch) matching its name, else `bits`."""
        return next((bits for pattern, bits in self.bits_for if fnmatch.fnmatchcase(name, pattern)), self.bits)

    def outliers_of(self, name: str) -> float:
        """Outlier fraction of one tensor: the first `outliers_for` pattern matching its name, else `outliers`."""
        return next((f for pattern, f in self.outliers_for if fnmatch.fnmatchcase(name, pattern)), self.outliers)

    def any_outliers(self) -> bool:
        return bool(self.outliers) or any(f for _, f in self.outliers_for)

    def check(self) -> None:
        if not 1 <= self.bits <= 8:
            raise CompressError(f"bits must be in 1..8, got {self.bits}")
        for pattern, bits in self.bits_for:
            if not isinstance(pattern, str) or not pattern or isinstance(bits, bool) or bits not in range(1, 9):
                raise CompressError(f"bits for {pattern!r} must be in 1..8, got {bits!r}")
        if self.group_rows is not None and self.group_rows < 1:
            raise CompressError(f"group_rows must be >= 1, got {self.group_rows}")
        if self.min_sqnr_db is not None and not 0 <= self.min_sqnr_db <= 100:
            raise CompressError(f"min_sqnr_db must be in 0..100 dB, got {self.min_sqnr_db}")
        if not 1 <= self.iterations <= 1000:
            raise CompressError(f"iterations must be in 1..1000, got {self.iterations}")
        if not 0 <= self.outliers <= MAX_OUTLIERS:
            raise CompressError(f"outliers must be a fraction in 0..{MAX_OUTLIERS}, got {self.outliers}")
        for pattern, fraction in self.outliers_for:
            ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 <= fraction <= MAX_OUTLIERS
            if not isinstance(pattern, str) or not pattern or not ok:
                raise CompressError(
                    f"outliers for {pattern!r} must be a fraction in 0..{MAX_OUTLIERS}, got {fraction!r}"
                )
        if self.sensitivity not in (None, "magnitude"):
            raise CompressError(f"sensitivity must be 'magnitude' or none, got {self.sensitivity!r}")


# One 32-entry codebook per tensor, fitted without the 0.5% largest weights (kept exact) and
# entropy-coded labels (~4.7 bits per weight): all-MiniLM-L6-v2 keeps sentence cosine >= 0.99 at
# 6.1x, where 16-entry codebooks top out near 0.96-0.97 (docs/benchmarks/checkpoints.md). Meant for
# small models: one codebook per tensor labels the whole tensor in one block and the Huffman encoder
# widens labels to int64, ~15 bytes per weight of the largest tensor per worker.
ACCURATE = Settings(bits=5, group_rows=1 << 30, huffman=True, outliers=0.005, iterations=100)


def palettized(ref: cr.TensorRef, settings: Settings) -> bool:
    """Whether the tensor is palettized (else kept raw): floating, 2-D or more, not small."""
    floating = ref.dtype in ("float32", "float16", "bfloat16", "float64")
    return floating and len(ref.shape) >= 2 and ref.numel >= settings.min_elements


def compress_tensor(
    ref: cr.TensorRef, settings: Settings, pool=None, scratch: cr.Scratch | None = None, moment=None
) -> list:
    """[(entry, parts), ...] of one tensor (its side tensor of outliers second): the unit of work a worker does.

    pool: a thread pool that labels the tensor's row blocks in parallel (same bytes without it).
    scratch: per-thread buffers for the tensor read and the bf16 blocks (same bytes without it).
    moment: the input second moment E[x x^T] (cols, cols): codebooks refitted on the output (compressor.refit)
    and, with settings.error_feedback, labels chosen with error feedback (compressor.gptq)."""
    arr = cr.load(ref, scratch)
    if not palettized(ref, settings):
        return [encode(Raw(ref.name, _raw_array(arr, ref.dtype)), huffman=True)]
    rows = int(arr.shape[0])
    cols = arr.size // rows
    bits = settings.bits_of(ref.name)
    group_rows = _group_rows(rows, cols, bits, settings)
    to_f32 = None if ref.dtype != "bfloat16" else cr.bf16_to_f32 if scratch is None else scratch.bf16_to_f32
    matrix = arr.reshape(rows, cols)
    fraction = settings.outliers_of(ref.name)
    threshold = outlier_threshold(matrix, fraction, to_f32) if fraction else None
    into = None if scratch is None else scratch.labels(rows, cols)
    while True:
        labels, book = palettize(
            matrix, bits, group_rows, settings.sensitivity, to_f32, threshold, settings.iterations, pool, into
        )
        if (
            settings.min_sqnr_db is None
            or bits >= 8
            or sqnr_db(matrix, labels, book, group_rows, to_f32) >= settings.min_sqnr_db
        ):
            break
        bits += 2 if bits < 6 else 8 - bits
        group_rows = _group_rows(rows, cols, bits, settings)
    kept = None
    if moment is not None and settings.error_feedback:
        try:
            labels, book, kept = feedback_palettize(matrix, labels, book, group_rows, moment, threshold, to_f32)
        except CompressError as error:
            raise CompressError(f"--calib: tensor {ref.name!r}: {error}") from None
    elif moment is not None:
        book = refit_codebooks(matrix, labels, book, group_rows, moment, threshold, to_f32)
    if settings.huffman:
        out = [encode(Shared(ref.name, labels.reshape(ref.shape), book, bits, group_rows), huffman=True)]
    else:
        out = [encode_shared_fixed(ref.name, ref.shape, labels, book, bits, group_rows, pool)]
    if threshold is not None:
        flat, values = outliers_above(matrix, threshold, to_f32)
        if kept is not None:  # error feedback: the outliers as the feedback left them (compressor.gptq)
            values = kept.reshape(-1)[flat]
        out.append(encode_sparse_flat(ref.name + OUTLIER_SUFFIX, ref.shape, flat, values, OUTLIER_GAP_BITS))
    return out


def _group_rows(rows: int, cols: int, bits: int, settings: Settings) -> int:
    return min(settings.group_rows or default_group_rows(rows, cols, bits), rows)


def _planned(refs, settings: Settings):
    """(entry, parts) of each tensor as it will be written (parts' lengths right, bytes zero), or None
    when that is not known before compressing: Huffman-coded labels, an SQNR floor that may raise the
    bits, outliers' side tensors. The writer then knows where the body starts and writes it in place."""
    if settings.huffman or settings.min_sqnr_db is not None or settings.any_outliers():
        return None

    def plan(ref):
        if not palettized(ref, settings):
            return planned_raw(ref.name, ref.shape, _raw_dtype(ref.dtype))
        rows = int(ref.shape[0])
        bits = settings.bits_of(ref.name)
        return planned_shared_fixed(
            ref.name, ref.shape, bits, 1 << bits, _group_rows(rows, ref.numel // rows, bits, settings)
        )

    return map(plan, refs)


def outlier_threshold(matrix, fraction: float, to_f32=None) -> float:
    """|w| above which a weight is an outlier: the (1 - fraction) quantile of |w| on a strided sample
    (deterministic; the count kept is ~fraction of the tensor)."""
    convert = to_f32 or (lambda a: np.asarray(a, dtype=np.float32))
    flat = matrix.reshape(-1)
    step = max(1, flat.size // OUTLIER_SAMPLE)
    sample = np.abs(convert(flat[::step]))
    return float(np.quantile(sample, 1.0 - fraction))


def outliers_above(matrix, threshold: float, to_f32=None):
    """(flat indices, float32 values) of the weights with |w| > threshold, block by block."""
    convert = to_f32 or (lambda a: np.asarray(a, dtype=np.float32))
    rows, cols = matrix.shape
    step = max(1, (1 << 22) // max(cols, 1))
    flats, values = [], []
    for r in range(0, rows, step):
        block = convert(matrix[r : r + step]).reshape(-1)
        hit = np.flatnonzero(np.abs(block) > np.float32(threshold))
        flats.append(hit + r * cols)
        values.append(block[hit].astype(np.float32))
    return np.concatenate(flats), np.concatenate(values)


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


RAW_DTYPES = {"bfloat16": "float32", "float64": "float32", "int16": "int32", "bool": "uint8"}  # else kept


def _raw_dtype(dtype: str) -> str:
    """The .dcz raw dtype a checkpoint dtype is stored as (losslessly)."""
    return RAW_DTYPES.get(dtype, dtype)


def _raw_array(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return cr.bf16_to_f32(arr)
    return arr.astype(_raw_dtype(dtype), copy=False)


def _job(ref, settings, moment=None):  # module-level: picklable for process pools and Dask
    return compress_tensor(ref, settings, moment=moment)


def compress_checkpoint(
    source,
    out,
    settings: Settings | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    calib=None,
) -> dict:
    """Compress the checkpoint at `source` into `out`; returns a summary (tensors, bytes, seconds).

    calib: an .npz of input second moments E[x x^T], one (cols, cols) array named after each 2-D tensor
    it applies to: those tensors' codebooks are refitted by least squares on the layer output."""
    settings = settings or Settings()
    settings.check()
    refs = cr.read_checkpoint(source)
    if not refs:
        raise CompressError(f"{source}: the checkpoint holds no tensor")
    workers = workers or os.cpu_count() or 1
    moments = read_moments(calib, {r.name: r.shape for r in refs}) if calib is not None else {}
    metadata = {
        "source.format": "safetensors",
        "source.dtypes": {r.name: r.dtype for r in refs},
        "compress.checkpoint": asdict(settings),
    }
    if settings.any_outliers():
        metadata["checkpoint.outliers"] = _outlier_names(refs, settings)
    if moments:
        by_name = {r.name: r for r in refs}
        metadata["compress.checkpoint.refit"] = sorted(n for n in moments if palettized(by_name[n], settings))
    total = sum(r.numel * cr.itemsize(r.dtype) for r in refs)
    bar = Progress(len(refs), total, progress)
    start = time.perf_counter()
    planned = _planned(refs, settings)
    body_at = None if planned is None else body_start(planned, graph_format="", metadata=metadata)
    with StreamWriter(out, graph_format="", metadata=metadata, body_at=body_at) as writer:
        for ref, encoded in _results(refs, settings, workers, scheduler, moments):
            for entry, parts in encoded:
                writer.add_encoded(entry, parts)
            bar.step(ref)
    bar.close()
    return dict(
        tensors=len(refs), dense_bytes=total, file_bytes=Path(out).stat().st_size, seconds=time.perf_counter() - start
    )


def _outlier_names(refs, settings: Settings) -> dict:
    """tensor -> its side tensor of outliers, for every palettized tensor; no name may be taken twice."""
    names = {r.name for r in refs}
    sides = {r.name: r.name + OUTLIER_SUFFIX for r in refs if palettized(r, settings) and settings.outliers_of(r.name)}
    clash = sorted(names.intersection(sides.values()))
    if clash:
        raise CompressError(f"tensor {clash[0]!r} is named like a side tensor of outliers: compress with outliers 0")
    return sides


def _results(refs, settings, workers, scheduler, moments):
    """(ref, result) in checkpoint order, computed in parallel with a bounded window."""
    if scheduler is not None:
        yield from _dask_results(refs, settings, workers, scheduler, moments)
        return
    scratch = cr.Scratch()
    if workers == 1:
        for ref in refs:
            yield ref, compress_tensor(ref, settings, None, scratch, moments.get(ref.name))
        return
    from concurrent.futures import ThreadPoolExecutor

    tensors, blocks = ThreadPoolExecutor(workers), ThreadPoolExecutor(workers)
    try:
        yield from _windowed(
            refs,
            lambda r: tensors.submit(compress_tensor, r, settings, blocks, scratch, moments.get(r.name)),
            workers + 1,
        )
    finally:
        tensors.shutdown(cancel_futures=True)
        blocks.shutdown(cancel_futures=True)


def _windowed(refs, submit, window: int):
    pending, it = [], iter(refs)
    for ref in it:
        pending.append((ref, submit(ref)))
        if len(pending) >= window:
            ref0, fut = pending.pop(0)
            yield ref0, fut.result()
    for ref0, fut in pending:
        yield ref0, fut.result()


def _dask_results(refs, settings, workers, scheduler, moments):
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
        yield from _windowed(refs, lambda r: client.submit(_job, r, settings, moments.get(r.name), pure=False), n + 1)
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
