"""The fine-tuning driver: recover accuracy after pruning and after weight sharing.

Takes the user's loader (batches of (inputs, targets)), loss, optimizer factory and metric, or
sensible defaults (cross-entropy, Adam). Shows a tqdm progress bar. With a teacher (the dense
model), trains on the distillation loss instead of the task loss alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dcz.compressor.distill import distillation_loss
from dcz.compressor.errors import CompressError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]


def default_optimizer(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def finetune(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    lr: float,
    *,
    loss_fn: LossFn | None = None,
    optimizer_factory: OptimizerFactory | None = None,
    teacher: nn.Module | None = None,
    temperature: float = 4.0,
    alpha: float = 0.5,
    progress: bool = True,
    desc: str = "fine-tune",
    after_batch: Callable[[], None] | None = None,
    schedule: str = "constant",
    hold: float = 0.0,
) -> float:
    """Train `model`'s trainable parameters for `epochs` passes over `loader`; returns the last epoch's mean loss.

    A fresh optimizer is made for each call because the trainable parameters change between
    stages (weights while pruning, centroids after sharing). `after_batch()` runs after every
    optimizer step (the training-time pruning methods update their masks there). schedule 'cosine'
    or 'anneal' keeps the rate for the first `hold` fraction of the batches, then decays it to 0
    along a half cosine.
    """
    task_loss = loss_fn or F.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CompressError(f"{desc}: the model has no trainable parameters")
    optimizer = (optimizer_factory or default_optimizer)(params, lr)
    rate = None
    if schedule in ("cosine", "anneal"):
        total = epochs * _batches(loader, desc, schedule)
        rate = _cosine_rates(optimizer, total, round(hold * total))
    if teacher is not None:
        teacher.eval()
    mean_loss = float("nan")
    for epoch in range(epochs):
        model.train()
        total, batches = 0.0, 0
        bar = tqdm(
            loader, desc=f"{desc} {epoch + 1}/{epochs}", disable=None if progress else True, leave=False
        )  # None: only on a tty
        for batch in bar:
            inputs, targets = _split(batch, desc)
            optimizer.zero_grad(set_to_none=True)
            outputs = model(inputs)
            if teacher is None:
                loss = task_loss(outputs, targets)
            else:
                with torch.no_grad():
                    soft = teacher(inputs)
                loss = distillation_loss(outputs, soft, targets, temperature, alpha, task_loss)
            loss.backward()
            optimizer.step()
            if rate is not None:
                rate()
            if after_batch is not None:
                after_batch()
            total += float(loss.detach())
            batches += 1
            bar.set_postfix(loss=f"{total / batches:.4f}")
        mean_loss = total / max(batches, 1)
    model.eval()
    return mean_loss


def _batches(loader, desc: str, schedule: str) -> int:
    try:
        return len(loader)
    except TypeError:
        raise CompressError(f"{desc}: lr_schedule {schedule!r} needs a train loader with a len()") from None


def _cosine_rates(optimizer: torch.optim.Optimizer, total: int, hold: int = 0) -> Callable[[], None]:
    """A step function keeping every group's start rate for `hold` steps, then setting it to
    start rate * (1 + cos(pi * s / (total - hold))) / 2, s counting the steps after the hold."""
    start = [group["lr"] for group in optimizer.param_groups]
    step = 0
    span = max(total - hold, 1)

    def advance() -> None:
        nonlocal step
        step += 1
        factor = 0.5 * (1.0 + math.cos(math.pi * min(max(step - hold, 0), span) / span))
        for group, lr in zip(optimizer.param_groups, start, strict=True):
            group["lr"] = lr * factor

    return advance


def accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of `model` on in-memory tensors (a ready-made eval_fn body)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size])
            correct += int((logits.argmax(dim=-1) == targets[start : start + batch_size]).sum())
    return 100.0 * correct / max(len(inputs), 1)


def _split(batch, desc: str):
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise CompressError(f"{desc}: the train loader must yield (inputs, targets) batches, got {type(batch).__name__}")
