"""dcz._cli.plots writes real PNGs of the size and layout each plot promises (Agg, no display)."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from dcz._cli import plots  # noqa: E402


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_weight_histograms_one_panel_per_stage(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 0.05, 5000)
    pruned = np.where(np.abs(dense) > 0.05, dense, 0)
    book = np.linspace(-0.15, 0.15, 16)
    shared = np.where(pruned != 0, book[np.abs(pruned[:, None] - book).argmin(1)], 0)
    two = plots.weight_histograms({"dense": dense, "stored": shared}, tmp_path / "two.png", codebook=book)
    three = plots.weight_histograms({"dense": dense, "pruned": pruned, "shared": shared}, tmp_path / "three.png")
    (w2, h2), (w3, h3) = png_size(two), png_size(three)
    assert h2 == h3 == round(3.4 * plots.DPI)
    assert w2 == round(4.2 * 2 * plots.DPI) and w3 == round(4.2 * 3 * plots.DPI)


def test_threshold_sweep(tmp_path):
    q = np.linspace(0, 2, 5)
    path = plots.threshold_sweep(
        q, [0.98, 0.98, 0.97, 0.9, 0.5], [0, 0.38, 0.68, 0.86, 0.95], tmp_path / "s.png", dense_accuracy=0.98
    )
    assert png_size(path) == (round(6.4 * plots.DPI), round(4.0 * plots.DPI))


def test_bytes_by_stage_reads_the_report_columns(tmp_path):
    tensors = [
        SimpleNamespace(
            name=f"layer{i}.weight",
            dense_bytes=4000 * (i + 1),
            pruned_bytes=400 * (i + 1),
            quantized_bytes=150 * (i + 1),
            huffman_bytes=120 * (i + 1),
        )
        for i in range(15)
    ]
    report = SimpleNamespace(tensors=tensors, header_bytes=300, graph_bytes=900, padding_bytes=20)
    names, table, overhead = plots.stage_bytes(report)
    assert names[0] == "layer0.weight" and table.shape == (15, 4) and overhead == 1220
    assert list(table[2]) == [12000, 1200, 450, 360]
    path = plots.bytes_by_stage(report, tmp_path / "b.png", title="t", max_layers=12)
    assert png_size(path) == (round(12.0 * plots.DPI), round(4.6 * plots.DPI))
