"""nerbook.scaling: truncated encoders, C = 6 N T, and power-law fits, each against an
independent computation (the untruncated model's hidden states, torch's FLOP counter, numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification

from nerbook.model import tiny_config
from nerbook.scaling import (
    embedding_parameters,
    fit_power_law,
    leave_one_out_slopes,
    non_embedding_parameters,
    training_flops,
    truncate_layers,
)


def tiny_bert(layers: int = 4, hidden: int = 32, labels: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_config(100, hidden=hidden, layers=layers, heads=2, intermediate=4 * hidden)
    cfg.num_labels = labels
    return AutoModelForTokenClassification.from_config(cfg).eval()


def test_a_truncated_model_computes_the_first_layers_of_the_full_one() -> None:
    """Keeping k layers gives the full model's k-th hidden state, through the same head."""
    full = tiny_bert(layers=4)
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        hidden = full(input_ids=ids, output_hidden_states=True).hidden_states
        expected = full.classifier(hidden[2])
        short = truncate_layers(tiny_bert(layers=4), 2)
        got = short(input_ids=ids).logits
    assert len(short.bert.encoder.layer) == 2 and short.config.num_hidden_layers == 2
    torch.testing.assert_close(got, expected)
    with torch.no_grad():  # and it differs from the full model's output
        assert not torch.allclose(full(input_ids=ids).logits, got, atol=1e-3)


@pytest.mark.parametrize("keep", [0, 5])
def test_truncating_to_no_layer_or_more_layers_than_there_are_is_refused(keep: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 4"):
        truncate_layers(tiny_bert(layers=4), keep)


def test_truncate_refuses_a_model_without_an_encoder_list() -> None:
    with pytest.raises(ValueError, match="not a BERT-like encoder"):
        truncate_layers(torch.nn.Linear(3, 3), 1)


def test_non_embedding_parameters_match_the_layer_formula() -> None:
    """A BERT layer of width d and feed-forward 4d holds 12 d^2 + 13 d weights (Q, K, V, O with
    biases: 4d^2 + 4d; feed-forward: 8d^2 + 5d; two LayerNorms: 4d); the head adds d x labels + labels."""
    for layers, d, labels in ((2, 32, 5), (3, 64, 9)):
        model = tiny_bert(layers=layers, hidden=d, labels=labels)
        expected = layers * (12 * d * d + 13 * d) + d * labels + labels
        assert non_embedding_parameters(model) == expected
        vocab, positions, types = 100, model.config.max_position_embeddings, 2
        assert embedding_parameters(model) == (vocab + positions + types) * d + 2 * d


def test_six_n_t_matches_torchs_flop_counter_for_a_training_step() -> None:
    """torch counts the matrix products of one forward and backward pass: about 6 N T when the
    rows are short (attention's own products are then small; biases and LayerNorm are not products)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_bert(layers=2, hidden=64).train()
    ids = torch.randint(5, 100, (4, 8))
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_ids=ids, labels=torch.zeros_like(ids)).loss.backward()
    ratio = counter.get_total_flops() / training_flops(non_embedding_parameters(model), ids.numel())
    assert 0.95 < ratio < 1.06, ratio


def test_fit_power_law_recovers_a_known_law_and_agrees_with_numpy() -> None:
    x = [1e9, 3e9, 1e10, 3e10, 1e11]
    y = [0.5 * v ** -0.07 for v in x]
    law = fit_power_law(x, y)
    assert law.slope == pytest.approx(-0.07) and law.a == pytest.approx(0.5) and law.r2 == pytest.approx(1.0)
    noisy = [v * f for v, f in zip(y, (1.05, 0.97, 1.02, 0.96, 1.04))]
    law = fit_power_law(x, noisy)
    slope, intercept = np.polyfit(np.log(x), np.log(noisy), 1)
    assert law.slope == pytest.approx(slope) and math.log(law.a) == pytest.approx(intercept)
    assert 0 < law.r2 < 1 and law(1e10) == pytest.approx(law.a * 1e10 ** law.slope)


@pytest.mark.parametrize("x, y, match", [([1, 2], [1, 0], "positive"), ([3, 3], [1, 2], "two distinct"),
                                         ([3], [1], "two distinct")])
def test_fit_power_law_refuses_what_it_cannot_fit(x, y, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


def test_leave_one_out_slopes_refit_without_each_point() -> None:
    x, y = [1.0, 10.0, 100.0, 1000.0], [0.5, 0.3, 0.2, 0.05]
    slopes = leave_one_out_slopes(x, y)
    by_hand = [np.polyfit(np.log(x[:i] + x[i + 1:]), np.log(y[:i] + y[i + 1:]), 1)[0] for i in range(4)]
    assert slopes == pytest.approx(by_hand) and len(set(round(s, 6) for s in slopes)) == 4
