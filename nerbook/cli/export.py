"""``nerbook export``: a checkpoint to ONNX, optionally quantized to int8 (chapter "Deployment").

``--out DIR`` receives the fp32 export. With ``--int8`` it receives the int8 export instead: the
fp32 export is written to a temporary folder, checked against PyTorch, quantized into ``DIR``
and removed; both differences are reported (fp32 vs PyTorch, int8 vs fp32). Export the fp32
model first, into another folder, to keep both. ``nerbook predict --model DIR`` runs either.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nerbook.cli.common import CliError, positive


def add_parser(sub) -> None:
    e = sub.add_parser("export", help="export a checkpoint to ONNX (optionally int8)",
                       description="Export a checkpoint to ONNX (dynamic batch and length), check it "
                                   "against PyTorch, and optionally quantize its weights to int8.")
    e.add_argument("--model", required=True, help="checkpoint folder saved by nerbook train")
    e.add_argument("--out", required=True, help="folder to write: model.onnx, tokenizer, config.json, nerbook.json")
    e.add_argument("--int8", action="store_true",
                   help="write the int8 model (ONNX Runtime dynamic quantization) to --out instead of the fp32 one")
    e.add_argument("--opset", type=positive(int, 14), default=20, help="ONNX opset (default 20)")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run, show=show)


def run(args: argparse.Namespace) -> dict:
    from nerbook.export import (
        check_out_dir,
        export_onnx,
        is_onnx_export,
        quantize_onnx_int8,
        weights_mb,
    )

    model, out = Path(args.model), Path(args.out)
    if not model.is_dir():
        raise CliError(f"--model {model}: no such folder")
    if is_onnx_export(model):
        raise CliError(f"--model {model}: already an ONNX export; export the PyTorch checkpoint")
    try:
        check_out_dir(out, args.overwrite, model)
        if not args.int8:
            meta = export_onnx(model, out, opset=args.opset, overwrite=args.overwrite)
        else:
            with tempfile.TemporaryDirectory(prefix="nerbook-export-") as tmp:
                export_onnx(model, Path(tmp) / "fp32", opset=args.opset)
                meta = quantize_onnx_int8(Path(tmp) / "fp32", out, overwrite=args.overwrite)
    except FileExistsError as e:
        raise CliError(f"--out {e}") from None
    keys = ("format", "precision", "exporter", "opset", "attention", "inputs", "checked_shapes", "max_abs_logit_diff",
            "per_channel", "max_abs_logit_diff_vs_fp32")
    return {"model": str(model), "out": str(out), **{k: meta[k] for k in keys if k in meta},
            "size_mb": weights_mb(out), "model_size_mb": weights_mb(model)}


def show(r: dict) -> None:
    print(f"wrote {r['out']}: {r['format']} {r['precision']}, opset {r['opset']}, exporter {r['exporter']}, "
          f"{r.get('attention', 'default')} attention")
    print(f"weights: {r['size_mb']:.2f} MB (checkpoint {r['model_size_mb']:.2f} MB)")
    shapes = ", ".join(f"{b}x{n}" for b, n in r["checked_shapes"])
    print(f"max |logit difference|, fp32 export vs PyTorch: {r['max_abs_logit_diff']:.2e} (batch x length {shapes})")
    if "max_abs_logit_diff_vs_fp32" in r:
        print(f"max |logit difference|, int8 vs fp32 export:    {r['max_abs_logit_diff_vs_fp32']:.2e}")
