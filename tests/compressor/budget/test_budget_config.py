"""BudgetConfig: strict (unknown keys, wrong types and ranges name the field), frozen, round-trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcz.compressor.budget import BudgetConfig, CandidateGrid
from dcz.compressor.budget.config import as_budget_config
from dcz.compressor.errors import CompressError


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "budget: missing key 'budget_bytes'"),
        ({"budget_bytes": 0}, "budget.budget_bytes: must be an integer >= 1, got 0"),
        ({"budget_bytes": 1.5e5}, "budget.budget_bytes: must be an integer, got 150000.0"),
        ({"budget_bytes": True}, "budget.budget_bytes: must be an integer, got True"),
        ({"budget_bytes": 9, "finetune": 2}, "budget: unknown key 'finetune' (known: budget_bytes, candidates"),
        ({"budget_bytes": 9, "uniform": "yes"}, "budget.uniform: must be true or false, got 'yes'"),
        ({"budget_bytes": 9, "finetune_epochs": -1}, "budget.finetune_epochs: must be an integer >= 0, got -1"),
        ({"budget_bytes": 9, "finetune_lr": 0}, "budget.finetune_lr: must be > 0, got 0"),
        ({"budget_bytes": 9, "distill": 1}, "budget.distill: must be true or false, got 1"),
        ({"budget_bytes": 9, "metric_points": 1}, "budget.metric_points: must be an integer >= 2, got 1"),
        ({"budget_bytes": 9, "seed": -3}, "budget.seed: must be an integer >= 0, got -3"),
        ({"budget_bytes": 9, "candidates": {"bits": [4]}}, "budget.candidates: unknown key 'bits'"),
        ({"budget_bytes": 9, "candidates": {"sparsities": []}}, "budget.candidates.sparsities: must be a non-empty"),
        ({"budget_bytes": 9, "candidates": {"sparsities": "0.5"}}, "budget.candidates.sparsities: must be a non"),
        ({"budget_bytes": 9, "candidates": {"label_bits": [4, 9]}}, "budget.candidates.label_bits[1]: must be an"),
        ({"budget_bytes": 9, "candidates": {"gap_bits": [2.0]}}, "budget.candidates.gap_bits[0]: must be an integer"),
        ({"budget_bytes": 9, "candidates": {"allow_raw": None}}, "budget.candidates.allow_raw: must be true or false"),
        ({"budget_bytes": 9, "candidates": [0.5]}, "budget.candidates: must be a mapping, got list"),
    ],
)
def test_bad_settings_name_the_field(data, message):
    with pytest.raises(CompressError) as info:
        BudgetConfig.from_dict(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_frozen_and_typed_in_the_constructor_too():
    config = BudgetConfig(budget_bytes=np.int64(50_000))  # size arithmetic in numpy gives numpy integers
    assert config.budget_bytes == 50_000 and type(config.budget_bytes) is int
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    with pytest.raises(CompressError, match="budget.candidates: must be a CandidateGrid, got dict"):
        BudgetConfig(budget_bytes=9, candidates={"label_bits": [4]})


def test_as_budget_config_takes_a_config_a_mapping_or_bytes():
    config = BudgetConfig(budget_bytes=1000, seed=2)
    assert as_budget_config(config) is config
    assert as_budget_config({"budget_bytes": 1000, "seed": 2}) == config
    assert as_budget_config(1000) == BudgetConfig(budget_bytes=1000)
    for bad in ("100KB", 1e3, None, True):
        with pytest.raises(CompressError, match="budget: must be a BudgetConfig, a mapping or a number of bytes"):
            as_budget_config(bad)


widths = st.lists(st.integers(1, 8), min_size=1, max_size=8).map(tuple)


@given(
    budget=st.integers(1, 1 << 40),
    sparsities=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=6).map(tuple),
    label_bits=widths,
    gap_bits=widths,
    allow_raw=st.booleans(),
    grid=st.booleans(),
    uniform=st.booleans(),
    epochs=st.integers(0, 9),
    lr=st.floats(1e-6, 1.0),
    distill=st.booleans(),
    points=st.integers(2, 50),
    seed=st.integers(0, 1 << 31),
)
def test_to_dict_from_dict_round_trip(
    budget, sparsities, label_bits, gap_bits, allow_raw, grid, uniform, epochs, lr, distill, points, seed
):
    candidates = CandidateGrid(sparsities, label_bits, gap_bits, allow_raw) if grid else None
    config = BudgetConfig(budget, candidates, uniform, epochs, lr, distill, points, seed)
    data = config.to_dict()
    assert BudgetConfig.from_dict(data) == config
    assert all(isinstance(v, (int, float, bool, list, dict)) for v in data.values())  # JSON-able
