"""nerbook.runtime: seeds, devices, precision; and the accelerate state they rely on."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nerbook.runtime import (
    pick_device,
    resolve_device,
    resolve_precision,
    scoring_precision,
    seed_everything,
)


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(3, deterministic=False)
    first = draw()
    seed_everything(3, deterministic=False)
    assert draw() == first
    seed_everything(4, deterministic=False)
    assert draw() != first


def test_resolve_device():
    assert resolve_device("auto") == resolve_device(None) == pick_device()
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU visible"):
            resolve_device("cuda")


def test_resolve_precision_explicit_and_unknown():
    assert resolve_precision("fp16", "cuda") == "fp16" and resolve_precision("no", "cuda") == "no"
    assert resolve_precision("auto", "mps") == "no"
    with pytest.raises(ValueError, match="fp8"):
        resolve_precision("fp8", "cpu")


def test_two_precisions_in_one_process():
    """accelerate refuses a second precision in a process; make_accelerator resets its state so
    that a notebook can compare fp32 with bf16 (it would raise if accelerate's reset went away)."""
    from nerbook.train import TrainConfig, make_accelerator

    assert make_accelerator(TrainConfig(mixed_precision="bf16")).mixed_precision == "bf16"
    assert make_accelerator(TrainConfig(mixed_precision="no")).mixed_precision == "no"
    assert make_accelerator(TrainConfig(mixed_precision="bf16")).mixed_precision == "bf16"


def test_cpu_bf16_probe_fails_loudly_when_torch_renames_it(monkeypatch):
    from nerbook.runtime import cpu_has_native_bf16

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    with pytest.raises(RuntimeError, match="_is_avx512_bf16_supported"):
        cpu_has_native_bf16()
    with pytest.raises(RuntimeError):
        resolve_precision("auto", "cpu")


def test_scoring_precision_is_the_training_precision_with_full_precision_named_fp32():
    assert scoring_precision("bf16", "cpu") == "bf16" and scoring_precision("fp16", "cuda") == "fp16"
    assert scoring_precision("no", "cpu") == "fp32"
    assert scoring_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="mixed_precision"):
        scoring_precision("fp8", "cpu")
