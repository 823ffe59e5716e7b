"""Moved-digit training batches (dcz.demo.augment): seeded, shape-preserving, no move is the identity."""

import pytest
import torch

from dcz.demo.augment import AffineBatches, Moves


def _digits(n=12):
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 10:18, 12:16] = torch.linspace(0.1, 1.0, n)[:, None, None, None]
    return x, torch.arange(n) % 10


def test_same_seed_same_batches_and_moves_change_pixels():
    x, y = _digits()
    moves = Moves.parse("rotate=12,scale=0.1,shift=2")
    first = list(AffineBatches(x, y, 5, moves, seed=3))
    again = list(AffineBatches(x, y, 5, moves, seed=3))
    assert [b[0].shape[0] for b in first] == [5, 5, 2]
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    moved = torch.cat([b[0] for b in first])
    labels = torch.cat([b[1] for b in first])
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(labels, y[order])
    assert not torch.allclose(moved, x[order], atol=1e-3)
    assert moved.min() >= 0 and moved.max() <= 1.0 + 1e-6


def test_no_move_is_the_shuffled_digits():
    x, y = _digits()
    ((batch, labels),) = list(AffineBatches(x, y, 12, Moves(), seed=0))
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch, x[order], atol=1e-5, rtol=0)
    assert torch.equal(labels, y[order])


@pytest.mark.parametrize("text", ["spin=3", "rotate=", "shift=-1", "rotate=x"])
def test_bad_moves_are_refused(text):
    with pytest.raises(ValueError, match="augment"):
        Moves.parse(text)


def test_moves_text():
    assert Moves.parse("none") == Moves() and Moves.parse("shift=2").shift == 2.0
