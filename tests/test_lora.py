"""nerbook.lora: the hand-written LoRA against peft, training only what it should, merging."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from nerbook.data import CONLL2003
from nerbook.lora import LoRALinear, add_lora, merge_lora
from nerbook.model import count_parameters, load_model


@pytest.fixture()
def tiny(synth):
    model, tok = load_model("tiny", CONLL2003, texts=synth["train"]["tokens"], seed=0)
    return model.eval(), tok


def _batch(tok, synth, n=4):
    return tok(synth["valid"]["tokens"][:n], is_split_into_words=True, padding=True, return_tensors="pt")


def test_lora_linear_starts_as_the_base_layer_and_learns_a_rank_r_update():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, r=3, alpha=6.0)
    x = torch.randn(5, 12)
    assert torch.equal(layer(x), base(x))  # B = 0 at the start
    with torch.no_grad():
        layer.lora_B.normal_()
    delta = layer.delta_weight()
    assert torch.linalg.matrix_rank(delta) == 3 and layer.scaling == 2.0
    torch.testing.assert_close(layer(x), x @ (base.weight + delta).T + base.bias)
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(2, 2), r=0)


def test_add_lora_trains_only_the_adapters_and_the_head(tiny):
    model, _ = tiny
    hidden, layers = model.config.hidden_size, model.config.num_hidden_layers
    wrapped = add_lora(model, r=4, alpha=8.0)
    assert len(wrapped) == 2 * layers and all(w.endswith(("query", "value")) for w in wrapped)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("classifier.") for n in trainable)
    head = model.classifier.weight.numel() + model.classifier.bias.numel()
    assert count_parameters(model, trainable_only=True) == 2 * layers * 4 * (hidden + hidden) + head
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_lora(model, target_modules=("nonexistent",))


def test_matches_peft_with_the_same_weights(tiny, synth):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    batch = _batch(tok, synth)
    mine = load_model("tiny", CONLL2003, texts=synth["train"]["tokens"], seed=0)[0].eval()
    add_lora(mine, r=4, alpha=8.0)
    torch.manual_seed(1)
    for m in mine.modules():
        if isinstance(m, LoRALinear):
            with torch.no_grad():
                m.lora_B.normal_(std=0.1)  # a trained-looking update, so the comparison means something
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"],
                        modules_to_save=["classifier"], task_type="TOKEN_CLS")
    with warnings.catch_warnings():  # transformers' deprecation notice about a name peft still uses
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.eval()
    copied = 0
    for name, m in mine.named_modules():
        if isinstance(m, LoRALinear):
            target = peft_model.base_model.model.get_submodule(name)
            with torch.no_grad():
                target.lora_A["default"].weight.copy_(m.lora_A)
                target.lora_B["default"].weight.copy_(m.lora_B)
            copied += 1
    assert copied == 2 * mine.config.num_hidden_layers
    with torch.no_grad():
        torch.testing.assert_close(mine(**batch).logits, peft_model(**batch).logits, atol=1e-5, rtol=1e-5)
    trainable_peft, _ = peft_model.get_nb_trainable_parameters()
    assert count_parameters(mine, trainable_only=True) == trainable_peft


def test_merge_gives_a_plain_model_with_the_same_outputs(tiny, synth):
    model, tok = tiny
    batch = _batch(tok, synth)
    add_lora(model, r=4, alpha=8.0)
    torch.manual_seed(2)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            with torch.no_grad():
                m.lora_B.normal_(std=0.1)
    with torch.no_grad():
        before = model(**batch).logits
        merge_lora(model)
        after = model(**batch).logits
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all("lora_" not in n for n in model.state_dict())  # saves and loads as the plain model
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
