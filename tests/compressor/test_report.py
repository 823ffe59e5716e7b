"""compressor.report.Report: the paper's columns from formats' SizeReport, stage accuracies, kept-raw layers."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from dcz import formats
from dcz.compressor.report import Report

RNG = np.random.default_rng(11)


def sample_dcz(metadata=None) -> bytes:
    """fc: 300x100 at 10% density, 5-bit labels, 5-bit gaps; one raw matrix; one bias."""
    mask = RNG.random((300, 100)) < 0.1
    labels = RNG.integers(0, 32, size=(300, 100))
    codebook = np.linspace(-1, 1, 32, dtype=np.float32)
    tensors = [
        formats.SparseShared("fc.w", mask, labels, codebook, 5, 5),
        formats.Raw("head.w", RNG.normal(size=(10, 20)).astype(np.float32)),
        formats.Raw("fc.b", np.zeros(300, dtype=np.float32)),
    ]
    return formats.dumps(tensors, metadata=metadata or {})


META = {
    "compress.accuracy": {"dense": 0.9812, "pruned": 0.9790, "shared+finetuned": 0.9805},
    "compress.kept_raw": {"head.w": "no compression state given for this weight"},
    "compress.skipped": {"head.w": "config: skip"},
}


@pytest.fixture(scope="module")
def report() -> Report:
    return Report.from_dcz(sample_dcz(META))


def test_reads_stages_and_reasons_from_the_file(report):
    assert list(report.accuracies) == ["dense", "pruned", "shared+finetuned"]
    assert report.kept_raw == {"head.w": "config: skip"}  # compress()'s own reason wins


def test_layer_rows_are_the_paper_columns(report):
    rows = {r["name"]: r for r in report.layer_rows()}
    fc = rows["fc.w"]
    sizes = next(t for t in report.sizes.tensors if t.name == "fc.w")
    assert fc["weights"] == 30000 and fc["weights_kept"] == pytest.approx(sizes.nnz / 30000)
    assert 0.05 < fc["weights_kept"] < 0.15
    assert fc["weight_bits_pq"] == pytest.approx(5.0, abs=0.01)  # fixed 5-bit labels per kept weight
    assert fc["weight_bits_pqh"] <= fc["weight_bits_pq"] + 0.5  # uniform labels: Huffman cannot gain much
    assert fc["index_bits_pq"] >= 5.0  # 5-bit gaps (+ fillers, row counts)
    assert fc["compress_pqh"] == pytest.approx(sizes.huffman_bytes / sizes.dense_bytes)
    assert fc["compress_pq"] < 0.1 and rows["head.w"]["kept_raw"] == "config: skip"
    assert report.compression == pytest.approx(report.dense_bytes / report.file_bytes)
    assert report.dense_bytes == 4 * (30000 + 200 + 300)


def test_json_round_trips(report):
    data = json.loads(report.to_json())
    assert data["kept_raw"] == [{"name": "head.w", "reason": "config: skip"}]
    assert [a["stage"] for a in data["accuracy"]] == ["dense", "pruned", "shared+finetuned"]
    assert data["accuracy"][0]["change"] is None
    assert data["accuracy"][1]["change"] == pytest.approx(0.9790 - 0.9812)
    assert data["file_bytes"] == report.file_bytes and len(data["layers"]) == 3


def test_markdown_and_text_show_everything(report):
    for text in (report.to_markdown(), report.to_text()):
        for needle in (
            "fc.w",
            "head.w",
            "config: skip",
            "weight bits (P+Q+H)",
            "index bits (P+Q)",
            "98.12%",
            "-0.22 pp",
            "shared+finetuned",
            "Kept raw",
        ):
            assert needle in text, (needle, text)
    assert report.to_markdown().startswith("| tensor |")


def test_rich_table_renders(report):
    from rich.console import Console

    console = Console(file=io.StringIO(), width=220, record=True, color_system=None)
    report.print(console)
    out = console.export_text()
    assert "fc.w" in out and "head.w" in out and "accuracy after each stage" in out and "-0.22 pp" in out


def test_no_stages_no_kept_raw_gives_a_plain_table():
    plain = Report.from_dcz(sample_dcz())
    assert plain.accuracies == {} and plain.kept_raw == {}
    assert "Kept raw" not in plain.to_markdown() and "stage" not in plain.to_markdown()


def test_percent_accuracies_are_not_scaled_again():
    sizes = formats.loads(sample_dcz()).size_report()
    report = Report.from_sizes(sizes, accuracies={"dense": 99.1, "quantized": 98.9})
    assert "99.10%" in report.to_text() and "-0.20 pp" in report.to_text()
