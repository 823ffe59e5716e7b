"""fit_budget: the written file meets the budget, impossible budgets say how small is reachable,
the allocation beats a uniform one where it must, and the solver is exact on small problems."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dcz import formats  # noqa: E402
from dcz.compressor.budget import BudgetConfig  # noqa: E402
from dcz.compressor.budget.candidates import Candidate, CandidateGrid, LayerCandidates, measure_layer  # noqa: E402
from dcz.compressor.budget.fit import fit_budget, prepare_budget  # noqa: E402
from dcz.compressor.budget.report import budget_report, plot_rate_curve, render_text  # noqa: E402
from dcz.compressor.budget.solver import allocate, lower_hull, min_bytes, total  # noqa: E402
from dcz.compressor.errors import CompressError  # noqa: E402

GRID = CandidateGrid(
    sparsities=(0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99), label_bits=(1, 2, 4, 6), gap_bits=(2, 4, 6), allow_raw=True
)


class TwoBranch(nn.Module):
    """out = loud(x) + 0.01 * quiet(x): same shapes, so a uniform setting treats both alike,
    but errors in `quiet` barely reach the output. The solver must spend its bytes on `loud`."""

    def __init__(self) -> None:
        super().__init__()
        self.loud = nn.Linear(256, 128)
        self.quiet = nn.Linear(256, 128)

    def forward(self, x):
        return self.loud(x) + 0.01 * self.quiet(x)


def _toy(seed: int = 0):
    torch.manual_seed(seed)
    model = TwoBranch().eval()
    x = torch.randn(128, 256)
    return model, x


@pytest.fixture(scope="module")
def toy_problem():
    model, x = _toy()
    return model, x, prepare_budget(model, x, GRID)


# --- the solver alone (no torch model, no file) ------------------------------------------------------


def _random_layers(rng: random.Random, n_layers: int, n_cands: int) -> list[LayerCandidates]:
    layers = []
    for i in range(n_layers):
        cands = [Candidate(0.1 * j, 4, None, rng.randint(10, 300), rng.random() * 10) for j in range(n_cands)]
        layers.append(LayerCandidates(f"l{i}", "Linear", np.zeros(1, np.float32), np.zeros(1, np.float32), cands))
    return layers


@pytest.mark.parametrize("seed", range(8))
def test_allocation_matches_brute_force_on_small_problems(seed):
    rng = random.Random(seed)
    layers = _random_layers(rng, 3, 7)
    for target in range(min_bytes(layers), 700, 37):
        choice = allocate(layers, target)
        combos = [c for c in itertools.product(*[l.candidates for l in layers]) if sum(x.nbytes for x in c) <= target]
        best = min(sum(x.damage for x in c) for c in combos)
        nbytes, damage = total(choice)
        assert nbytes <= target
        assert damage == pytest.approx(best, rel=1e-12)  # the knapsack makes it exact at byte granularity


def test_lagrangian_alone_is_near_optimal_and_bucketed_knapsack_fits():
    from dcz.compressor.budget.solver import greedy_fill, knapsack, lagrangian

    rng = random.Random(11)
    layers = _random_layers(rng, 4, 9)
    for target in range(min_bytes(layers), 1200, 53):
        exact = total(knapsack(layers, target))
        greedy = total(greedy_fill(layers, lagrangian(layers, target), target))
        assert greedy[0] <= target and exact[0] <= target and exact[1] <= greedy[1] + 1e-12
        bucketed = knapsack(layers, target, max_cells=40)  # sizes rounded up to buckets: must still fit
        bucket = -(-target // 40)
        if bucketed is None:  # only allowed within one bucket per layer of the smallest total
            assert target < min_bytes(layers) + len(layers) * bucket
        else:
            assert total(bucketed)[0] <= target and exact[1] <= total(bucketed)[1] + 1e-12


def test_greedy_repair_gives_bytes_back_until_the_target_holds():
    from dcz.compressor.budget.solver import greedy_repair

    rng = random.Random(5)
    layers = _random_layers(rng, 3, 9)
    largest = [max(layer.candidates, key=lambda c: c.nbytes) for layer in layers]
    for target in (min_bytes(layers), min_bytes(layers) + 150, total(largest)[0] - 1):
        repaired = greedy_repair(layers, largest, target)
        assert total(repaired)[0] <= target
    assert greedy_repair(layers, largest, total(largest)[0]) == largest  # nothing to give back


def test_lower_hull_is_convex_and_decreasing():
    rng = random.Random(1)
    layer = _random_layers(rng, 1, 40)[0]
    hull = lower_hull(layer.candidates)
    assert hull[0].nbytes == min(c.nbytes for c in layer.candidates)
    assert all(a.nbytes < b.nbytes and a.damage > b.damage for a, b in zip(hull, hull[1:]))
    slopes = [(b.damage - a.damage) / (b.nbytes - a.nbytes) for a, b in zip(hull, hull[1:])]
    assert all(s1 <= s2 + 1e-12 for s1, s2 in zip(slopes, slopes[1:]))  # slopes rise: convex


# --- candidates come from real encodings -------------------------------------------------------------


def test_candidate_bytes_are_the_bytes_formats_writes():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(40, 50)).astype(np.float32)
    layer = measure_layer("w", "Linear", weight, np.ones_like(weight), GRID)
    for cand in layer.candidates:
        tensor = layer.state(cand).to_format_tensor("w")
        report = formats.loads(formats.dumps([tensor])).size_report()
        assert report.tensors[0].huffman_bytes == cand.nbytes, cand
        assert report.tensors[0].encoding == cand.encoding
    # best gap width per sparsity really is the smallest of the measured widths
    for sparsity, best in layer.best_gap.items():
        assert all(layer.gap_delta[(sparsity, b)] >= 0 for b in GRID.gap_bits)
        assert layer.gap_delta[(sparsity, best)] == 0


# --- fit_budget end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [10, 20, 40])
def test_written_file_meets_the_budget(toy_problem, tmp_path, fraction):
    model, x, problem = toy_problem
    dense = sum(4 * p.numel() for p in model.parameters())
    budget = dense // fraction
    result = fit_budget(model, x[:1], budget, problem=problem)
    result.save(tmp_path / "m.dcz")
    size = (tmp_path / "m.dcz").stat().st_size
    assert size <= budget and result.fits and result.file_bytes == size
    for alloc in result.allocation:  # predicted (encoded alone) equals actual (in the written file)
        assert alloc.predicted_bytes == alloc.actual_bytes, alloc
    with formats.open(tmp_path / "m.dcz") as dcz:
        assert dcz.metadata["compress.budget.bytes"] == budget


def test_budget_uses_most_of_the_room(toy_problem):
    model, x, problem = toy_problem
    dense = sum(4 * p.numel() for p in model.parameters())
    result = fit_budget(model, x[:1], dense // 20, problem=problem)
    # the next larger candidate of some layer is at least a few hundred bytes here; slack stays below that
    assert result.budget_bytes - result.file_bytes < 0.1 * result.budget_bytes


def test_impossible_budget_states_the_smallest_reachable_file(toy_problem):
    model, x, problem = toy_problem
    with pytest.raises(CompressError, match=r"smallest reachable file is (\d+) bytes") as info:
        fit_budget(model, x[:1], 500, problem=problem)
    smallest = int(info.value.args[0].split("smallest reachable file is ")[1].split()[0])
    assert smallest > 500
    exact = BudgetConfig(budget_bytes=smallest, uniform=False)
    assert fit_budget(model, x[:1], exact, problem=problem).file_bytes == smallest
    with pytest.raises(CompressError):
        fit_budget(model, x[:1], smallest - 1, problem=problem)


def test_solver_beats_uniform_where_one_layer_is_insensitive(toy_problem):
    model, x, problem = toy_problem
    dense = sum(4 * p.numel() for p in model.parameters())
    result = fit_budget(model, x[:1], dense // 40, problem=problem)
    assert result.uniform is not None and not result.chose_uniform
    assert result.damage < result.uniform.damage
    by_name = {a.name: a for a in result.allocation}
    assert by_name["loud.weight"].actual_bytes > by_name["quiet.weight"].actual_bytes
    with torch.no_grad():  # and the real output error agrees with the estimate
        ref = model(x)
        err_solver = float(((result.model(x) - ref) ** 2).mean())
        err_uniform = float(((result.uniform_model(x) - ref) ** 2).mean())
    assert err_solver < err_uniform


def test_finetune_keeps_size_masks_and_labels(toy_problem):
    model, x, problem = toy_problem
    y = model(x).argmax(1).detach()
    dense = sum(4 * p.numel() for p in model.parameters())
    tuned = fit_budget(
        model,
        x[:1],
        BudgetConfig(budget_bytes=dense // 40, uniform=False, finetune_epochs=2),
        problem=problem,
        train_loader=[(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)],
        eval_fn=lambda m: float((m(x).argmax(1) == y).float().mean()),
    )
    assert tuned.file_bytes <= tuned.budget_bytes
    assert {"dense", "budget", "budget+finetune"} <= set(tuned.accuracy)
    moved = 0
    for layer, alloc in zip(problem.layers, tuned.allocation):
        before = layer.state(layer.find(alloc.sparsity, alloc.label_bits))  # the state as allocated
        after = tuned.layers[layer.name]
        if before.codebook is None:
            continue
        np.testing.assert_array_equal(before.labels, after.labels)
        assert (before.mask is None) == (after.mask is None)
        if before.mask is not None:
            np.testing.assert_array_equal(before.mask, after.mask)
        moved += int(not np.array_equal(before.codebook, after.codebook))
        np.testing.assert_allclose(tuned.model.get_parameter(layer.name).detach().numpy(), after.weight(), atol=1e-6)
    assert moved  # the centroids did train


def test_report_of_a_file_and_rate_curve_png(toy_problem, tmp_path):
    model, x, problem = toy_problem
    dense = sum(4 * p.numel() for p in model.parameters())
    result = fit_budget(model, x[:1], dense // 20, problem=problem)
    result.save(tmp_path / "m.dcz")
    report = budget_report(tmp_path / "m.dcz")
    assert report["fits"] is True and report["budget_bytes"] == dense // 20
    assert report["recorded_by_fit_budget"]
    rows = {r["name"]: r for r in report["layers"]}
    for alloc in result.allocation:
        assert rows[alloc.name]["actual_bytes"] == alloc.actual_bytes == rows[alloc.name]["predicted_bytes"]
    tight = budget_report(tmp_path / "m.dcz", budget_bytes=result.file_bytes - 1)
    assert tight["fits"] is False and tight["slack_bytes"] == -1
    assert "DOES NOT FIT" in render_text(tight) and "over by 1 B" in render_text(tight)
    assert "FITS" in result.to_text() and "| layer |" in result.to_markdown()
    plot_rate_curve(result, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_rate_curve(report, tmp_path / "from_file.png")  # what `dcz report FILE --curve` draws: the file alone
    assert (tmp_path / "from_file.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["curve"]) >= 2 and all(b >= report["overhead_bytes"] for b, _ in report["curve"])


def test_bad_arguments_are_compress_errors(toy_problem):
    model, x, problem = toy_problem
    with pytest.raises(CompressError, match=r"budget.budget_bytes: must be an integer >= 1, got 0"):
        fit_budget(model, x[:1], 0, problem=problem)
    with pytest.raises(CompressError, match=r"candidates.sparsities\[0\]: must be in \[0, 1\), got 1.0"):
        CandidateGrid(sparsities=(1.0,))
    with pytest.raises(CompressError, match=r"candidates.label_bits\[0\]: must be an integer in 1..8, got 0"):
        CandidateGrid(label_bits=(0, 4))
    with pytest.raises(CompressError, match=r"budget.candidates: differs from the grid"):
        fit_budget(model, x[:1], BudgetConfig(budget_bytes=10_000, candidates=CandidateGrid()), problem=problem)
    with pytest.raises(CompressError, match="no Linear or Conv"):
        prepare_budget(nn.Sequential(nn.ReLU()), x)


def test_damage_measured_with_the_users_metric(toy_problem):
    model, x, _ = toy_problem
    with torch.no_grad():
        ref = model(x)
    calls = []

    def neg_mse(m):  # higher is better
        calls.append(1)
        with torch.no_grad():
            return -float(((m(x) - ref) ** 2).mean())

    grid = CandidateGrid(sparsities=(0.0, 0.8, 0.95, 0.99), label_bits=(1, 2, 4), gap_bits=(3, 5), allow_raw=False)
    problem = prepare_budget(model, x, grid, metric_fn=neg_mse, metric_points=5)
    assert len(calls) == 1 + 2 * 5  # dense once, then each layer's thinned front
    assert all(len(layer.candidates) <= 5 for layer in problem.layers)
    dense = sum(4 * p.numel() for p in model.parameters())
    result = fit_budget(model, x[:1], BudgetConfig(budget_bytes=dense // 10, uniform=False), problem=problem)
    assert result.file_bytes <= dense // 10
    by_name = {a.name: a for a in result.allocation}
    assert by_name["loud.weight"].actual_bytes > by_name["quiet.weight"].actual_bytes


def test_without_calibration_data_noise_inputs_still_see_layer_sensitivity():
    model, _ = _toy()
    zeros = torch.zeros(1, 256)  # a zero example input carries no gradient: noise stands in for data
    dense = sum(4 * p.numel() for p in model.parameters())
    result = fit_budget(model, zeros, BudgetConfig(budget_bytes=dense // 20, candidates=GRID, uniform=False))
    by_name = {a.name: a for a in result.allocation}
    assert result.fits and by_name["loud.weight"].actual_bytes > by_name["quiet.weight"].actual_bytes


def test_uniform_baseline_picked_by_measured_score(toy_problem):
    model, x, problem = toy_problem
    with torch.no_grad():
        ref = model(x)

    def neg_mse(m):
        with torch.no_grad():
            return -float(((m(x) - ref) ** 2).mean())

    dense = sum(4 * p.numel() for p in model.parameters())
    by_damage = fit_budget(model, x[:1], dense // 20, problem=problem)
    by_score = fit_budget(model, x[:1], dense // 20, problem=problem, uniform_fn=neg_mse)
    assert by_score.uniform.file_bytes <= dense // 20
    assert neg_mse(by_score.uniform_model) >= neg_mse(by_damage.uniform_model)
    assert neg_mse(by_score.model) > neg_mse(by_score.uniform_model)  # the solver still wins here


def test_finetune_leaves_the_states_it_was_given_alone(toy_problem):
    """The allocation's own codebooks are not trained in place (a search may still write them)."""
    from dcz.compressor.budget.finetune import finetune_centroids
    from dcz.compressor.budget.fit import Plan, _bake

    model, x, problem = toy_problem
    y = model(x).argmax(1).detach()
    states = Plan([layer.find(0.5, 2) for layer in problem.layers], [None, None]).states(problem.layers)
    books = {name: state.codebook.copy() for name, state in states.items()}
    _, tuned = finetune_centroids(_bake(model, states), states, [(x, y)], epochs=2, lr=1e-2)
    for name, state in states.items():
        np.testing.assert_array_equal(state.codebook, books[name])
        assert not np.array_equal(tuned[name].codebook, books[name])


def test_impossible_budget_is_refused_before_measuring(monkeypatch):
    """No Fisher pass, no candidate grid: refused from the smallest corner of the grid; the size it
    names is then reachable."""
    import dcz.compressor.budget.fit as fit

    model, x = _toy()
    config = BudgetConfig(budget_bytes=500, candidates=GRID, uniform=False)
    with monkeypatch.context() as patch:
        patch.setattr(fit, "prepare_budget", lambda *a, **k: pytest.fail("measured before refusing"))
        with pytest.raises(CompressError, match="found before any measuring") as info:
            fit_budget(model, x[:1], config, calib=x)
    upper = int(str(info.value).rsplit("at least ", 1)[1].split()[0])
    result = fit_budget(model, x[:1], BudgetConfig(budget_bytes=upper, candidates=GRID, uniform=False), calib=x)
    assert result.file_bytes <= upper
