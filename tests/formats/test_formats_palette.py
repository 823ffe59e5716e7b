"""DczFile.palette: a palettized tensor's labels, codebook and group_rows, as the file stores them."""

from __future__ import annotations

import numpy as np
import pytest

from dcz import formats


@pytest.mark.parametrize(
    "shape,groups,huffman", [((7, 50), None, False), ((6, 2, 5), 4, True), ((9,), None, True), ((3, 0), 2, False)]
)
def test_palette_gives_back_what_the_tensor_was_written_with(shape, groups, huffman):
    rng = np.random.default_rng(3)
    rows = shape[0] if len(shape) > 1 else 1
    count = 1 if groups is None else -(-rows // groups)
    labels = rng.integers(0, 4, shape)
    book = rng.standard_normal((count, 4) if groups else 4).astype(np.float32)
    f = formats.loads(formats.dumps([formats.Shared("w", labels, book, 2, group_rows=groups)], huffman=huffman))
    got_labels, got_book, group_rows = f.palette("w")
    assert np.array_equal(got_labels.reshape(shape), labels) and np.array_equal(got_book, book.reshape(count, 4))
    assert group_rows == (groups or rows)
    dense = f.tensor("w").reshape(got_labels.shape)
    assert np.array_equal(dense, got_book[np.arange(got_labels.shape[0])[:, None] // group_rows, got_labels])


def test_palette_of_a_tensor_without_codebook_is_refused():
    f = formats.loads(formats.dumps([formats.Raw("b", np.zeros(3, np.float32))]))
    with pytest.raises(formats.FormatError, match="'b' is not palettized"):
        f.palette("b")
