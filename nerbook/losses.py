"""Cross-entropy, its gradient and the AdamW update, by hand (chapter "Cross-entropy and its gradient").

Each function is the few lines of maths the chapter derives; ``tests/test_losses.py`` checks
them against autograd, ``torch.autograd.gradcheck``, ``torch.nn.functional`` and
``torch.optim``:

- :func:`sigmoid`, :func:`binary_cross_entropy` (from logits, stable), :func:`bce_grad_logits`
  (= sigmoid(z) - y), :func:`logistic_loss` / :func:`logistic_grad` (= X^T (p - y) / N)
- :func:`logsumexp`, :func:`log_softmax`, :func:`softmax`, :func:`softmax_cross_entropy`
  (stable, ``ignore_index=-100`` like PyTorch), :func:`softmax_cross_entropy_grad`
  (= (softmax(z) - onehot(y)) / N)
- :func:`adamw_step` (decoupled weight decay) and :func:`adam_l2_step` (L2 inside Adam)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "AdamState",
    "adam_init",
    "adam_l2_step",
    "adamw_step",
    "bce_grad_logits",
    "binary_cross_entropy",
    "log_softmax",
    "logistic_grad",
    "logistic_loss",
    "logsumexp",
    "one_hot",
    "plot_bce",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
]

Reduction = Literal["mean", "sum", "none"]


def _reduce(x: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# --- binary cross-entropy -----------------------------------------------------------------


def sigmoid(z: Tensor) -> Tensor:
    """``1 / (1 + exp(-z))``, computed from ``exp(-|z|)`` so that no exp ever overflows.

    Chapter: Cross-entropy and its gradient.
    """
    e = torch.exp(-z.abs())  # in (0, 1]
    return torch.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy(z: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
    """BCE of labels ``y`` in [0, 1] under p = sigmoid(z), straight from the logits ``z``.

    ``-[y log p + (1 - y) log(1 - p)] = max(z, 0) - z y + log(1 + exp(-|z|))``: the stable form,
    finite for any z (the naive form gives inf/nan at ``|z| ~ 1000``). Mean (default), sum or
    none over the elements, like ``F.binary_cross_entropy_with_logits``.

    Chapter: Cross-entropy and its gradient.
    """
    y = y.to(z.dtype)
    return _reduce(z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs())), reduction)


def bce_grad_logits(z: Tensor, y: Tensor, reduction: Reduction = "mean") -> Tensor:
    """d BCE / d z = sigmoid(z) - y per element (divided by the element count for the mean).

    With ``reduction="sum"`` or ``"none"`` this is sigmoid(z) - y itself.

    Chapter: Cross-entropy and its gradient.
    """
    g = sigmoid(z) - y.to(z.dtype)
    return g / z.numel() if reduction == "mean" else g


def logistic_loss(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Mean BCE of the logistic model p = sigmoid(x @ w); ``x`` (N, d), ``w`` (d,), ``y`` (N,).

    Add a column of ones to ``x`` for a bias. Chapter: Cross-entropy and its gradient.
    """
    return binary_cross_entropy(x @ w, y)


