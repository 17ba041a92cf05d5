"""nerbook.train runs unchanged under DDP: 2 CPU processes (gloo) give the loss curve of 1.

bench/ddp_check.py trains the tiny model (dropout 0, fp32) with the whole training set as the
global batch, so one process and two see the same examples at every step; with two, each
process gets half the batch. What may differ: float rounding, and DDP averaging the two
processes' mean losses where one process takes one mean over all labelled tokens. Measured:
at most 7e-4 apart over 8 steps (losses 2.25 -> 1.29). Tolerance: 5e-3 absolute.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "ddp_check.py"
TOLERANCE = 5e-3


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env["ACCELERATE_USE_CPU"] = "1"  # torch.distributed.run on a CPU: accelerate must use gloo
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _curve(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, out[-2000:]
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def prepared_model(tmp_path_factory):
    """The tiny model both runs of each test start from, prepared once."""
    model = tmp_path_factory.mktemp("ddp") / "tiny"
    runpy.run_path(str(SCRIPT))["prepare"](model)  # here: this process has nerbook loaded already
    return model


@pytest.mark.parametrize("adversarial", [None, "pgd"], ids=["plain", "pgd"])
def test_two_processes_follow_the_loss_curve_of_one(prepared_model, adversarial):
    """With PGD (nerbook.adversarial) too: its inner passes run under no_sync and take gradients
    with respect to the perturbation only; each step records 3 losses (clean, inner, final)."""
    model = prepared_model
    args = [str(SCRIPT), "--model", str(model), "--global-batch", "32", "--steps", "8"]
    args += ["--adversarial", adversarial, "--adv-steps", "2"] if adversarial else []
    port = "29517" if adversarial is None else "29519"
    one = subprocess.Popen([sys.executable, *args], env=_env(), cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    two = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_port", port, *args], env=_env(), cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    single, ddp = _curve(one), _curve(two)
    passes = 3 if adversarial else 1
    assert (single["processes"], ddp["processes"]) == (1, 2)
    assert len(single["loss"]) == len(ddp["loss"]) == 8 * passes  # one optimizer step per epoch in both
    assert len(ddp["lr"]) == 8
    assert ddp["lr"] == pytest.approx(single["lr"])  # the schedule is not run twice as fast
    gaps = [abs(a - b) for a, b in zip(single["loss"], ddp["loss"])]
    assert max(gaps) < TOLERANCE, (single["loss"], ddp["loss"])
    assert single["loss"][-passes] < 0.8 * single["loss"][0]  # and it learned something
    if adversarial:  # the perturbed inputs cost more than the clean ones
        assert all(single["loss"][i + 2] > single["loss"][i] for i in range(0, 8 * passes, passes))
