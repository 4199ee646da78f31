"""In-place distillation loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nas.train import kd_loss, student_loss


def test_zero_when_student_equals_teacher() -> None:
    t = torch.randn(8, 10)
    assert kd_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(t + 3.0, t).item() == pytest.approx(0.0, abs=1e-6)  # softmax is shift-invariant
    assert kd_loss(torch.randn(8, 10), t).item() > 0


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_gradient_points_from_student_to_teacher(temperature: float) -> None:
    torch.manual_seed(0)
    teacher = torch.randn(4, 5, requires_grad=True)
    student = torch.randn(4, 5, requires_grad=True)
    loss = kd_loss(student, teacher, temperature)
    loss.backward()
    t = temperature
    expected = t * (F.softmax(student / t, -1) - F.softmax(teacher / t, -1)) / student.shape[0]
    torch.testing.assert_close(student.grad, expected.detach())
    assert teacher.grad is None  # the teacher's logits are detached
    with torch.no_grad():  # a small step against the gradient lowers the loss
        after = kd_loss(student - 0.5 * student.grad, teacher, temperature)
    assert after < loss


def test_student_loss_mixes_kd_and_labels() -> None:
    torch.manual_seed(1)
    s, t, y = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 3, (6,))
    ce, kd = F.cross_entropy(s, y), kd_loss(s, t)
    assert student_loss(s, y, None) == pytest.approx(ce.item())
    assert student_loss(s, y, t, alpha=1.0) == pytest.approx(kd.item())
    assert student_loss(s, y, t, alpha=0.25).item() == pytest.approx(
        0.25 * kd.item() + 0.75 * ce.item(), rel=1e-5
    )


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="temperature > 0"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="one shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