def logistic_grad(w: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of :func:`logistic_loss` w.r.t. ``w``: the chain rule gives x^T (p - y) / N.

    Chapter: Cross-entropy and its gradient.
    """
    p = sigmoid(x @ w)
    return x.T @ (p - y.to(x.dtype)) / x.shape[0]


# --- softmax cross-entropy ----------------------------------------------------------------


def logsumexp(z: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """log sum_j exp(z_j) = m + log sum_j exp(z_j - m) with m = max_j z_j: no overflow.

    Chapter: Cross-entropy and its gradient.
    """
    m = z.amax(dim=dim, keepdim=True).detach()  # any constant works; the max is the safe one
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # rows of all -inf stay -inf
    out = m + torch.log(torch.exp(z - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """log softmax(z) = z - logsumexp(z). Chapter: Cross-entropy and its gradient."""
    return z - logsumexp(z, dim=dim, keepdim=True)


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """exp(z - max z) / sum exp(z - max z). Chapter: Cross-entropy and its gradient."""
    return torch.exp(log_softmax(z, dim=dim))


def one_hot(y: Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(N,) class indices -> (N, C) one-hot rows. Chapter: Cross-entropy and its gradient."""
    return (y[:, None] == torch.arange(n_classes, device=y.device)[None, :]).to(dtype)


def _flatten(z: Tensor, y: Tensor, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    z2, y2 = z.reshape(-1, z.shape[-1]), y.reshape(-1)
    keep = y2 != ignore_index
    return z2, torch.where(keep, y2, torch.zeros_like(y2)), keep


def softmax_cross_entropy(
    z: Tensor, y: Tensor, ignore_index: int = -100, reduction: Reduction = "mean"
) -> Tensor:
    """-log softmax(z)[y], stable, averaged over the targets that are not ``ignore_index``.

    ``z`` (..., C) logits, ``y`` (...) class indices. This is ``F.cross_entropy(z, y)`` for
    2-D ``z``; for token classification pass (batch, seq, C) directly (PyTorch wants
    (batch, C, seq)). Labels equal to ``ignore_index`` (-100: padding, special tokens,
    non-first subwords) contribute nothing and are not counted; if all are ignored the
    mean is 0/0 = nan, as in PyTorch. ``reduction="none"`` gives one loss per target (0 where
    ignored), flattened.

    Chapter: Cross-entropy and its gradient.
    """
    z2, y2, keep = _flatten(z, y, ignore_index)
    nll = -log_softmax(z2).gather(1, y2[:, None]).squeeze(1)
    nll = torch.where(keep, nll, torch.zeros_like(nll))
    if reduction == "mean":
        return nll.sum() / keep.sum()
    return _reduce(nll, reduction)


def softmax_cross_entropy_grad(
    z: Tensor, y: Tensor, ignore_index: int = -100, reduction: Reduction = "mean"
) -> Tensor:
    """d loss / d z = (softmax(z) - onehot(y)) / N, with zero rows at ignored targets.

    N counts the targets that are not ignored (``"sum"`` / ``"none"``: no division).

    Chapter: Cross-entropy and its gradient.
    """
    z2, y2, keep = _flatten(z, y, ignore_index)
    g = (softmax(z2) - one_hot(y2, z2.shape[-1], z.dtype)) * keep[:, None]
    if reduction == "mean":
        g = g / keep.sum()
    return g.reshape(z.shape)


# --- the update rule: Adam with decoupled weight decay (AdamW) vs L2 inside Adam ---------


class AdamState(NamedTuple):
    """Adam's running moments and step count (t = number of steps taken)."""

    m: Tensor
    v: Tensor
    t: int = 0


def adam_init(theta: Tensor) -> AdamState:
    """Zero moments for parameters ``theta``. Chapter: Cross-entropy and its gradient."""
    return AdamState(torch.zeros_like(theta), torch.zeros_like(theta), 0)


def _adam_direction(
    grad: Tensor, state: AdamState, betas: tuple[float, float], eps: float
) -> tuple[Tensor, AdamState]:
    """Update the moments and return m_hat / (sqrt(v_hat) + eps) with the new state."""
    b1, b2 = betas
    t = state.t + 1
    m = b1 * state.m + (1 - b1) * grad
    v = b2 * state.v + (1 - b2) * grad * grad
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return m_hat / (v_hat.sqrt() + eps), AdamState(m, v, t)


def adamw_step(
    theta: Tensor,
    grad: Tensor,
    state: AdamState,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> tuple[Tensor, AdamState]:
    """One AdamW step: theta <- theta - lr * adam_update - lr * weight_decay * theta.

    The decay is *decoupled*: it never enters the moments, so every weight shrinks by the
    same factor (1 - lr * weight_decay) per step whatever its gradient scale. Same
    defaults and result as ``torch.optim.AdamW``. Returns ``(new_theta, new_state)``.

    Chapter: Cross-entropy and its gradient.
    """
    update, state = _adam_direction(grad, state, betas, eps)
    return theta - lr * update - lr * weight_decay * theta, state


def adam_l2_step(
    theta: Tensor,
    grad: Tensor,
    state: AdamState,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> tuple[Tensor, AdamState]:
    """One Adam step on the L2-regularised loss: g <- g + weight_decay * theta, then Adam.

    The decay term goes through the moments and is divided by sqrt(v_hat), so weights with
    large gradients are barely decayed. This is ``torch.optim.Adam(weight_decay=...)``.
    Returns ``(new_theta, new_state)``.

    Chapter: Cross-entropy and its gradient.
    """
    update, state = _adam_direction(grad + weight_decay * theta, state, betas, eps)
    return theta - lr * update, state


# --- plot helpers for the chapter (matplotlib is imported lazily) --------------------------


def plot_bce(z_min: float = -8.0, z_max: float = 8.0, axes: tuple[Axes, Axes] | None = None) -> tuple[Axes, Axes]:
    """Plot BCE(z, y) and its gradient sigmoid(z) - y against the logit z, for y = 0 and 1.

    Chapter: Cross-entropy and its gradient.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    z = torch.linspace(z_min, z_max, 401, dtype=torch.float64)
    for label, color in ((1.0, "C0"), (0.0, "C1")):
        y = torch.full_like(z, label)
        axes[0].plot(z, binary_cross_entropy(z, y, reduction="none"), color=color, label=f"y = {label:g}")
        axes[1].plot(z, bce_grad_logits(z, y, reduction="none"), color=color, label=f"y = {label:g}")
    axes[0].set(xlabel="logit z", ylabel="loss", title="binary cross-entropy from the logit")
    axes[1].set(xlabel="logit z", ylabel="dloss/dz", title="gradient sigmoid(z) - y")
    axes[1].axhline(0, color="gray", lw=0.5)
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    return axes[0], axes[1]
