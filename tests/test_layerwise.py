"""nerbook.layerwise: each layer down from the head trains at ``decay`` times the rate above it."""

from __future__ import annotations

import pytest
import torch

from nerbook.data import schema_of
from nerbook.layerwise import layer_decay_groups, layer_of
from nerbook.model import load_model
from nerbook.train import TrainConfig, make_optimizer, param_groups, train


def tiny(synth):
    return load_model("tiny", schema_of(synth["train"]), texts=synth["train"]["tokens"], seed=0)


def depth_by_hand(name: str, n_layers: int) -> int:
    """Layers down from the head, read off BERT's parameter names."""
    if name.startswith("classifier."):
        return 0
    if name.startswith("bert.embeddings."):
        return n_layers + 1
    layer = int(name.removeprefix("bert.encoder.layer.").split(".")[0])
    return n_layers - layer


def test_first_adam_step_moves_each_layer_at_its_rate(synth):
    """Adam's first step moves a weight by ``rate * g / (|g| + eps)`` (both moments are g and g**2
    after bias correction), with ``rate = lr * decay**depth`` in its layer."""
    model, _ = tiny(synth)
    n_layers, lr, decay = model.config.num_hidden_layers, 1e-3, 0.5
    assert n_layers >= 2
    opt = make_optimizer(model, TrainConfig(lr=lr, weight_decay=0.0, layer_decay=decay), "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (4, 12), generator=g)
    labels = torch.randint(0, model.config.num_labels, (4, 12), generator=g)
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    depths = set()
    for name, p in model.named_parameters():
        depth = depth_by_hand(name, n_layers)
        depths.add(depth)
        step = -lr * decay**depth * grads[name] / (grads[name].abs() + 1e-8)
        assert torch.allclose(p.detach() - before[name], step, rtol=1e-3, atol=1e-8), name
    assert depths == set(range(n_layers + 2))  # head, every layer, embeddings


def test_groups_keep_the_weight_decay_split_and_put_the_peak_first(synth):
    model, _ = tiny(synth)
    groups = layer_decay_groups(model, 0.01, 4e-4, 0.9)
    assert groups[0]["lr"] == pytest.approx(4e-4) and groups[-1]["lr"] < groups[0]["lr"]
    plain = {id(p): g["weight_decay"] for g in param_groups(model, 0.01) for p in g["params"]}
    mine = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert mine == plain  # every trainable weight once, decayed as without layer decay


def test_names_outside_the_encoder_and_bad_settings():
    assert layer_of("classifier.weight", "bert", 6) == 7
    assert layer_of("bert.pooler.dense.weight", "bert", 6) == 7
    assert layer_of("bert.embeddings.LayerNorm.weight", "bert", 6) == 0
    assert layer_of("bert.encoder.layer.5.output.dense.weight", "bert", 6) == 6
    assert layer_of("encoder.layer.2.output.dense.weight", "", 6) == 3  # a bare encoder
    assert layer_of("embeddings.word_embeddings.weight", "", 6) == 0
    with pytest.raises(ValueError, match="layer 6, but the model has 6 layers"):
        layer_of("bert.encoder.layer.6.output.dense.weight", "bert", 6)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\], not 1.5"):
        layer_decay_groups(torch.nn.Linear(2, 2), 0.0, 1e-3, 1.5)
    with pytest.raises(ValueError, match="needs a model with config.num_hidden_layers, not Linear"):
        layer_decay_groups(torch.nn.Linear(2, 2), 0.0, 1e-3, 0.9)


def test_train_with_layer_decay_logs_the_heads_rate(synth):
    model, tok = tiny(synth)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=3e-3, warmup_ratio=0.0, layer_decay=0.8, log_every=1,
                      patience=None, progress=False, max_length=64, stride=16)
    res = train(model, tok, synth["train"].select(range(32)), None, cfg)
    total = res.history["epochs"][0]["step"]
    assert res.history["steps"][0]["lr"] == pytest.approx(3e-3 * (total - 1) / total)  # linear decay from the peak
