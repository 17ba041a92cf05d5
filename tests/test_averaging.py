"""nerbook.averaging: the weights averaged over the last optimizer steps of a run."""

from __future__ import annotations

import io

import pytest
import torch

from nerbook.averaging import WeightAverage
from nerbook.data import schema_of
from nerbook.model import load_model
from nerbook.train import TrainConfig, evaluate, train

QUIET = dict(progress=False, max_length=64, stride=16, mixed_precision="no", patience=None)


def test_mean_of_the_steps_after_start_and_lent_for_a_while():
    layer = torch.nn.Linear(2, 1, bias=False)
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    layer.register_parameter("frozen", frozen)
    avg = WeightAverage(layer, start=2)
    seen = []
    for step, value in enumerate([1.0, 5.0, 2.0, 4.0, 9.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        avg.update(step)
        seen.append(value)
    assert avg.n == 3 and len(avg.params) == 1  # steps 3, 4, 5; the frozen weight is not averaged
    with avg.applied():
        assert torch.allclose(layer.weight, torch.full((1, 2), (2.0 + 4.0 + 9.0) / 3))
    assert torch.equal(layer.weight, torch.full((1, 2), 9.0))  # the live weights are back
    buffer = io.BytesIO()
    torch.save(avg.state_dict(), buffer)
    again = WeightAverage(layer, start=0)
    again.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    again.load_into()
    assert again.n == 3 and again.start == 2 and layer.weight[0, 0].item() == pytest.approx(5.0)


def test_nothing_to_lend_before_the_first_update():
    layer = torch.nn.Linear(2, 1)
    avg = WeightAverage(layer, start=10)
    avg.update(3)
    with avg.applied():
        pass
    avg.load_into()
    assert avg.mean is None and avg.state_dict()["mean"] == []


def snapshots_after_each_step(params, run):
    """Run ``run()`` and return ``params`` after each optimizer step (a hook on every optimizer's step)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    seen: list[list[torch.Tensor]] = []

    def hook(optimizer, args, kwargs):
        seen.append([p.detach().clone() for p in params])

    handle = register_optimizer_step_post_hook(hook)
    try:
        result = run()
    finally:
        handle.remove()
    return result, seen


def test_train_keeps_the_average_of_its_last_steps(synth):
    data, valid = synth["train"].select(range(96)), synth["valid"].select(range(48))
    schema, texts = schema_of(synth["train"]), synth["train"]["tokens"]
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, **QUIET)
    model, tok = load_model("tiny", schema, texts=texts, seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    _, steps = snapshots_after_each_step(params, lambda: train(model, tok, data, None, cfg))
    start = int(0.5 * len(steps))  # average_from 0.5: the steps after the first half
    assert len(steps) >= 12
    expected = [torch.stack(ws).mean(0) for ws in zip(*steps[start:])]

    averaged, tok = load_model("tiny", schema, texts=texts, seed=0)
    res = train(averaged, tok, data, None, TrainConfig(**{**cfg.__dict__, "average_from": 0.5}))
    got = [p for p in res.model.parameters() if p.requires_grad]
    assert len(got) == len(expected) == len(params)
    for g, e, live in zip(got, expected, steps[-1]):
        assert torch.allclose(g, e, atol=1e-6) and not torch.equal(e, live)

    with_dev, tok = load_model("tiny", schema, texts=texts, seed=0)
    res = train(with_dev, tok, data, valid, TrainConfig(**{**cfg.__dict__, "average_from": 0.5}))
    with torch.no_grad():
        for p, e in zip([p for p in res.model.parameters() if p.requires_grad], expected):
            p.copy_(e)
    assert res.history["epochs"][-1]["dev_f1"] == evaluate(res.model, tok, valid, cfg)["overall"]["f1"]
    with pytest.raises(ValueError, match=r"average_from must be in \[0, 1\), not 1"):
        train(with_dev, tok, data, None, TrainConfig(average_from=1, **QUIET))


def test_resume_keeps_the_average(tmp_path, synth, cut_after_first_save):
    """Cut after epoch 1 of 2 (averaging began in epoch 1), resume: bitwise the uninterrupted average."""
    data = synth["train"].select(range(64))
    schema, texts = schema_of(synth["train"]), synth["train"]["tokens"]
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, average_from=0.25, **QUIET)
    full = train(*load_model("tiny", schema, texts=texts, seed=0), data, None, cfg, out_dir=tmp_path / "full").model

    fresh = lambda: load_model("tiny", schema, texts=texts, seed=0)  # noqa: E731
    cut_after_first_save(lambda: train(*fresh(), data, None, cfg, out_dir=tmp_path / "cut"))
    resumed = train(*fresh(), data, None, cfg, out_dir=tmp_path / "cut", resume_from=tmp_path / "cut" / "last").model
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
