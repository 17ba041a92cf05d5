"""Hand-derived losses, gradients and update rules (nerbook.losses) agree with PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from nerbook.losses import (
    adam_init,
    adam_l2_step,
    adamw_step,
    bce_grad_logits,
    binary_cross_entropy,
    log_softmax,
    logistic_grad,
    logistic_loss,
    logsumexp,
    one_hot,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

f64 = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- binary cross-entropy -----------------------------------------------------------------


def test_sigmoid_matches_torch_and_is_stable() -> None:
    z = torch.cat([torch.randn(100, dtype=f64) * 5, torch.tensor([-1000.0, 1000.0, 0.0], dtype=f64)])
    torch.testing.assert_close(sigmoid(z), torch.sigmoid(z), atol=1e-12, rtol=1e-12)
    assert torch.isfinite(sigmoid(z)).all()
    assert gradcheck(sigmoid, (torch.randn(10, dtype=f64, requires_grad=True),))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_matches_torch(reduction: str) -> None:
    z = torch.randn(4, 6, dtype=f64) * 3
    y = torch.rand(4, 6, dtype=f64)  # soft labels work too
    ref = F.binary_cross_entropy_with_logits(z, y, reduction=reduction)
    torch.testing.assert_close(binary_cross_entropy(z, y, reduction=reduction), ref, atol=1e-12, rtol=1e-12)


def test_bce_stable_at_extreme_logits() -> None:
    z = torch.tensor([-1000.0, -1000.0, 1000.0, 1000.0])
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    mine = binary_cross_entropy(z, y, reduction="none")
    assert torch.isfinite(mine).all()
    torch.testing.assert_close(mine, torch.tensor([0.0, 1000.0, 1000.0, 0.0]))
    torch.testing.assert_close(mine, F.binary_cross_entropy_with_logits(z, y, reduction="none"))
    # the naive form log(sigmoid) does not survive it
    p = 1 / (1 + torch.exp(-z))
    naive = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert not torch.isfinite(naive).all()
    g = bce_grad_logits(z, y, reduction="none")
    torch.testing.assert_close(g, torch.tensor([0.0, -1.0, 1.0, 0.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_grad_matches_autograd(reduction: str) -> None:
    z = (torch.randn(32, dtype=f64) * 4).requires_grad_(True)
    y = (torch.rand(32) > 0.5).to(f64)
    (auto,) = torch.autograd.grad(binary_cross_entropy(z, y, reduction=reduction), z)
    torch.testing.assert_close(bce_grad_logits(z.detach(), y, reduction=reduction), auto, atol=1e-6, rtol=1e-6)
    assert gradcheck(lambda t: binary_cross_entropy(t, y, reduction=reduction), (z,))


def test_logistic_grad_matches_autograd() -> None:
    x = torch.randn(50, 4, dtype=f64) * torch.tensor([1.0, 10.0, 0.1, 1.0], dtype=f64)
    y = (torch.rand(50) > 0.5).to(f64)
    w = torch.randn(4, dtype=f64, requires_grad=True)
    (auto,) = torch.autograd.grad(logistic_loss(w, x, y), w)
    torch.testing.assert_close(logistic_grad(w.detach(), x, y), auto, atol=1e-6, rtol=1e-6)
    # = (p - y) . x averaged over examples
    p = torch.sigmoid(x @ w.detach())
    torch.testing.assert_close(logistic_grad(w.detach(), x, y), ((p - y)[:, None] * x).mean(0))
    assert gradcheck(lambda t: logistic_loss(t, x, y), (w,))


# --- softmax cross-entropy ----------------------------------------------------------------


def test_logsumexp_log_softmax_softmax() -> None:
    z = torch.randn(5, 7, dtype=f64) * 10
    torch.testing.assert_close(logsumexp(z), torch.logsumexp(z, -1))
    torch.testing.assert_close(logsumexp(z, dim=0, keepdim=True), torch.logsumexp(z, 0, keepdim=True))
    torch.testing.assert_close(log_softmax(z), F.log_softmax(z, -1))
    torch.testing.assert_close(softmax(z), F.softmax(z, -1))
    big = torch.tensor([[1000.0, 0.0, -1000.0]])
    assert torch.isfinite(log_softmax(big)).all()
    torch.testing.assert_close(softmax(big), torch.tensor([[1.0, 0.0, 0.0]]))
    assert logsumexp(torch.full((1, 3), float("-inf"))).item() == float("-inf")
    assert gradcheck(log_softmax, (torch.randn(3, 4, dtype=f64, requires_grad=True),))


def test_one_hot() -> None:
    assert one_hot(torch.tensor([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_ce_matches_torch(reduction: str) -> None:
    z = torch.randn(20, 5, dtype=f64) * 3
    y = torch.randint(0, 5, (20,))
    y[[1, 4, 9]] = -100
    ref = F.cross_entropy(z, y, reduction=reduction)
    torch.testing.assert_close(softmax_cross_entropy(z, y, reduction=reduction), ref, atol=1e-12, rtol=1e-12)
    # a custom ignore_index
    y2 = torch.where(y == -100, torch.tensor(3), y)
    torch.testing.assert_close(softmax_cross_entropy(z, y2, ignore_index=3, reduction=reduction),
                               F.cross_entropy(z, y2, ignore_index=3, reduction=reduction))


def test_softmax_ce_token_classification_shape() -> None:
    z = torch.randn(2, 6, 9, dtype=f64)  # (batch, seq, classes)
    y = torch.randint(0, 9, (2, 6))
    y[1, 4:] = -100  # padding
    ref = F.cross_entropy(z.transpose(1, 2), y)  # torch wants (batch, classes, seq)
    torch.testing.assert_close(softmax_cross_entropy(z, y), ref)
    assert softmax_cross_entropy_grad(z, y).shape == z.shape


def test_softmax_ce_stable_at_extreme_logits() -> None:
    z = torch.tensor([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]])
    y = torch.tensor([0, 2])
    mine = softmax_cross_entropy(z, y, reduction="none")
    assert torch.isfinite(mine).all()
    torch.testing.assert_close(mine, torch.tensor([0.0, 2000.0]))
    torch.testing.assert_close(mine, F.cross_entropy(z, y, reduction="none"))
    naive = -torch.log(torch.exp(z) / torch.exp(z).sum(-1, keepdim=True))[torch.arange(2), y]
    assert not torch.isfinite(naive).all()


def test_softmax_ce_all_ignored_is_nan_like_torch() -> None:
    z, y = torch.randn(3, 4), torch.full((3,), -100)
    assert torch.isnan(softmax_cross_entropy(z, y)) and torch.isnan(F.cross_entropy(z, y))


def test_softmax_ce_grad_matches_autograd() -> None:
    z = (torch.randn(16, 6, dtype=f64) * 3).requires_grad_(True)
    y = torch.randint(0, 6, (16,))
    y[[0, 5]] = -100
    for reduction in ("mean", "sum"):
        (auto,) = torch.autograd.grad(softmax_cross_entropy(z, y, reduction=reduction), z)
        hand = softmax_cross_entropy_grad(z.detach(), y, reduction=reduction)
        torch.testing.assert_close(hand, auto, atol=1e-6, rtol=1e-6)
        assert (hand[[0, 5]] == 0).all()
        assert gradcheck(lambda t, r=reduction: softmax_cross_entropy(t, y, reduction=r), (z,))
    n = int((y != -100).sum())
    valid = y != -100
    expected = (F.softmax(z.detach(), -1) - F.one_hot(y.clamp(min=0), 6).to(f64)) / n
    torch.testing.assert_close(softmax_cross_entropy_grad(z.detach(), y)[valid], expected[valid])


# --- AdamW vs Adam + L2 -------------------------------------------------------------------


def _quadratic_grads(theta: torch.Tensor, step: int) -> torch.Tensor:
    """A deterministic, step-dependent gradient with very different scales per coordinate."""
    scales = torch.tensor([100.0, 1.0, 0.01, 3.0], dtype=f64)
    return scales * (theta - 1.0) + 0.1 * torch.sin(torch.tensor(float(step), dtype=f64) + theta)


def _run_hand(step_fn, theta0: torch.Tensor, n_steps: int, **kw) -> torch.Tensor:  # type: ignore[no-untyped-def]
    theta, state = theta0.clone(), adam_init(theta0)
    for s in range(n_steps):
        theta, state = step_fn(theta, _quadratic_grads(theta, s), state, **kw)
    return theta


def _run_torch(opt_cls, theta0: torch.Tensor, n_steps: int, **kw) -> torch.Tensor:  # type: ignore[no-untyped-def]
    p = torch.nn.Parameter(theta0.clone())
    opt = opt_cls([p], **kw)
    for s in range(n_steps):
        p.grad = _quadratic_grads(p.detach(), s)
        opt.step()
    return p.detach()


HYPER = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-8, "weight_decay": 0.3}


def test_adamw_matches_torch() -> None:
    theta0 = torch.randn(4, dtype=f64)
    for n in (1, 2, 25):
        mine = _run_hand(adamw_step, theta0, n, **HYPER)
        ref = _run_torch(torch.optim.AdamW, theta0, n, **HYPER)
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=1e-6)
    # the defaults agree too
    torch.testing.assert_close(_run_hand(adamw_step, theta0, 10), _run_torch(torch.optim.AdamW, theta0, 10),
                               atol=1e-6, rtol=1e-6)


def test_adam_l2_matches_torch() -> None:
    theta0 = torch.randn(4, dtype=f64)
    for n in (1, 2, 25):
        mine = _run_hand(adam_l2_step, theta0, n, **HYPER)
        ref = _run_torch(torch.optim.Adam, theta0, n, **HYPER)
        torch.testing.assert_close(mine, ref, atol=1e-6, rtol=1e-6)


def test_adamw_and_adam_l2_differ() -> None:
    theta0 = torch.randn(4, dtype=f64)
    w = _run_hand(adamw_step, theta0, 200, **HYPER)
    l2 = _run_hand(adam_l2_step, theta0, 200, **HYPER)
    assert (w - l2).abs().max() > 1e-2
    # without weight decay they are the same optimiser
    no_wd = {**HYPER, "weight_decay": 0.0}
    torch.testing.assert_close(_run_hand(adamw_step, theta0, 50, **no_wd), _run_hand(adam_l2_step, theta0, 50, **no_wd))


def test_adamw_decay_is_decoupled() -> None:
    """With a zero gradient AdamW shrinks every weight by exactly (1 - lr * wd) per step."""
    theta = torch.tensor([5.0, -2.0, 0.1], dtype=f64)
    new, state = adamw_step(theta, torch.zeros_like(theta), adam_init(theta), lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(new, theta * (1 - 0.1 * 0.5))
    assert state.t == 1


def test_adam_l2_decays_large_gradient_weights_less() -> None:
    """Chapter "Cross-entropy": with pure-noise gradients of scale 10, 1, 0.1, L2 inside Adam
    decays the large-gradient weight far less (its decay is divided by sqrt(v_hat)), while
    AdamW takes the same amount off every weight (Adam itself ignores the gradient scale)."""
    noise = torch.randn(200, 1, dtype=f64) * torch.tensor([10.0, 1.0, 0.1], dtype=f64)

    def run(step, wd: float) -> torch.Tensor:
        theta, state = torch.ones(3, dtype=f64), adam_init(torch.ones(3, dtype=f64))
        for g in noise:
            theta, state = step(theta, g, state, lr=0.01, weight_decay=wd)
        return theta

    free = run(adam_l2_step, 0.0)
    l2, w = free - run(adam_l2_step, 0.1), free - run(adamw_step, 0.1)
    torch.testing.assert_close(w, w.mean().expand(3), rtol=1e-3, atol=0)
    assert l2[0] < l2[1] < l2[2] and 10 * l2[0] < l2[2]
