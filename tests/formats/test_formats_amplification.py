"""Declared sizes cannot make the reader allocate: each hostile file of tools/dev/hostile_files.py is
opened and fully decoded in a fresh process, refused with FormatError (or decoded, when it is
merely empty) in < 1 s of CPU and < 100 MB of memory over the process's baseline."""

from __future__ import annotations

import pytest

from dcz import formats
from tools.dev import hostile_files

MAX_CPU_S = 1.0
MAX_PEAK = 100 << 20

# case -> (the FormatError class raised, a fragment of its message)
REFUSED = {
    "chunk_index_count": ("FormatError", "chunk index: 1099511627776 symbols"),
    "huge_shared_chunked": ("DenseBudgetError", "declares 18,446,744,073,709,551,616 dense bytes"),
    "wide_sparse": ("DenseBudgetError", "tensor 'w' declares 4,294,967,296 dense bytes"),
    "header_deep": ("FormatError", "nests 4194305 levels, limit 32"),
}
ACCEPTED = ("zero_columns_grouped", "header_at_cap")


@pytest.mark.parametrize("case", sorted(REFUSED) + list(ACCEPTED))
def test_hostile_file_is_bounded(case):
    result = hostile_files.probe_in_subprocess(case)
    if case in REFUSED:
        error, fragment = REFUSED[case]
        assert result["outcome"] == error and fragment in result["message"], result
    else:
        assert result["outcome"] == "ok", result
    assert result["cpu_s"] < MAX_CPU_S, result
    assert result["peak_added"] < MAX_PEAK, result


def test_dense_budget_can_be_raised_and_lowered():
    data = hostile_files.wide_sparse()
    f = formats.loads(data, max_dense_bytes=4 << 30)  # opening is fine: nothing is decoded yet
    assert f.info("w").shape == (1, 2**30)
    small = formats.dumps([formats.Raw("r", __import__("numpy").zeros(10, "float32"))])
    assert formats.loads(small, max_dense_bytes=40).names == ["r"]
    with pytest.raises(formats.DenseBudgetError, match="tensor 'r' declares 40 dense bytes.*39-byte budget") as info:
        formats.loads(small, max_dense_bytes=39)
    assert isinstance(info.value, formats.FormatError)
    assert (info.value.declared, info.value.limit, info.value.tensor) == (40, 39, "r")
    assert str(info.value).endswith("(raise it with max_dense_bytes= if the file is trusted)")
    with pytest.raises(formats.FormatError, match="max_dense_bytes must be"):
        formats.loads(small, max_dense_bytes=-1)


@pytest.mark.parametrize("mmap", [True, False])
def test_open_keeps_the_budget_figures_for_the_caller(tmp_path, mmap):
    """formats.open re-raises a mapped file's error without its traceback: the figures must survive."""
    path = tmp_path / "r.dcz"
    formats.write(path, [formats.Raw("r", __import__("numpy").zeros(10, "float32"))])
    with pytest.raises(formats.DenseBudgetError) as info:
        formats.open(path, mmap=mmap, max_dense_bytes=39)
    assert (info.value.declared, info.value.limit, info.value.tensor) == (40, 39, "r")
    assert info.value.where.startswith("section 0 (header) at byte ")


def test_depth_ignores_escaped_quotes_and_brackets_in_strings():
    from dcz.formats.header import json_depth

    assert json_depth(b'{"a":"[[[\\"{{{\\\\","b":[[1]]}') == 3
    assert json_depth(b'["\\\\\\"[[[[",[]]') == 2
    assert json_depth(b"[" * 40 + b"]" * 40) == 40
