"""A short fuzz run in CI: mutated files raise FormatError or decode; nothing else escapes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.dev.fuzz_formats import (
    HOSTILE_VALUES,
    OPS,
    exercise,
    fix_checksums,
    mutate,
    mutate_header,
    mutate_section,
    seed_files,
)

SEEDS = seed_files()

mutation = st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), st.integers(0, 255), st.integers(1, 64))


@settings(max_examples=1000)
@given(st.sampled_from(range(len(SEEDS))), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_byte_mutations_raise_only_format_error(seed, mutations, fix):
    data = SEEDS[seed]
    for op, pos, value, length in mutations:
        data = mutate(data, op, pos, value, length)
    exercise(fix_checksums(data) if fix else data)


@settings(max_examples=500)
@given(st.sampled_from(range(len(SEEDS))), st.integers(0, 10_000), st.sampled_from(HOSTILE_VALUES))
def test_header_mutations_raise_only_format_error(seed, which, value):
    exercise(mutate_header(SEEDS[seed], which, value))


@settings(max_examples=1000)
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 1 << 16), st.integers(0, 7)), min_size=1, max_size=3),
)
def test_in_section_bit_flips_raise_only_format_error(seed, flips):
    data = SEEDS[seed]
    for which, pos, bit in flips:
        data = mutate_section(data, which, pos, bit)
    exercise(data)


def test_long_runner_smoke(capsys):
    from tools.dev.fuzz_formats import main

    assert main(["--seconds", "1", "--seed", "3"]) == 0
    assert "no exception other than FormatError" in capsys.readouterr().out
