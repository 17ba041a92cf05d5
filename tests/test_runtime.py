"""nerbook.runtime: seeds, devices, precision; and the accelerate state they rely on."""

from __future__ import annotations

import os
import random
import subprocess
import sys

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


def test_a_notebook_start_imports_neither_peft_nor_the_compiler_yet_asks_for_determinism():
    # setup_notebook runs at the top of every chapter and every command seeds: once importing
    # peft (via transformers.set_seed) and the compiler's config cost 3 s and 1.3 s per start.
    code = ("import sys, torch, nerbook; nerbook.setup_notebook(seed=0, verbose=False); "
            "print(sorted(m for m in ('peft', 'torch._inductor.config') if m in sys.modules), "
            "torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["[]", "True", "True"]


@pytest.mark.parametrize("profile, bars", [("offline", "False"), ("full", "True")])
def test_the_offline_profile_draws_no_transformers_progress_bars(profile, bars):
    """Offline there is nothing to download, and a bar drawn while saving a model would be stored in a
    chapter's outputs (a widget that renders as nothing offline); the full profile keeps the download bars."""
    code = (f"import nerbook, transformers; nerbook.setup_notebook(seed=0, profile={profile!r}, verbose=False); "
            "print(transformers.utils.logging.is_progress_bar_enabled())")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [bars]


def test_a_notebook_computes_with_the_same_threads_on_any_number_of_cores():
    """Checked notebook outputs depend on torch's thread count (nerbook.notebook.NOTEBOOK_THREADS);
    torch's default follows the cores, so a chapter started on one core must still use two."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); import torch, nerbook; "
            "before = torch.get_num_threads(); nerbook.setup_notebook(seed=0, verbose=False); "
            "print(before, torch.get_num_threads())")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    from nerbook.notebook import NOTEBOOK_THREADS

    assert out.stdout.split() == ["1", str(NOTEBOOK_THREADS)]


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
