"""``nerbook bench predict --against onnx,onnx-int8,torch-int8``: the deployment contenders
(chapter "Deployment").

The same checkpoint, run three more ways on the CPU, each by nerbook's
:class:`~nerbook.predict.Tagger` (same windows, batches and word rule as eager PyTorch):

- ``onnx``: exported to ONNX (:func:`nerbook.export.export_onnx`) and run by ONNX Runtime;
- ``onnx-int8``: that export's weights quantized to int8 (:func:`nerbook.export.quantize_onnx_int8`);
- ``torch-int8``: PyTorch's dynamic int8 quantization of every ``nn.Linear``
  (:func:`nerbook.export.quantize_torch_int8`).

Exports and quantization happen before timing (:func:`prepare_exports`, and in each run before
its clock starts). The report adds each model's weights on disk (MB) and its entity F1 change
against eager PyTorch (``nerbook``) to the usual columns (:func:`deploy_columns`,
:func:`deploy_table`).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

DEPLOY_CONTENDERS = ("onnx", "onnx-int8", "torch-int8")
DEPLOY_NOTE = ("onnx, onnx-int8 and torch-int8 run on the CPU (whatever --device) with the same "
               "threads; exports and quantization are done before timing; size_mb: the weights on "
               "disk (torch-int8: its state_dict as torch.save writes it); f1_change: F1 minus "
               "nerbook's (eager PyTorch)")


def prepare_exports(model: str, names: list[str], folder: Path) -> dict[str, dict]:
    """Export ``model`` to ONNX in ``folder`` (and quantize it) for the ONNX contenders among
    ``names``: per contender its folder, the exporter, the logit difference and the seconds."""
    from nerbook.export import export_onnx, quantize_onnx_int8

    out: dict[str, dict] = {}
    if not any(n in ("onnx", "onnx-int8") for n in names):
        return out
    t0 = time.perf_counter()
    meta = export_onnx(model, folder / "onnx")
    out["onnx"] = {"path": str(folder / "onnx"), "exporter": meta["exporter"],
                   "max_abs_logit_diff": meta["max_abs_logit_diff"], "seconds": time.perf_counter() - t0}
    if "onnx-int8" in names:
        t0 = time.perf_counter()
        meta = quantize_onnx_int8(folder / "onnx", folder / "onnx-int8")
        out["onnx-int8"] = {"path": str(folder / "onnx-int8"), "per_channel": meta["per_channel"],
                            "max_abs_logit_diff_vs_fp32": meta["max_abs_logit_diff_vs_fp32"],
                            "seconds": time.perf_counter() - t0}
    return out


def state_dict_mb(model) -> float:
    """Size of ``torch.save(model.state_dict())``, in MB (a quantized model's packed weights)."""
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


def deploy_tagger(name: str, model: str, export: str | None, batch_size: int):
    """``(Tagger, weights MB)`` of a deployment contender, on the CPU: the ONNX ``export`` folder,
    or the checkpoint ``model`` with its linear layers quantized (``torch-int8``)."""
    from nerbook.export import quantize_torch_int8, weights_mb
    from nerbook.predict import Tagger

    if name in ("onnx", "onnx-int8"):
        if export is None:
            raise ValueError(f"contender {name!r} needs its export (prepare_exports)")
        return Tagger.from_checkpoint(export, batch_size=batch_size, device="cpu"), weights_mb(export)
    if name != "torch-int8":
        raise ValueError(f"unknown deployment contender {name!r}; choose from {', '.join(DEPLOY_CONTENDERS)}")
    tagger = Tagger.from_checkpoint(model, batch_size=batch_size, device="cpu")
    tagger.model = quantize_torch_int8(tagger.model)
    return tagger, state_dict_mb(tagger.model)


def deploy_columns(out: dict[str, dict], runs: dict[str, list[dict]], reference: str = "nerbook") -> None:
    """Add to every contender of a summary its weights' size (``size_mb``), the device it ran on
    and, with gold tags, ``f1_change``: its F1 minus ``reference``'s."""
    for name, entry in out.items():
        first = runs[name][0]
        entry["size_mb"] = first.get("size_mb")
        entry["device"] = first.get("device")
        if "f1" in entry and "f1" in out[reference]:
            entry["f1_change"] = entry["f1"] - out[reference]["f1"]


def deploy_table(result: dict) -> str:
    """One line per contender: sentences/s, speed-up over nerbook, weights MB, peak memory MB,
    F1 and its change, span agreement with nerbook (eager PyTorch)."""
    from nerbook.bench.report import fmt

    lines = [f"{'contender':<18}{'device':>7}{'sent/s':>9}{'speed-up':>10}{'size MB':>9}{'mem MB':>8}"
             f"{'F1':>8}{'F1 change':>11}{'agreement':>11}"]
    for name, c in result["contenders"].items():
        lines.append(f"{name:<18}{fmt(c.get('device'), ''):>7}{c['sentences_per_s']:>9.1f}{1 / c['ratio']:>10.2f}"
                     f"{fmt(c.get('size_mb'), '.1f'):>9}{fmt(c.get('peak_mem_mb'), '.0f'):>8}"
                     f"{fmt(c.get('f1'), '.4f'):>8}{fmt(c.get('f1_change'), '+.4f'):>11}{c['agreement']:>11.4f}")
    return "\n".join(lines)
