"""measure_layer (one value sort, labels from sorted runs, sizes from histograms) gives exactly the
candidates of the straightforward measurement: prune, kmeans_1d + assign, the writer's real bytes.

Equal bytes and bit-equal damage for every candidate mean the solver sees the same problem, so it
picks the same allocation and writes the same file."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dcz import formats
from dcz.compressor.budget.candidates import CandidateGrid, measure_layer, prune_mask, prune_order
from dcz.compressor.kmeans import assign, kmeans_1d
from dcz.formats import codec

GRID = CandidateGrid(sparsities=(0.0, 0.5, 0.9, 0.99), label_bits=(1, 2, 5, 8), gap_bits=(1, 3, 4, 8))


def _reference(weight: np.ndarray, fisher: np.ndarray, grid: CandidateGrid):
    """Every candidate the slow, obvious way: (key, written bytes, damage), gap deltas, best gaps."""
    flat_w, flat_f = weight.reshape(-1).astype(np.float64), fisher.reshape(-1).astype(np.float64)
    order = prune_order(weight)
    cands, deltas, best = [(0.0, None, None, 4 * weight.size, 0.0)] if grid.allow_raw else [], {}, {}
    for sparsity in sorted(set(grid.sparsities)):
        mask = prune_mask(weight, sparsity, order)
        flat_mask = mask.reshape(-1)
        best_gap, index_bytes = None, 0
        if not flat_mask.all():
            sweep = {b: _csr_written(mask, b) for b in grid.gap_bits}
            best_gap = min(sweep, key=lambda b: (sweep[b], b))
            best[sparsity], index_bytes = best_gap, sweep[best_gap]
            deltas.update({(sparsity, b): n - index_bytes for b, n in sweep.items()})
        kept = weight.reshape(-1)[flat_mask]
        pruned = flat_w[~flat_mask]
        for bits in grid.label_bits:
            k = min(2**bits, np.unique(kept).size)
            book = np.asarray(kmeans_1d(kept, k, init="linear", seed=0)[0], dtype=np.float32)
            labels = assign(kept, book)
            err = flat_w[flat_mask] - book[labels].astype(np.float64)
            damage = float(
                np.concatenate([[0.0], np.cumsum((flat_f * flat_w**2)[order])])[pruned.size]
                + np.dot(flat_f[flat_mask], err * err)
            )
            nbytes = index_bytes + 4 * book.size + len(codec.encode_stream(labels, bits))
            cands.append((float(sparsity), bits, best_gap, nbytes, damage))
    return cands, deltas, best


def _csr_written(mask: np.ndarray, gap_bits: int) -> int:
    """Bytes of the rows + gaps streams in a written file (a 1-label tensor minus its labels stream)."""
    labels = np.zeros(mask.shape, dtype=np.int64)
    tensor = formats.SparseShared("w", mask, labels, np.zeros(1, np.float32), 1, gap_bits)
    written = formats.loads(formats.dumps([tensor])).size_report().tensors[0].huffman_bytes
    return int(written) - 4 - len(codec.encode_stream(np.zeros(int(mask.sum()), np.int64), 1))


def _layers():
    rng = np.random.default_rng(7)
    yield "uniform", rng.uniform(-1, 1, (24, 16, 3, 3)).astype(np.float32)
    yield "normal ties", np.round(rng.standard_normal((40, 50)) * 8).astype(np.float32) / 8  # few distinct values
    zeros = rng.standard_normal((30, 30)).astype(np.float32)
    zeros[rng.random(zeros.shape) < 0.4] = 0.0
    zeros[rng.random(zeros.shape) < 0.1] = -0.0
    yield "signed zeros", zeros
    yield "chunked", rng.laplace(size=(400, 400)).astype(np.float32)  # > 65,536 kept: chunk indexes


@pytest.mark.parametrize("name,weight", list(_layers()), ids=lambda v: v if isinstance(v, str) else "")
def test_measure_layer_equals_the_straightforward_measurement(name, weight):
    fisher = np.random.default_rng(1).random(weight.shape).astype(np.float32)
    layer = measure_layer(name, "Linear", weight, fisher, GRID)
    cands, deltas, best = _reference(weight, fisher, GRID)
    got = [(c.sparsity, c.label_bits, c.gap_bits, c.nbytes, c.damage) for c in layer.candidates]
    assert got == cands  # bytes equal, damage bit-equal
    assert layer.gap_delta == deltas
    assert layer.best_gap == best


@pytest.mark.parametrize("name,weight", list(_layers()), ids=lambda v: v if isinstance(v, str) else "")
def test_states_rebuilt_from_the_sizing_caches_equal_fresh_ones(name, weight):
    """A candidate's state rebuilt with the magnitude order and codebook kept from the sizing is the
    state prune + k-means give from scratch: same mask, codebook bits and labels."""
    layer = measure_layer(name, "Linear", weight, np.ones_like(weight), GRID)
    assert layer.order is not None and layer.codebooks
    fresh = replace(layer, order=None, codebooks={})
    for cand in layer.candidates:
        cached, plain = layer.state(cand), fresh.state(cand)
        for field_name in ("mask", "codebook", "labels", "values"):
            a, b = getattr(cached, field_name), getattr(plain, field_name)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8)), field_name
