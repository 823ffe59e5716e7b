"""Fine-tuning driver and distillation loss."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcz.compressor import CompressError
from dcz.compressor.distill import distillation_loss
from dcz.compressor.finetune import accuracy, finetune

torch.set_num_threads(1)  # tiny models: extra threads only contend on the shared CI cores


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(256, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y, [(X[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def test_finetune_reduces_loss_and_raises_accuracy():
    torch.manual_seed(0)
    X, y, loader = _toy()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    before = accuracy(model, X, y)
    first = finetune(model, loader, 1, 1e-2, progress=False)
    last = finetune(model, loader, 5, 1e-2, progress=False)
    assert last < first and accuracy(model, X, y) > max(before, 90.0)


def test_distillation_loss_matches_its_definition():
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    targets = torch.tensor([0, 1, 2, 1, 0])
    T, alpha = 3.0, 0.6
    p_teacher = F.softmax(teacher / T, dim=-1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / T, dim=-1))).sum(-1).mean()
    expected = alpha * kl * T * T + (1 - alpha) * F.cross_entropy(student, targets)
    assert distillation_loss(student, teacher, targets, T, alpha).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, targets, T, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_finetune_with_teacher_moves_student_towards_it():
    torch.manual_seed(0)
    X, y, loader = _toy()
    teacher = nn.Linear(4, 2)
    student = nn.Linear(4, 2)

    def gap():  # KL(teacher || student) of the predicted distributions
        with torch.no_grad():
            return F.kl_div(
                F.log_softmax(student(X), -1), F.log_softmax(teacher(X), -1), log_target=True, reduction="batchmean"
            ).item()

    start = gap()
    finetune(student, loader, 20, 5e-2, teacher=teacher, temperature=2.0, alpha=1.0, progress=False)
    assert gap() < start / 2


def test_bad_loader_is_a_clear_error():
    with pytest.raises(CompressError, match=r"\(inputs, targets\)"):
        finetune(nn.Linear(2, 2), [torch.zeros(1, 2)], 1, 1e-3, progress=False)


def test_progress_bar_draws_only_on_a_terminal(capsys):
    """progress=True on a redirected stderr (pytest's capture is not a tty): no bar, no redraws."""
    model = nn.Linear(2, 2)
    loader = [(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))] * 3
    finetune(model, loader, 2, 1e-3, progress=True)
    _, err = capsys.readouterr()
    assert err == ""


def test_cosine_schedule_decays_the_rate_to_zero_by_the_last_batch():
    torch.manual_seed(0)
    _, _, loader = _toy()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    seen = []
    optimizers = []

    def factory(params, lr):
        optimizers.append(torch.optim.SGD(params, lr=lr))
        return optimizers[-1]

    finetune(
        model,
        loader,
        2,
        0.1,
        optimizer_factory=factory,
        progress=False,
        schedule="cosine",
        after_batch=lambda: seen.append(optimizers[0].param_groups[0]["lr"]),
    )
    assert len(seen) == 2 * len(loader)
    assert seen[len(seen) // 2 - 1] == pytest.approx(0.05)  # half way: half the rate
    assert all(a > b for a, b in zip(seen, seen[1:])) and seen[-1] == pytest.approx(0.0, abs=1e-12)


def test_cosine_schedule_needs_a_sized_loader():
    model = nn.Linear(4, 2)
    batches = iter([(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))])
    with pytest.raises(CompressError, match="lr_schedule 'cosine' needs a train loader with a len"):
        finetune(model, batches, 1, 0.1, progress=False, schedule="cosine")


def test_anneal_holds_the_rate_then_decays_it_to_zero():
    torch.manual_seed(0)
    _, _, loader = _toy()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    seen, optimizers = [], []

    def factory(params, lr):
        optimizers.append(torch.optim.SGD(params, lr=lr))
        return optimizers[-1]

    record = lambda: seen.append(optimizers[0].param_groups[0]["lr"])  # noqa: E731
    finetune(
        model,
        loader,
        4,
        0.1,
        optimizer_factory=factory,
        progress=False,
        schedule="anneal",
        hold=0.5,
        after_batch=record,
    )
    held, decayed = seen[: len(seen) // 2], seen[len(seen) // 2 :]
    assert held == [0.1] * len(held)  # the rate while masks may still change
    assert all(a > b for a, b in zip(decayed, decayed[1:])) and decayed[-1] == pytest.approx(0.0, abs=1e-12)
