"""nerbook.adversarial: FGM and PGD on the word-embedding output, and their place in the loop.

Expectations computed independently: the first-order change of the loss from the gradient
(a dot product), the projection from the norm, the gradients from separate backward passes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from nerbook.adversarial import (
    Adversary,
    fgm_delta,
    perturbed_embeddings,
    pgd_delta,
    project,
    unit_per_token,
)
from nerbook.align import align_word_labels
from nerbook.data import LabelSchema
from nerbook.model import load_model
from nerbook.synthetic import synthetic_conll
from nerbook.train import TrainConfig, freeze_word_embeddings, train


@pytest.fixture(scope="module")
def tiny():
    schema = LabelSchema.from_types()
    model, tok = load_model("tiny", schema, seed=0, tiny_kwargs={"hidden": 32, "layers": 2, "heads": 2})
    words = [["John", "lives", "in", "Paris", "."], ["Acme", "Corp", "hired", "Mary", "Smith", "today"]]
    tags = [["B-PER", "O", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O"]]
    enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
    labels = torch.tensor([align_word_labels(enc.word_ids(i), [schema.label2id[t] for t in tags[i]])
                           for i in range(len(words))])
    batch = {**enc, "labels": labels}
    return model.eval(), batch


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def clean_gradient(model, batch, adversary: Adversary) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    with adversary.clean_pass(model):
        model(**batch).loss.backward()
    return adversary._zero.grad


def test_fgm_step_has_length_eps_on_labelled_tokens_only(tiny) -> None:
    model, batch = tiny
    adv = Adversary("fgm", eps=0.7)
    g = clean_gradient(model, batch, adv)
    mask = batch["labels"] != -100
    delta = fgm_delta(g, mask, 0.7)
    norms = delta.norm(dim=-1)
    assert torch.allclose(norms[mask], torch.full_like(norms[mask], 0.7), atol=1e-5)
    assert (norms[~mask] == 0).all()          # padding, [CLS], [SEP], later sub-words: never moved
    assert (~mask).sum() > 0 and (batch["attention_mask"] == 0).any()  # the batch has such positions
    # it points along the gradient of each token
    cos = torch.nn.functional.cosine_similarity(delta[mask], g[mask], dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)


def test_fgm_raises_the_loss_to_first_order(tiny) -> None:
    model, batch = tiny
    adv = Adversary("fgm", eps=1e-3)
    with torch.no_grad():
        clean = model(**batch).loss.item()
    g = clean_gradient(model, batch, adv).double()
    mask = batch["labels"] != -100
    delta = fgm_delta(g, mask, 1e-3)
    predicted = (g * delta).sum().item()        # dL = sum over tokens of g . delta = eps * sum ||g_t||
    assert predicted == pytest.approx(1e-3 * g[mask].norm(dim=-1).sum().item(), rel=1e-6)
    with torch.no_grad(), perturbed_embeddings(model, delta.float()):
        moved = model(**batch).loss.item()
    assert moved > clean
    assert moved - clean == pytest.approx(predicted, rel=0.05)


def test_projection_keeps_short_steps_and_shortens_long_ones() -> None:
    d = torch.tensor([[[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]]])
    p = project(d, 1.0)
    assert torch.allclose(p, torch.tensor([[[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]]))
    u = unit_per_token(d, torch.tensor([[True, False, True]]))
    assert torch.allclose(u, torch.tensor([[[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]]]))


@pytest.mark.parametrize("kind", ["fgm", "pgd"])
def test_attack_adds_the_adversarial_gradient_and_changes_nothing_else(tiny, kind) -> None:
    model, batch = tiny
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        loss_before = model(**batch).loss.item()
    adv = Adversary(kind, eps=0.5, steps=3)
    clean_gradient(model, batch, adv)
    clean = grads(model)
    captured = {}

    def backward(loss):
        captured["at_final"] = grads(model)      # what .grad holds when the adversarial loss goes back
        loss.backward()

    adv_loss = adv.attack(model, batch, backward)
    total = grads(model)
    # PGD's inner steps left .grad alone: the clean gradients were still there at the last pass
    assert all(torch.equal(captured["at_final"][n], clean[n]) for n in clean)
    assert any(not torch.allclose(total[n], clean[n]) for n in clean)
    assert adv_loss is not None and adv_loss.item() > loss_before
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # parameters untouched
    with torch.no_grad():                        # and no hook left behind: the clean loss again
        assert model(**batch).loss.item() == loss_before


def test_the_adversarial_gradient_is_that_of_the_loss_at_the_perturbed_input(tiny) -> None:
    model, batch = tiny
    adv = Adversary("fgm", eps=0.5)
    g = clean_gradient(model, batch, adv).clone()
    clean = grads(model)
    adv.attack(model, batch, lambda loss: loss.backward())
    total = grads(model)
    model.zero_grad(set_to_none=True)            # independently: backward of L(x + delta) alone
    with perturbed_embeddings(model, fgm_delta(g, batch["labels"] != -100, 0.5)):
        model(**batch).loss.backward()
    alone = grads(model)
    for n in clean:
        assert torch.allclose(total[n], clean[n] + alone[n], atol=1e-6), n


def test_pgd_stays_in_the_ball_and_beats_fgm(tiny) -> None:
    model, batch = tiny
    mask = batch["labels"] != -100
    losses = {}
    for kind, steps in (("fgm", 1), ("pgd", 5)):
        adv = Adversary(kind, eps=0.5, steps=steps)
        g = clean_gradient(model, batch, adv)
        delta = fgm_delta(g, mask, 0.5) if kind == "fgm" else pgd_delta(model, batch, g, mask, 0.5, steps)
        assert (delta.norm(dim=-1) <= 0.5 + 1e-5).all() and (delta.norm(dim=-1)[~mask] == 0).all()
        with torch.no_grad(), perturbed_embeddings(model, delta):
            losses[kind] = model(**batch).loss.item()
    assert losses["pgd"] >= losses["fgm"] - 1e-4   # more steps find an input at least as bad


def test_frozen_word_embeddings_are_still_perturbed(tiny) -> None:
    """The common recipe perturbs the embedding weights, whose grad is None when frozen."""
    model, batch = tiny
    frozen = freeze_word_embeddings(model, True)
    try:
        adv = Adversary("fgm", eps=0.5)
        g = clean_gradient(model, batch, adv)
        assert model.get_input_embeddings().weight.grad is None
        assert g.abs().sum() > 0
        assert adv.attack(model, batch, lambda loss: loss.backward()).item() > 0
    finally:
        for p in frozen:
            p.requires_grad_(True)


def test_eps_zero_is_a_no_op(tiny) -> None:
    model, batch = tiny
    adv = Adversary("pgd", eps=0.0)
    model.zero_grad(set_to_none=True)
    with adv.clean_pass(model):
        model(**batch).loss.backward()
    clean = grads(model)
    calls = []
    assert adv.attack(model, batch, calls.append) is None and calls == []
    assert all(torch.equal(v, grads(model)[n]) for n, v in clean.items())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        Adversary("fgsm")
    with pytest.raises(ValueError, match="eps"):
        Adversary("fgm", eps=-1.0)
    with pytest.raises(ValueError, match="steps"):
        Adversary("pgd", steps=0)


@pytest.mark.parametrize("extra", [{}, {"grad_accum": 2}, {"mixed_precision": "bf16"}],
                         ids=["plain", "grad-accum", "bf16"])
def test_training_with_an_adversary_runs_and_eps_zero_changes_nothing(extra) -> None:
    data = synthetic_conll(n_train=48, n_valid=16, n_test=4, seed=0)
    schema = LabelSchema.from_types()
    finals = {}
    for name, adv in (("plain", {}), ("fgm eps 0", {"adversarial": "fgm", "adv_eps": 0.0}),
                      ("pgd", {"adversarial": "pgd", "adv_eps": 0.5, "adv_steps": 2})):
        model, tok = load_model("tiny", schema, texts=data["train"]["tokens"], seed=0,
                                tiny_kwargs={"hidden": 32, "layers": 1, "heads": 2})
        cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, seed=0, progress=False, patience=None,
                          mixed_precision=extra.get("mixed_precision", "no"),
                          grad_accum=extra.get("grad_accum", 1), **adv)
        res = train(model, tok, data["train"], None, cfg)
        assert all(torch.isfinite(p).all() for p in res.model.parameters()), name
        finals[name] = {k: v.clone() for k, v in res.model.state_dict().items()}
    assert all(torch.equal(finals["plain"][k], finals["fgm eps 0"][k]) for k in finals["plain"])
    assert any(not torch.equal(finals["plain"][k], finals["pgd"][k]) for k in finals["plain"])
