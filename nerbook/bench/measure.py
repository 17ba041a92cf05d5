"""Measuring a benchmark run: peak memory, tokens computed, FLOPs (chapter "Making it fast").

:class:`MemoryMeter` reads a run's own peak memory, :class:`TokenCounter` counts every
training forward pass's real and padded tokens whatever loop drives the model, and
:func:`model_flops` turns tokens into the useful work for the model-FLOP utilisation (MFU),
:func:`matmul_tflops` measures what that work is compared with on a CPU (no spec-sheet peak), and
:func:`linear_gemm_rate` how fast a model's own products run alone (the ceiling of its MFU).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from time import perf_counter

#: Dense bf16 peak of some cards in TFLOP/s (spec sheets, without sparsity), for MFU.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10": 125.0, "4090": 165.0}

MEMORY_NOTE = {
    "cpu": "peak RSS growth during training (VmHWM reset to VmRSS before training, read after), "
           "fresh process per run",
    "cuda": "torch.cuda.max_memory_allocated during training minus memory allocated before, "
            "fresh process per run",
}


def _proc_status(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


class MemoryMeter:
    """Peak memory growth of the code inside ``with``: CUDA allocator peak on a GPU, else the
    resident set's high-water mark (reset on entry through ``/proc/self/clear_refs``)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.kind = "cuda" if device == "cuda" else "cpu"

    def __enter__(self) -> MemoryMeter:
        import torch

        if self.kind == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
            self._reset = True
        except OSError:
            pass
        self._base = _proc_status("VmRSS") if self._reset else None
        if self._base is None:  # no /proc: the high-water mark so far, not resettable
            import resource

            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.kind == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
            return
        peak = _proc_status("VmHWM") if self._reset else None
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":
                peak //= 1024
        self.peak_mb = max(0, peak - self._base) / 1024


class TokenCounter:
    """Counts, for every training forward pass of ``model``, the real (non-pad) tokens, the
    tokens computed (batch x padded length) and the attention FLOPs of the real tokens.

    A forward pre-hook sees every batch whatever loop drives the model; the sums stay on the
    device (no host sync) until :meth:`totals`.
    """

    def __init__(self, model, pad_id: int | None = 0) -> None:
        self.model = model
        self.pad_id = pad_id if pad_id is not None else 0
        self.computed = 0
        self.real = None
        self.sq = None  # sum over sequences of (real length)^2, for attention FLOPs
        self.batches = 0
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if not module.training:
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.count(ids, kwargs.get("attention_mask"))
        return None

    def count(self, ids, mask=None) -> None:
        """Add one batch (its ``input_ids`` and ``attention_mask``) to the sums, as the hook does for
        every training forward pass; call it directly to count batches outside the timed steps
        (``bench/mfu_ceiling.py``: the same count for every setting, compiled or not)."""
        import torch

        self.computed += ids.numel()
        self.batches += 1
        if mask is not None and mask.dim() == 4:  # packed rows: block-diagonal mask, one block a window
            pad = (ids == self.pad_id).sum()
            allowed = mask if mask.dtype == torch.bool else mask == 0
            real, sq = ids.numel() - pad, allowed.sum() - pad  # each pad position sees itself only
        else:
            lengths = mask.sum(1) if mask is not None else ids.new_full((ids.shape[0],), ids.shape[1])
            real, sq = lengths.sum(), (lengths * lengths).sum()
        self.real = real if self.real is None else self.real + real
        self.sq = sq if self.sq is None else self.sq + sq

    def remove(self) -> None:
        self._handle.remove()

    def totals(self) -> dict:
        return {"real_tokens": int(self.real.item()) if self.real is not None else 0,
                "computed_tokens": int(self.computed), "batches": self.batches,
                "sum_len_sq": int(self.sq.item()) if self.sq is not None else 0}


def model_flops(model, real_tokens: int, sum_len_sq: int) -> float:
    """Training FLOPs of the useful work: 6 x non-embedding parameters x real tokens, plus the
    attention scores and mixing (12 x layers x hidden x sum of squared lengths)."""
    from nerbook.scaling import non_embedding_parameters

    cfg = model.config
    n = non_embedding_parameters(model)
    layers = getattr(cfg, "num_hidden_layers", 0)
    hidden = getattr(cfg, "hidden_size", 0)
    return 6.0 * n * real_tokens + 12.0 * layers * hidden * sum_len_sq


def peak_tflops(device: str) -> float | None:
    """The card's dense bf16 TFLOP/s from :data:`PEAK_BF16_TFLOPS`, or None (CPU, unknown card)."""
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    for key, value in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return value
    return None


def matmul_tflops(device: str, dtype: str = "bf16", size: int = 1024, min_seconds: float = 0.3,
                  shape: tuple[int, int, int] | None = None) -> float:
    """The rate of ``size x size`` matrix products in ``dtype`` (``fp32`` or ``bf16``) on
    ``device`` with the current threads, in TFLOP/s (``2 size^3`` per product): what a CPU's MFU
    is measured against, in the same run, because a CPU has no spec-sheet peak for its cores'
    share of a shared machine. ``shape=(m, k, n)`` times ``(m x k) @ (k x n)`` products instead
    (``2 m k n`` each). Products run until ``min_seconds`` have passed, after two untimed."""
    import torch

    m, k, n = shape or (size, size, size)
    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device=device, dtype=kind)
    b = torch.randn(k, n, generator=g).to(device=device, dtype=kind)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(2):
            a @ b
        sync()
        count, start = 0, perf_counter()
        while True:
            a @ b
            count += 1
            sync()
            elapsed = perf_counter() - start
            if elapsed >= min_seconds:
                break
    return 2.0 * m * k * n * count / elapsed / 1e12


def linear_gemm_rate(model, tokens: int, dtype: str = "bf16", backward: bool = True,
                     min_seconds: float = 0.3) -> float:
    """TFLOP/s of ``model``'s linear layers' matrix products run alone, at ``tokens`` rows, in
    ``dtype`` on the CPU: each distinct ``(in, out)`` shape timed with :func:`matmul_tflops`, weighted
    by the FLOPs it does (chapter "Making it fast"). With ``backward`` each layer does a training
    step's three products, ``(tokens x in) @ (in x out)`` forward, ``(tokens x out) @ (out x in)`` for
    the input's gradient and ``(out x tokens) @ (tokens x in)`` for the weight's; else the forward one.

    A step whose every other operation took no time would run its linear layers at this rate: the
    ceiling of its MFU against a reference product is this rate over the reference's."""
    from collections import Counter

    import torch

    shapes = Counter((m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear))
    products = Counter()
    for (n_in, n_out), layers in shapes.items():
        products[(tokens, n_in, n_out)] += layers
        if backward:
            products[(tokens, n_out, n_in)] += layers
            products[(n_out, tokens, n_in)] += layers
    flops = {shape: count * 2.0 * shape[0] * shape[1] * shape[2] for shape, count in products.items()}
    seconds = sum(f / (1e12 * matmul_tflops("cpu", dtype, min_seconds=min_seconds, shape=shape))
                  for shape, f in flops.items())
    return sum(flops.values()) / seconds / 1e12


def matmul_rates(device: str, dtypes: tuple[str, ...] = ("fp32", "bf16"), min_seconds: float = 0.3) -> dict[str, float]:
    """:func:`matmul_tflops` for each dtype (each timed for ``min_seconds``), keyed by its name."""
    return {d: matmul_tflops(device, d, min_seconds=min_seconds) for d in dtypes}
