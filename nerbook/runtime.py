"""What a run runs on: seeds, device and numeric precision (chapters "Setup", "Making it fast").

The one home of these three decisions, used by training, prediction, the benchmarks, the
command line and the notebooks alike:

- :func:`seed_everything` makes a run reproducible;
- :func:`resolve_device` turns ``auto``/``cpu``/``cuda``/``mps`` into a device that exists;
- :func:`resolve_precision` picks bf16 where the hardware computes it natively.
"""

from __future__ import annotations

import os
import random
import sys

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "no", "bf16", "fp16")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (every device); optionally ask torch for determinism.

    This is what ``transformers.set_seed`` does, written out: importing that function pulls in
    the Trainer's utilities and ``peft``, about 3 s at every start of a notebook or a command.
    ``torch.use_deterministic_algorithms`` also sets the compiler's flag, and importing the
    compiler's config for it costs another 1.3 s; unless a GPU is visible or the compiler is
    already loaded, the same switch for eager kernels is set without it (nothing in nerbook
    compiles; :func:`torch.are_deterministic_algorithms_enabled` reads the same flag).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if torch.cuda.is_available() or "torch._inductor.config" in sys.modules:
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch._C._set_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def pick_device() -> str:
    """``cuda`` when a GPU is visible, else ``mps`` on Apple silicon, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(requested: str | None = "auto") -> str:
    """``auto`` (or None) -> :func:`pick_device`; a named device as is, if this machine has it.

    Raises ``ValueError`` naming the device when it is unknown or not present.
    """
    import torch

    if requested in (None, "auto"):
        return pick_device()
    if requested not in DEVICES:
        raise ValueError(f"unknown device {requested!r}: choose one of {', '.join(DEVICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no GPU visible")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps: not available on this machine")
    return requested


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX), as torch reports it.

    torch has no public call for this, only ``torch.cpu._is_avx512_bf16_supported`` and
    ``torch.cpu._is_amx_tile_supported``. If a torch release renames them, this raises
    instead of quietly answering "no" (which would turn bf16 off on every CPU); a test
    checks the answer against the CPU flags in ``/proc/cpuinfo``.
    """
    import torch

    try:
        probes = (torch.cpu._is_avx512_bf16_supported, torch.cpu._is_amx_tile_supported)
    except AttributeError as e:
        raise RuntimeError(
            f"torch {torch.__version__} has no torch.cpu.{e.name}: nerbook cannot tell whether this "
            "CPU computes bf16 natively. Pass mixed_precision='bf16' or 'no' explicitly.") from None
    return any(probe() for probe in probes)


def resolve_precision(requested: str, device: str) -> str:
    """``auto`` -> bf16 where the hardware computes it natively (recent GPUs, AVX-512-BF16 or
    AMX CPUs), else fp16 on older GPUs, else full precision (``no``)."""
    import torch

    if requested != "auto":
        if requested not in PRECISIONS:
            raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, got {requested!r}")
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu":
        return "bf16" if cpu_has_native_bf16() else "no"
    return "no"


def scoring_precision(requested: str, device: str) -> str:
    """The precision to score a model in after training it with mixed precision ``requested`` on
    ``device``: the same half precision (``bf16``, ``fp16``), or ``fp32`` where training ran in
    full precision (``no``), so that the dev score reads the model as training saw it."""
    precision = resolve_precision(requested, device)
    return "fp32" if precision == "no" else precision
