"""The distillation loss against the formula written out with explicit sums."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_core.distill import distillation_loss, distillation_terms
from llm_core.errors import ConfigError


def _case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 3, 5, generator=g)
    teacher = torch.randn(2, 3, 5, generator=g) * 2
    labels = torch.tensor([[1, -100, 4], [-100, 0, 2]])
    return student, teacher, labels


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def _by_hand(student, teacher, labels, T, alpha, reverse=False):
    kd_terms, ce_terms = [], []
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            y = int(labels[b, t])
            if y == -100:
                continue
            ps = _softmax([float(x) / T for x in student[b, t]])
            pt = _softmax([float(x) / T for x in teacher[b, t]])
            p, q = (ps, pt) if reverse else (pt, ps)
            kd_terms.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))
            ce_terms.append(-math.log(_softmax([float(x) for x in student[b, t]])[y]))
    kd = T * T * sum(kd_terms) / len(kd_terms)
    ce = sum(ce_terms) / len(ce_terms)
    return alpha * kd + (1 - alpha) * ce


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (2.0, 0.7), (4.0, 1.0)])
def test_loss_is_the_formula(T, alpha, reverse) -> None:
    student, teacher, labels = _case()
    got = distillation_loss(student, teacher, labels, temperature=T, alpha=alpha, reverse=reverse)
    assert float(got) == pytest.approx(_by_hand(student, teacher, labels, T, alpha, reverse), rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy() -> None:
    student, teacher, labels = _case()
    got = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.0)
    expected = F.cross_entropy(student.reshape(-1, 5), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(got, expected)


def test_student_equal_to_teacher_has_no_kd_term() -> None:
    student, _, labels = _case()
    kd, ce = distillation_terms(student, student.clone(), labels, temperature=1.0)
    assert float(kd) == pytest.approx(0.0, abs=1e-7) and float(ce) > 0


def test_ignored_positions_do_not_count() -> None:
    student, teacher, labels = _case()
    changed_s, changed_t = student.clone(), teacher.clone()
    changed_s[0, 1] += 100  # position (0, 1) is ignored
    changed_t[1, 0] -= 50  # and so is (1, 0)
    assert torch.allclose(distillation_loss(student, teacher, labels, 2.0, 0.5),
                          distillation_loss(changed_s, changed_t, labels, 2.0, 0.5))


def test_the_teacher_gets_no_gradient_and_the_student_does() -> None:
    student, teacher, labels = _case()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    distillation_loss(student, teacher, labels, 2.0, 0.5).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0


def test_bad_input_is_a_one_line_error() -> None:
    student, teacher, labels = _case()
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        distillation_loss(student, teacher, labels, temperature=0.0)
    with pytest.raises(ConfigError, match="share the vocabulary"):
        distillation_loss(student, teacher[..., :4], labels)
