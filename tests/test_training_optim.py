"""llm_core/training/optim.py's AdamW on a column-major parameter (GPT's tied embedding): the same update as
torch's AdamW on the row-major matrix, computed on contiguous views."""
from __future__ import annotations

import copy

import pytest
import torch

from llm_core.embedding import column_major
from llm_core.training.optim import AdamW


def _pair() -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.nn.Parameter]:
    torch.manual_seed(0)
    rows = torch.randn(37, 8)
    column = torch.nn.Parameter(rows.t().contiguous().t())  # (37, 8), strides (1, 37)
    return column, torch.nn.Parameter(rows.clone()), torch.nn.Parameter(torch.randn(8, 8))


@pytest.mark.parametrize("mode", [dict(fused=True), dict(foreach=True), dict(foreach=False)])
def test_the_update_of_a_column_major_parameter_is_torchs_row_major_one(mode: dict) -> None:
    column, row, other = _pair()
    other_copy = torch.nn.Parameter(other.detach().clone())
    ours = AdamW([column, other], lr=0.1, weight_decay=0.1, **mode)
    theirs = torch.optim.AdamW([row, other_copy], lr=0.1, weight_decay=0.1, **mode)
    for step in range(3):
        g = torch.randn(37, 8)
        go = torch.randn(8, 8)
        column.grad = g.t().contiguous().t()  # the gradient in the parameter's layout, as autograd leaves it
        row.grad, other.grad, other_copy.grad = g.clone(), go.clone(), go.clone()
        ours.step()
        theirs.step()
        assert torch.equal(column.detach(), row.detach()), step
        assert torch.equal(other.detach(), other_copy.detach()), step
    assert column.stride() == (1, 37) and ours.state[column]["exp_avg"].stride() == (1, 37)
    torch.testing.assert_close(ours.state[column]["exp_avg_sq"], theirs.state[row]["exp_avg_sq"], rtol=0, atol=0)


def test_the_kernel_gets_contiguous_views() -> None:
    column, _, other = _pair()
    column.grad, other.grad = torch.ones(8, 37).t(), torch.ones(8, 8)
    opt = AdamW([column, other], fused=True)
    params, grads, avgs, sqs, maxes, steps = [], [], [], [], [], []
    opt._init_group(opt.param_groups[0], params, grads, avgs, sqs, maxes, steps)
    assert [t.shape for t in params] == [(8, 37), (8, 8)]
    assert all(t.is_contiguous() for t in params + grads + avgs + sqs)
    assert params[0].data_ptr() == column.data_ptr()  # a view of the parameter, not a copy


def test_a_gradient_in_another_layout_still_gets_the_same_update() -> None:
    column, row, _ = _pair()
    ours, theirs = AdamW([column], lr=0.1, fused=True), torch.optim.AdamW([row], lr=0.1, fused=True)
    g = torch.randn(37, 8)
    column.grad, row.grad = g.clone(), g.clone()  # row-major gradient on a column-major parameter
    ours.step()
    theirs.step()
    assert torch.equal(column.detach(), row.detach())


def test_moments_of_a_row_major_checkpoint_are_moved_into_the_parameters_layout() -> None:
    """Resuming a run saved before the embedding was column-major: its moments are row-major."""
    column, row, _ = _pair()
    ours, theirs = AdamW([column], lr=0.1, fused=True), torch.optim.AdamW([row], lr=0.1, fused=True)
    for opt, p in ((theirs, row), (ours, column)):
        p.grad = torch.full((37, 8), 0.5) if p is row else torch.full((8, 37), 0.5).t()
        opt.step()
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # row-major moments, column-major parameter
    assert not column_major(ours.state[column]["exp_avg"])
    g = torch.randn(37, 8)
    column.grad, row.grad = g.t().contiguous().t(), g.clone()
    ours.step()
    theirs.step()
    assert torch.equal(column.detach(), row.detach())
    assert ours.state[column]["exp_avg"].stride() == column.stride()
