"""Config objects: lookup order, strict keys, impossible values (issue 3, item 5)."""

import json

import pytest

from dcz.compressor import CompressConfig, CompressError, LayerConfig
from dcz.compressor.budget import BudgetConfig, CandidateGrid, OnnxSearchConfig


def test_lookup_goes_name_then_type_then_family_then_global_then_defaults():
    config = CompressConfig.from_dict(
        {
            "global": {"prune": "sparsity", "sparsity": 0.5},
            "by_type": {"conv": {"bits": 6}, "Conv2d": {"gap_bits": 3}},
            "by_name": {"fc1.weight": {"bits": 4}},
        }
    )
    fc1 = config.for_layer("fc1.weight", "Linear")
    assert (fc1.bits, fc1.gap_bits, fc1.prune, fc1.sparsity) == (4, 5, "sparsity", 0.5)
    conv = config.for_layer("c.weight", "Conv2d")
    assert (conv.bits, conv.gap_bits) == (6, 3)
    onnx_conv = config.for_layer("w", "Conv")  # the family entry covers ONNX layers too
    assert (onnx_conv.bits, onnx_conv.gap_bits) == (6, 8)
    gemm = config.for_layer("g", "Gemm")  # paper defaults for fc
    assert (gemm.bits, gemm.gap_bits, gemm.init, gemm.share) == (5, 5, "linear", True)


def test_round_trip_through_dict():
    config = CompressConfig.from_dict({"by_name": {"a": {"skip": True}}, "prune_steps": 3, "distill_temperature": 4.0})
    assert CompressConfig.from_dict(config.to_dict()) == config
    assert "lr_schedule" not in config.to_dict()  # default left out: older files' metadata reads the same
    cosine = CompressConfig.from_dict({"lr_schedule": "cosine"})
    assert CompressConfig.from_dict(cosine.to_dict()) == cosine


@pytest.mark.parametrize(
    "data, named",
    [
        ({"globl": {}}, "'globl'"),
        ({"global": {"bitz": 3}}, "'bitz'"),
        ({"by_name": {"fc1": {"sparsty": 0.5}}}, "'sparsty'"),
        ({"global": {"bits": 0}}, "config.global.bits"),
        ({"global": {"bits": 9}}, "config.global.bits"),
        ({"by_type": {"Linear": {"gap_bits": 0}}}, "config.by_type['Linear'].gap_bits"),
        ({"by_name": {"fc1": {"sparsity": 1.0}}}, "config.by_name['fc1'].sparsity"),
        ({"global": {"sparsity": -0.1}}, "config.global.sparsity"),
        ({"global": {"threshold": -1}}, "config.global.threshold"),
        ({"global": {"prune": "magic"}}, "config.global.prune"),
        ({"global": {"bits": True}}, "config.global.bits"),
        ({"prune_steps": 0}, "config.prune_steps"),
        ({"lr_schedule": "linear"}, "config.lr_schedule"),
        ({"lr": 0}, "config.lr"),
    ],
)
def test_bad_config_fails_with_one_line_naming_the_key(data, named):
    with pytest.raises(CompressError) as info:
        CompressConfig.from_dict(data)
    message = str(info.value)
    assert named in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_direct_construction_is_checked_too():
    with pytest.raises(CompressError, match="bits"):
        LayerConfig(bits=12)


def test_unknown_layer_name_is_reported():
    config = CompressConfig(by_name={"fc9.weight": LayerConfig(bits=4)})
    with pytest.raises(CompressError, match="fc9.weight"):
        config.check_names(["fc1.weight"])


def test_overrides_layer_on_top_and_a_setting_everywhere_drops_per_layer_ones():
    base = CompressConfig.from_dict(
        {
            "global": {"prune": "threshold", "threshold": 0.1, "bits": 4},
            "by_type": {"conv": {"bits": 8, "sparsity": 0.7, "init": "density"}},
            "by_name": {"fc2.weight": {"quality": 1.5, "prune": "quality", "gap_bits": 3}},
            "seed": 1,
        }
    )
    over = base.with_overrides(
        {"prune": "sparsity", "sparsity": 0.9, "bits": 5}, by_name={"fc1.weight": {"gap_bits": 2}}, seed=7
    )
    assert over.global_config == LayerConfig(prune="sparsity", threshold=0.1, sparsity=0.9, bits=5)
    assert over.by_type["conv"] == LayerConfig(init="density")  # bits, and the prune method's parameters, dropped
    assert over.by_name["fc2.weight"] == LayerConfig(gap_bits=3)
    assert over.by_name["fc1.weight"] == LayerConfig(gap_bits=2)
    assert over.seed == 7 and base.seed == 1 and base.by_type["conv"].bits == 8  # a copy: base unchanged
    merged = base.with_overrides(by_type={"conv": {"gap_bits": 6}})  # per-layer values merge into the entry
    assert merged.by_type["conv"] == LayerConfig(bits=8, sparsity=0.7, init="density", gap_bits=6)
    assert base.with_overrides() == base


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"everywhere": {"bitz": 3}}, "config.global: unknown key 'bitz'"),
        ({"everywhere": {"bits": 9}}, "config.global.bits: must be an integer in 1..8, got 9"),
        ({"by_type": {"conv": {"bits": 0}}}, "config.by_type['conv'].bits: must be an integer in 1..8, got 0"),
        ({"by_name": {"fc1": {"sparsty": 0.5}}}, "config.by_name['fc1']: unknown key 'sparsty'"),
        ({"seed": -1}, "config.seed: must be an integer >= 0, got -1"),
        ({"globl": {}}, "config: unknown key 'globl'"),
    ],
)
def test_overrides_are_strict(kwargs, named):
    with pytest.raises(CompressError) as info:
        CompressConfig().with_overrides(**kwargs)
    assert named in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        LayerConfig(prune="sparsity", sparsity=0.5, bits=4),
        CandidateGrid(sparsities=(0.0, 0.5), label_bits=(2, 4)),
        BudgetConfig(budget_bytes=1000, candidates=CandidateGrid(gap_bits=(3,)), distill=True),
        OnnxSearchConfig(max_loss=0.5, points=4, candidates=CandidateGrid(allow_raw=False)),
    ],
    ids=lambda c: type(c).__name__,
)
def test_strict_configs_share_one_round_trip(config):
    """LayerConfig, CandidateGrid, BudgetConfig and OnnxSearchConfig get keys / from_dict / to_dict from
    StrictConfig: plain JSON data out, an equal config back, unknown keys named under the root path."""
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data and type(config).from_dict(data) == config
    with pytest.raises(CompressError, match=rf"^{type(config).root()}: unknown key 'colour'"):
        type(config).from_dict({**data, "colour": 1})
