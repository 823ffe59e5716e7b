"""Produce every file a benchmark row stands for: the alternatives users would pick, and `.dcz` by stage.

Each producer starts from an in-memory torch model (dense, or compressed) and writes one file; its
"time to produce" is cumulative from that model (e.g. the zipped int8 row = ONNX export + quantize +
zip), the median of `repeats` runs. Compression itself (prune / share / fine-tune) is timed once per
model by the caller and reported beside the table, not folded into these times.
"""

from __future__ import annotations

import statistics
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dcz.compressor.state import LayerState

ZIP_LEVEL = 9  # zipfile DEFLATE at its highest level: what TF-MOT's pruning guide tells users to do
ZSTD_LEVEL = 19  # a high zstd level (the CLI's highest without --ultra)
ZSTD_THREADS = -1  # all cores, as `zstd -19 -T0`: single-threaded -19 takes minutes on the 0.5 GB model


@dataclass
class Artifact:
    """One produced file: what it is, where, how big, how long it took."""

    key: str
    label: str
    path: Path
    kind: str  # loader kind for tools/bench/bench_load.py
    produce_s: float
    runs: int
    accuracy_of: str = ""  # "dense" or "compressed": which model's accuracy it should match
    notes: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size


def timed(step: Callable[[], object], repeats: int) -> tuple[float, int]:
    """Median wall seconds of `repeats` runs of `step` (each run rewrites the same output)."""
    seconds = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), len(seconds)


# --- the steps ----------------------------------------------------------------------------------


def export_dense(model, example, path: Path, layers=None) -> None:
    """Dense ONNX, same exporter and settings as the .dcz graph (so only the weights' storage differs)."""
    from dcz.compressor.export import export_onnx_dense

    export_onnx_dense(model, example, layers, path)


def zip_file(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as archive:
        archive.write(src, arcname=src.name)


def zstd_file(src: Path, dst: Path) -> None:
    import zstandard

    dst.write_bytes(zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS).compress(src.read_bytes()))


def quantize_int8(src: Path, dst: Path) -> None:
    """onnxruntime's dynamic quantization: int8 weights, activations quantized at run time."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" notice on every call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def values_only(layers: dict[str, LayerState]) -> dict[str, LayerState]:
    """The same compressed weights, pruned but stored as float32 values: the paper's P stage."""
    out = {}
    for name, state in layers.items():
        out[name] = LayerState(
            state.name,
            state.layer_type,
            tuple(state.shape),
            mask=state.mask,
            gap_bits=state.gap_bits,
            values=state.weight(),
        )
    return out


def export_dcz(model, example, layers, path: Path, huffman: bool) -> None:
    from dcz.compressor.export import export_dcz as _export

    _export(model, example, layers, path, huffman=huffman)


# --- the rows -----------------------------------------------------------------------------------


def alternatives(model, example, workdir: Path, repeats: int, stem: str) -> list[Artifact]:
    """Dense ONNX, zipped, zstd, int8 dynamic, int8 zipped: all from the dense model."""
    dense = workdir / f"{stem}.onnx"
    t_dense, n_dense = timed(lambda: export_dense(model, example, dense), repeats)
    rows = [Artifact("dense", "dense ONNX (float32)", dense, "onnx", t_dense, n_dense, "dense")]

    zipped = workdir / f"{stem}.onnx.zip"
    t_zip, n_zip = timed(lambda: zip_file(dense, zipped), repeats)
    rows.append(
        Artifact(
            "dense.zip", f"dense ONNX, zip DEFLATE-{ZIP_LEVEL}", zipped, "onnx.zip", t_dense + t_zip, n_zip, "dense"
        )
    )

    zst = workdir / f"{stem}.onnx.zst"
    t_zst, n_zst = timed(lambda: zstd_file(dense, zst), repeats)
    rows.append(
        Artifact("dense.zst", f"dense ONNX, zstd -{ZSTD_LEVEL} -T0", zst, "onnx.zst", t_dense + t_zst, n_zst, "dense")
    )

    int8 = workdir / f"{stem}.int8.onnx"
    t_q, n_q = timed(lambda: quantize_int8(dense, int8), repeats)
    rows.append(Artifact("int8", "ORT quantize_dynamic int8", int8, "onnx", t_dense + t_q, n_q, "dense"))

    int8_zip = workdir / f"{stem}.int8.onnx.zip"
    t_qz, n_qz = timed(lambda: zip_file(int8, int8_zip), repeats)
    rows.append(
        Artifact(
            "int8.zip", f"ORT int8, zip DEFLATE-{ZIP_LEVEL}", int8_zip, "onnx.zip", t_dense + t_q + t_qz, n_qz, "dense"
        )
    )
    return rows


def compressed_rows(model, example, layers, workdir: Path, repeats: int, stem: str) -> list[Artifact]:
    """Pruned + shared weights: as a zipped dense ONNX (TF-MOT / coremltools users), and .dcz by stage."""
    shared = workdir / f"{stem}.pruned-shared.onnx"
    t_sd, _ = timed(lambda: export_dense(model, example, shared, layers), repeats)
    shared_zip = workdir / f"{stem}.pruned-shared.onnx.zip"
    t_sz, n_sz = timed(lambda: zip_file(shared, shared_zip), repeats)
    rows = [
        Artifact(
            "shared.zip",
            f"pruned+shared dense ONNX, zip DEFLATE-{ZIP_LEVEL}",
            shared_zip,
            "onnx.zip",
            t_sd + t_sz,
            n_sz,
            "compressed",
        )
    ]

    stages = [
        ("dcz.P", ".dcz P (pruned, float32 values)", values_only(layers), False),
        ("dcz.PQ", ".dcz P+Q (pruned + shared, fixed width)", layers, False),
        ("dcz.PQH", ".dcz P+Q+H (pruned + shared + Huffman)", layers, True),
    ]
    for key, label, states, huffman in stages:
        path = workdir / f"{stem}.{key.split('.')[1]}.dcz"
        seconds, runs = timed(lambda: export_dcz(model, example, states, path, huffman), repeats)
        rows.append(Artifact(key, label, path, "dcz", seconds, runs, "compressed"))
    return rows
