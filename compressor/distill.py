"""Knowledge distillation from the dense model while the compressed one recovers (Hinton et al. 2015)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
    task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * task_loss(student, targets).

    Soft targets are the teacher's softmax at temperature T; the T^2 factor keeps their gradient
    scale independent of T.
    """
    soft_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    soft_student = F.log_softmax(student_logits / temperature, dim=-1)
    soft = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True) * temperature**2
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * task_loss(student_logits, targets)
