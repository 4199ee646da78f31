"""In-place knowledge distillation (BigNAS / OFA): the largest subnet teaches the others."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "student_loss"]


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The teacher's logits are detached, so gradients reach only the student. The loss is zero when
    the student's logits equal the teacher's (up to a constant per row), and its gradient moves
    the student's probabilities towards the teacher's.

    Raises:
        ValueError: `temperature` is not positive, or the shapes differ.
    """
    if temperature <= 0:
        raise ValueError(f"`temperature > 0` must hold, but got {temperature=}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student and teacher logits must have one shape, but got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}."
        )
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def student_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    alpha: float = 1.0,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``alpha * KD + (1 - alpha) * CE``; plain cross-entropy when there is no teacher."""
    if teacher_logits is None or alpha <= 0.0:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    kd = kd_loss(logits, teacher_logits, temperature)
    if alpha >= 1.0:
        return kd
    return alpha * kd + (1.0 - alpha) * F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
