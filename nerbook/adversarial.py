"""Adversarial training in embedding space: FGM and PGD (chapter "Adversarial training and robustness").

A token is a discrete symbol, so the small worst-case step of adversarial training is taken in
the space the model reads it in: the output of the word-embedding layer. FGSM
(Goodfellow et al. 2015) moves an input by ``eps * sign(g)``; FGM (Miyato et al. 2017) by
``eps * g / ||g||``, the steepest step of L2 length ``eps``; PGD (Madry et al. 2018) takes
``steps`` smaller steps, projecting back onto the ``eps``-ball after each. The model then also
learns from the perturbed input, so its loss stays low in a neighbourhood of every example.

Choices made here, each tested in ``tests/test_adversarial.py``:

- **Where.** A forward hook on ``model.get_input_embeddings()`` adds the perturbation to the
  layer's *output*. Perturbing the embedding *weights*, the common recipe, silently does nothing
  when they are frozen (nerbook freezes them by default: their ``grad`` is ``None``).
- **Which tokens.** Only the positions that carry a label (``labels != -100``): the first
  sub-word of every word. Padding, special tokens and later sub-words are never moved.
- **Scale.** ``eps`` is *per token*: every labelled token's embedding moves by exactly ``eps``
  (L2). MiniLM's word embeddings have an L2 norm of about 1, so ``eps = 1`` is a large step.
- **Gradients.** The clean pass's gradients stay in ``.grad``; FGM and PGD's last pass add the
  adversarial loss's gradients to them (loss = clean + adversarial). PGD's inner steps take the
  gradient with respect to the perturbation only (``torch.autograd.grad``), so they touch no
  ``.grad``. Nothing is left changed: the hook is removed before ``optimizer.step``.
- ``eps = 0`` is a no-op: no extra pass runs, the gradients are exactly the clean ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ADVERSARIES", "Adversary", "fgm_delta", "perturbed_embeddings", "pgd_delta", "project", "unit_per_token"]

ADVERSARIES = ("fgm", "pgd")


def unit_per_token(g: Tensor, mask: Tensor) -> Tensor:
    """``g / ||g||`` along the last axis for every token where ``mask`` is true, zero elsewhere.

    ``g`` (batch, tokens, d); ``mask`` (batch, tokens) boolean. A token with zero gradient stays zero.

    Chapter: Adversarial training and robustness.
    """
    g = g.float() * mask.unsqueeze(-1)
    norm = g.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, g / norm.clamp(min=1e-12), torch.zeros_like(g))


def fgm_delta(g: Tensor, mask: Tensor, eps: float) -> Tensor:
    """FGM's perturbation: ``eps * g / ||g||`` per token (L2 norm ``eps``), zero outside ``mask``.

    Chapter: Adversarial training and robustness.
    """
    return eps * unit_per_token(g, mask)


def project(delta: Tensor, eps: float) -> Tensor:
    """Project every token's perturbation onto the L2 ball of radius ``eps`` (PGD's projection).

    Chapter: Adversarial training and robustness.
    """
    norm = delta.norm(dim=-1, keepdim=True)
    return delta * torch.clamp(eps / norm.clamp(min=1e-12), max=1.0)


@contextmanager
def perturbed_embeddings(model, delta: Tensor | Callable[[Tensor], Tensor]) -> Iterator[None]:
    """While inside, the word-embedding layer's output is ``output + delta``.

    ``delta`` is a tensor of the output's shape, or a function of the output returning one
    (called at every forward). The hook is removed on exit, also after an error.

    Chapter: Adversarial training and robustness.
    """
    def hook(module, inputs, output):
        d = delta(output) if callable(delta) else delta
        return output + d.to(output.dtype)

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _unwrap(model):
    return getattr(model, "module", model)  # DDP keeps the model in .module


def pgd_delta(model, batch: dict, g: Tensor, mask: Tensor, eps: float, steps: int = 3,
              alpha: float | None = None, no_sync: Callable | None = None) -> Tensor:
    """PGD's perturbation: ``steps`` steps of size ``alpha`` (default ``2.5 * eps / steps``, Madry et
    al. 2018) along the normalised gradient, each projected onto the ``eps``-ball per token.

    ``g`` is the clean pass's gradient with respect to the embedding output (the first step); the
    later steps take the gradient with respect to the perturbation only (``torch.autograd.grad``),
    so no ``.grad`` is touched. ``no_sync(model)`` wraps those passes (DDP: see :class:`Adversary`).

    Chapter: Adversarial training and robustness.
    """
    alpha = alpha if alpha is not None else 2.5 * eps / steps
    delta = project(alpha * unit_per_token(g, mask), eps)
    for _ in range(steps - 1):
        delta = delta.detach().requires_grad_(True)
        with (no_sync(model) if no_sync else nullcontext()), perturbed_embeddings(_unwrap(model), delta):
            loss = model(**batch).loss
        (g,) = torch.autograd.grad(loss, delta)
        delta = project(delta + alpha * unit_per_token(g, mask), eps)
    return delta.detach()


@dataclass
class Adversary:
    """FGM (``kind="fgm"``) or PGD (``kind="pgd"``, ``steps`` steps of size ``alpha``) in a training step.

    Use it around the clean pass, then call :meth:`attack` before clipping and ``optimizer.step``::

        with adversary.clean_pass(model):
            loss = model(**batch).loss
            loss.backward()                      # or accelerator.backward(loss)
        adversary.attack(model, batch, backward=loss_backward)

    ``alpha`` defaults to ``2.5 * eps / steps`` (Madry et al. 2018). Chapter: Adversarial
    training and robustness.
    """

    kind: str = "fgm"
    eps: float = 0.1
    steps: int = 3
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ADVERSARIES:
            raise ValueError(f"adversarial training: kind must be one of {ADVERSARIES}, got {self.kind!r}")
        if not self.eps >= 0:
            raise ValueError(f"adversarial training: eps must be >= 0, got {self.eps}")
        if self.steps < 1:
            raise ValueError(f"adversarial training: steps must be >= 1, got {self.steps}")
        self._zero: Tensor | None = None

    @contextmanager
    def clean_pass(self, model) -> Iterator[None]:
        """The clean forward and backward: records the gradient with respect to the embedding output.

        A zero tensor that requires grad is added to the output (an exact no-op on the values); after
        the backward its ``.grad`` is the gradient the attack starts from, also when the word
        embeddings are frozen.
        """
        if self.eps == 0:
            yield
            return

        def zero_leaf(output: Tensor) -> Tensor:
            self._zero = torch.zeros_like(output, dtype=torch.float32, requires_grad=True)
            return self._zero

        with perturbed_embeddings(_unwrap(model), zero_leaf):
            yield

    def attack(self, model, batch: dict, backward: Callable[[Tensor], None],
               no_sync: Callable | None = None) -> Tensor | None:
        """Run the adversarial pass(es) and add their gradients; returns the adversarial loss (or None).

        ``backward`` is the call that back-propagates a loss into ``.grad`` (``loss.backward`` or
        ``accelerator.backward``: it scales for gradient accumulation and fp16). ``no_sync(model)``
        (e.g. ``accelerator.no_sync``) wraps PGD's inner passes so that DDP does not wait for a
        gradient reduction they never start.
        """
        if self.eps == 0:
            return None
        zero, self._zero = self._zero, None
        if zero is None or zero.grad is None:
            raise RuntimeError("Adversary.attack: no gradient from the clean pass; run it inside clean_pass()")
        g = zero.grad
        if not torch.isfinite(g).all():  # an fp16 overflow step: the optimizer skips it anyway
            return None
        mask = batch["labels"] != -100
        if self.kind == "fgm":
            delta = fgm_delta(g, mask, self.eps)
        else:
            delta = pgd_delta(model, batch, g, mask, self.eps, self.steps, self.alpha, no_sync)
        with perturbed_embeddings(_unwrap(model), delta.detach()):
            adv_loss = model(**batch).loss
        backward(adv_loss)
        return adv_loss.detach()
