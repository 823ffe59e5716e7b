"""TensorEntry: what a writer records for each encoding is what the reader checks back, field for field."""

from __future__ import annotations

import numpy as np
import pytest

from dcz import formats
from dcz.formats.entry import TensorEntry
from dcz.formats.header import check_entry
from dcz.formats.tensors import encode_tensor

RNG = np.random.default_rng(4)
MASK = RNG.random((6, 2, 5)) < 0.4
LABELS = RNG.integers(0, 8, (6, 2, 5)).astype(np.uint8)
BOOK = RNG.normal(size=(3, 8)).astype(np.float32)

TENSORS = [
    formats.Raw("raw", RNG.normal(size=(3, 4)).astype(np.float16)),
    formats.Sparse("sparse", RNG.normal(size=(6, 2, 5)).astype(np.float32), MASK, 3),
    formats.Shared("shared", LABELS, BOOK, 3, group_rows=2),
    formats.Shared("shared_one_book", LABELS, BOOK[:1], 3),
    formats.SparseShared("sparse_shared", MASK, LABELS, BOOK[:1], 3, 4),
]


@pytest.mark.parametrize("tensor", TENSORS, ids=lambda t: t.name)
def test_written_entry_reads_back_equal(tensor):
    entry, parts = encode_tensor(tensor, huffman=True)
    entry = entry.with_sections({part.role: 2 + i for i, part in enumerate(parts)})
    read = check_entry(entry.to_json(), 0, 2 + len(parts), ValueError)
    assert read == entry and isinstance(read, TensorEntry)
    assert (read.numel, read.rows) == (int(np.prod(read.shape)), read.shape[0])
    with formats.loads(formats.dumps([tensor])) as f:  # the file's table holds the same record
        assert f._entry(tensor.name) == entry.with_sections(f._entry(tensor.name).sections)


def test_json_form_holds_only_the_fields_of_its_encoding():
    keys = {t.name: set(encode_tensor(t, huffman=True)[0].to_json()) for t in TENSORS}
    base = {"name", "shape", "dtype", "encoding", "nnz", "sections"}
    book = {"label_bits", "codebook_size", "groups", "group_rows"}
    assert keys["raw"] == base
    assert keys["sparse"] == base | {"gap_bits"}
    assert keys["shared"] == keys["shared_one_book"] == base | book  # group_rows even when null
    assert keys["sparse_shared"] == base | book | {"gap_bits"}
