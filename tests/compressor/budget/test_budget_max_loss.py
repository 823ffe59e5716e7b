"""fit_max_loss (PyTorch --max-loss): the written file, decoded by the runtime, holds the loss on the
calibration data; a looser loss never gives a larger file; fine-tuning never gives a larger one either;
impossible targets and bad calibration data are one-line CompressErrors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from torch import nn  # noqa: E402

from dcz.compressor.budget import loss_target  # noqa: E402
from dcz.compressor.budget.candidates import CandidateGrid  # noqa: E402
from dcz.compressor.budget.loss_target import fit_max_loss, model_outputs  # noqa: E402
from dcz.compressor.budget.progress import SearchProgress  # noqa: E402
from dcz.compressor.budget.report import budget_report  # noqa: E402
from dcz.compressor.errors import CompressError  # noqa: E402
from dcz.compressor.onnx_damage import Damage  # noqa: E402

GRID = CandidateGrid(sparsities=(0.0, 0.5, 0.8, 0.95), label_bits=(1, 2, 3, 4, 6), gap_bits=(2, 4))


@pytest.fixture(scope="module")
def digits():
    """A small MLP trained on 1,200 of sklearn's 8x8 digits; the next 300 are the calibration data."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1200]), y[:1200]).backward()
        opt.step()
    loader = [(x[i : i + 100], y[i : i + 100]) for i in range(0, 1200, 100)]
    return model.eval(), x[1200:1500], y[1200:1500], loader


def _file_bound(path, x, y, model) -> float:
    from dcz import runtime

    with runtime.load(path) as compressed:
        outputs = [compressed.run(x.numpy())[0]]
    return Damage(model_outputs(model, x), None if y is None else y.numpy()).bound(outputs)


@pytest.mark.parametrize("with_labels", [True, False])
def test_written_file_holds_the_loss_on_the_calibration_data(digits, tmp_path, with_labels):
    model, x, y, _ = digits
    max_loss = 1.0 if with_labels else 0.1
    calib = (x, y) if with_labels else x
    result = fit_max_loss(model, x[:1], max_loss, calib=calib, candidates=GRID)
    result.save(tmp_path / "m.dcz")
    assert result.max_loss == max_loss and result.figures["bound"] <= max_loss
    assert _file_bound(tmp_path / "m.dcz", x, y if with_labels else None, model) == pytest.approx(
        result.figures["bound"], abs=1e-6
    )
    assert result.file_bytes == (tmp_path / "m.dcz").stat().st_size < result.dense_bytes / 3
    report = budget_report(tmp_path / "m.dcz")  # the file records its choice
    assert report["recorded_by_fit_budget"] and report["budget_bytes"] is None
    assert "within --max-loss" in result.to_text()


class _RecordedBar(SearchProgress):
    """The search's progress bar, recorded: steps, the totals it estimated, its stages."""

    last = None

    def __init__(self, total, say, enabled):
        super().__init__(total, say, False)
        self.n, self.totals, self.stages, self.closed = 0, [total], [], False
        _RecordedBar.last = self

    def stage(self, text):
        self.stages.append(text)

    def remaining(self, steps):
        self.totals.append(self.n + steps)

    def step(self, n=1):
        self.n += n

    def close(self):
        self.closed = True


def test_looser_loss_and_fine_tuning_never_give_a_larger_file(digits, monkeypatch):
    model, x, y, loader = digits
    tight = fit_max_loss(model, x[:1], 0.0, calib=(x, y), candidates=GRID)
    loose = fit_max_loss(model, x[:1], 3.0, calib=(x, y), candidates=GRID)
    monkeypatch.setattr(loss_target, "SearchProgress", _RecordedBar)
    tuned = fit_max_loss(model, x[:1], 3.0, calib=(x, y), candidates=GRID, train_loader=loader, train_steps=2)
    assert tight.file_bytes >= loose.file_bytes >= tuned.file_bytes
    assert tuned.figures["bound"] <= 3.0 and tight.figures["bound"] <= 0.0
    # the bar covers the whole search (sizing, measuring, searching, fine-tuning, writing): its first
    # estimate and the one made once the candidates were known are within 2x of the steps taken
    bar = _RecordedBar.last
    assert bar.closed and len(bar.totals) == 2
    assert bar.totals[0] / 2 <= bar.n <= bar.totals[0] * 2 and bar.totals[1] / 2 <= bar.n <= bar.totals[1] * 2
    assert any("fine-tuning" in s for s in bar.stages) and any("writing" in s for s in bar.stages)


def test_the_bar_shows_only_on_a_terminal_or_when_asked(capsys):
    assert SearchProgress(10, print, None).bar is None  # pytest's stderr is no terminal
    assert SearchProgress(10, print, False).bar is None
    shown = SearchProgress(10, print, True)
    shown.step(5)
    shown.close()
    assert "/10 [" in capsys.readouterr().err  # tqdm drew it


def test_impossible_loss_and_bad_calibration_are_one_line_errors(digits):
    model, x, y, _ = digits
    no_raw = CandidateGrid(sparsities=(0.0, 0.5), label_bits=(1, 2), gap_bits=(2,), allow_raw=False)
    with pytest.raises(CompressError, match="--max-loss 0 is impossible: the smallest relative output error"):
        fit_max_loss(model, x[:1], 0.0, calib=x, candidates=no_raw)
    with pytest.raises(CompressError, match="labels must be integers"):
        fit_max_loss(model, x[:1], 1.0, calib=(x, y.float()), candidates=GRID)
    with pytest.raises(CompressError, match="finite number >= 0"):
        fit_max_loss(model, x[:1], float("nan"), calib=x)
    with pytest.raises(CompressError, match="give calib="):
        fit_max_loss(model, x[:1], 1.0, calib=None)
