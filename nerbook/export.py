"""Deployment: a checkpoint exported to ONNX, quantized to int8, run by ONNX Runtime (chapter
"Deployment").

- :func:`export_onnx` writes ``model.onnx`` (dynamic batch and sequence axes), the tokenizer,
  ``config.json`` and ``nerbook.json`` (the checkpoint's window settings plus
  ``"format": "onnx"``), and checks the export against PyTorch on batches of other shapes
  (``max_abs_logit_diff``).
- :func:`quantize_onnx_int8` quantizes an export's weights to int8 (ONNX Runtime's dynamic
  quantization: int8 weights, activations quantized on the fly).
- :func:`quantize_torch_int8` does the same in PyTorch (``nn.Linear`` only), for comparison.
- :class:`OnnxTokenClassifier` wraps an ONNX Runtime session so that
  :class:`nerbook.predict.Tagger` runs it unchanged; :func:`load_onnx` opens an exported folder
  (``Tagger.from_checkpoint`` does so when the folder holds ``model.onnx``).
- :func:`is_onnx_export`, :func:`weights_mb` (the size of a folder's weights on disk) and
  :func:`check_out_dir` (may a folder be written).

Folders are written all at once (:func:`nerbook.model.atomic_folder`); an existing non-empty
folder is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from nerbook.model import ModelLoadError, atomic_folder, load_model, read_checkpoint_meta

ONNX_FILE = "model.onnx"
#: The shapes (batch, length) an export is checked on: other than the one it was traced with.
CHECK_SHAPES = ((1, 5), (1, 40), (3, 5), (3, 40))
#: The shape the exporter traces with (not 0 or 1, which ``torch.export`` would specialise).
TRACE_SHAPE = (2, 16)
#: ONNX Runtime graph fusions left off: its fused SkipLayerNormalization kernel took 0.5 ms a call
#: where the Add and LayerNormalization it replaces took 0.15 ms (MiniLM int8, CoNLL-2003 dev,
#: batches of 16, 2 threads, onnxruntime 1.32), a fifth of the int8 model's time. Chapter
#: "Deployment" profiles both.
SLOW_FUSIONS = ("SkipLayerNormFusion",)
#: Weight files whose size :func:`weights_mb` counts.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", ONNX_FILE, f"{ONNX_FILE}.data")


def is_onnx_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by :func:`export_onnx` or :func:`quantize_onnx_int8`."""
    return (Path(path) / ONNX_FILE).is_file()


def weights_mb(path: str | os.PathLike) -> float:
    """Size on disk of a model folder's weights (safetensors, ONNX and its external data), in MB."""
    return sum((Path(path) / f).stat().st_size for f in WEIGHT_FILES if (Path(path) / f).is_file()) / 1e6


def check_out_dir(out: str | os.PathLike, overwrite: bool, *sources: str | os.PathLike) -> None:
    """``FileExistsError`` unless ``out`` may be written: not one of ``sources``, not a file, and
    empty or absent unless ``overwrite``."""
    out = Path(out)
    for src in sources:
        if out.resolve() == Path(src).resolve():
            raise FileExistsError(f"{out}: is the model being exported; write the export elsewhere")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: exists and is not empty; use overwrite (--overwrite) to replace it")


class _Logits(torch.nn.Module):
    """A token classifier as a function of tensors to its logits only, for the exporter."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def input_names_of(model) -> list[str]:
    """The inputs an export of ``model`` takes: ``input_ids``, ``attention_mask`` and, if its
    ``forward`` accepts them, ``token_type_ids`` (zeros when not given)."""
    import inspect

    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")
    return names


def sample_inputs(shape: tuple[int, int], vocab_size: int, names: list[str], pad_id: int = 0,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids of ``shape``; in a batch of several, the later rows are shorter (padded)."""
    batch, length = shape
    g = torch.Generator().manual_seed(seed + 1000 * batch + length)
    ids = torch.randint(0, vocab_size, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    for row in range(1, batch):
        mask[row, max(1, length - 2 * row):] = 0
    ids = ids.masked_fill(mask == 0, pad_id)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {n: inputs[n] for n in names}


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence the exporters' and quantizer's chatter (prints, warnings, ``torch.onnx`` log lines,
    onnxruntime's advice on the root logger) without configuring logging for the caller."""
    import logging

    root, torch_onnx = logging.getLogger(), logging.getLogger("torch.onnx")
    level, sink = torch_onnx.level, logging.NullHandler()
    torch_onnx.setLevel(logging.ERROR)
    root.addHandler(sink)  # a root without handlers would get one from logging.warning()
    only_errors = lambda record: record.levelno >= logging.ERROR  # noqa: E731
    root.addFilter(only_errors)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(only_errors)
        root.removeHandler(sink)
        torch_onnx.setLevel(level)


def strip_node_metadata(path: Path) -> None:
    """Drop what the dynamo exporter notes on every node (the Python stack trace, with this
    machine's paths, the FX node, module names): a third of a small model's file, and nothing
    ONNX Runtime reads."""
    import onnx

    proto = onnx.load(str(path))
    for graph_nodes in [proto.graph.node, *(f.node for f in proto.functions)]:
        for node in graph_nodes:
            del node.metadata_props[:]
            node.doc_string = ""
    onnx.save(proto, str(path))


def _torch_export(model, path: Path, names: list[str], opset: int) -> str:
    """Export ``model`` (logits only) to ``path``: ``torch.onnx.export(dynamo=True)``, or the
    TorchScript exporter if that fails. Returns the exporter used (with the dynamo error)."""
    wrapper = _Logits(model).eval()
    args = tuple(sample_inputs(TRACE_SHAPE, model.config.vocab_size, names).values())
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "logits"]}
    common = dict(input_names=names, output_names=["logits"], opset_version=opset, verbose=False)
    with quiet_exporters():
        try:
            dim = torch.export.Dim.DYNAMIC
            torch.onnx.export(wrapper, args, str(path), dynamo=True, external_data=False,
                              dynamic_shapes=tuple({0: dim, 1: dim} for _ in names), **common)
            strip_node_metadata(path)
            return "dynamo"
        except Exception as e:  # an operator or a guard the dynamo exporter cannot handle
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            path.unlink(missing_ok=True)
            torch.onnx.export(wrapper, args, str(path), dynamo=False, dynamic_axes=axes, **common)
            return f"torchscript (dynamo failed: {type(e).__name__}: {first[:200]})"


def plain_attention(model) -> str:
    """Switch ``model`` to its plain ("eager") attention where it has one, for export; returns the
    attention the graph is traced with."""
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError):  # a model without the switch keeps what it has
        pass
    return getattr(model.config, "_attn_implementation", None) or "default"


def max_logit_diff(session: OnnxTokenClassifier, reference, vocab_size: int, names: list[str],
                   pad_id: int = 0) -> float:
    """The largest ``|logit - reference logit|`` over the real (unpadded) tokens of
    :data:`CHECK_SHAPES`; ``reference`` is a PyTorch model or another :class:`OnnxTokenClassifier`."""
    worst = 0.0
    for shape in CHECK_SHAPES:
        inputs = sample_inputs(shape, vocab_size, names, pad_id)
        with torch.inference_mode():
            got = session(**inputs).logits
            want = reference(**inputs).logits.float()
        real = inputs["attention_mask"].bool()
        worst = max(worst, float((got - want).abs()[real].max()))
    return worst


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / "nerbook.json").write_text(json.dumps(meta, indent=2))


def export_onnx(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike, opset: int = 20,
                overwrite: bool = False) -> dict:
    """Export a nerbook checkpoint to ``out_dir/model.onnx`` with its tokenizer, ``config.json``
    and ``nerbook.json``; check it against PyTorch on :data:`CHECK_SHAPES`.

    The graph is traced with the model's plain ("eager") attention, not PyTorch's fused
    ``scaled_dot_product_attention``: the same numbers, but as MatMul, Softmax and MatMul, which ONNX
    Runtime fuses and quantizes, where the fused call's decomposition (with its NaN guards) ran
    slower. Opset 20 keeps GELU one operator. Both were found with ONNX Runtime's profiler
    (chapter "Deployment"); the speeds are in ``records/bench-predict-deploy-*.json``.

    Returns (and records in ``nerbook.json``) the checkpoint's meta plus ``format``,
    ``precision`` (``fp32``), ``exporter`` (``dynamo``, or ``torchscript`` and why), ``opset``,
    ``attention``, ``inputs``, ``checked_shapes`` and ``max_abs_logit_diff``.
    """
    out = Path(out_dir)
    if is_onnx_export(checkpoint_dir):
        raise ModelLoadError(f"{checkpoint_dir}: already an ONNX export; export the PyTorch checkpoint")
    check_out_dir(out, overwrite, checkpoint_dir)
    model, tokenizer = load_model(str(checkpoint_dir))
    model = model.float().cpu().eval()
    attention = plain_attention(model)
    names = input_names_of(model)
    pad_id = tokenizer.pad_token_id or 0
    with atomic_folder(out) as tmp:
        exporter = _torch_export(model, tmp / ONNX_FILE, names, opset)
        tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)
        session = OnnxTokenClassifier(tmp, config=model.config)
        diff = max_logit_diff(session, model, model.config.vocab_size, names, pad_id)
        meta = {**read_checkpoint_meta(checkpoint_dir), "format": "onnx", "precision": "fp32",
                "exporter": exporter, "opset": opset, "attention": attention, "inputs": names, "source": str(checkpoint_dir),
                "checked_shapes": [list(s) for s in CHECK_SHAPES], "max_abs_logit_diff": diff}
        _write_meta(tmp, meta)
        del session  # let go of the file before the folder is renamed
    return meta


def quantize_onnx_int8(onnx_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       per_channel: bool = True, overwrite: bool = False) -> dict:
    """Quantize an fp32 export's weights to int8 (``onnxruntime.quantization.quantize_dynamic``,
    QInt8, ``per_channel`` scales) into ``out_dir``, the same layout with ``precision: int8``.

    Returns (and records) the meta plus ``per_channel`` and ``max_abs_logit_diff_vs_fp32``:
    the largest logit change on :data:`CHECK_SHAPES`.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, out = Path(onnx_dir), Path(out_dir)
    if not is_onnx_export(src):
        raise ModelLoadError(f"{src}: not an ONNX export (no {ONNX_FILE}); run export_onnx first")
    meta = read_checkpoint_meta(src)
    if meta.get("precision") == "int8":
        raise ModelLoadError(f"{src}: already quantized to int8")
    check_out_dir(out, overwrite, src)
    with atomic_folder(out) as tmp:
        with quiet_exporters():
            quantize_dynamic(src / ONNX_FILE, tmp / ONNX_FILE, weight_type=QuantType.QInt8,
                             per_channel=per_channel)
        for f in src.iterdir():
            if f.is_file() and f.name not in (ONNX_FILE, f"{ONNX_FILE}.data", "nerbook.json"):
                shutil.copy2(f, tmp / f.name)
        fp32, int8 = OnnxTokenClassifier(src), OnnxTokenClassifier(tmp)
        names = meta.get("inputs") or fp32.input_names
        diff = max_logit_diff(int8, fp32, fp32.config.vocab_size, names, fp32.config.pad_token_id or 0)
        meta = {**meta, "precision": "int8", "quantization": "onnxruntime dynamic, QInt8 weights",
                "per_channel": per_channel, "source": str(src), "max_abs_logit_diff_vs_fp32": diff}
        _write_meta(tmp, meta)
        del fp32, int8
    return meta


def quantize_torch_int8(model):
    """A copy of ``model`` on the CPU with every ``nn.Linear`` dynamically quantized to int8
    (``torch.ao.quantization.quantize_dynamic``, per-tensor scales). :class:`~nerbook.predict.Tagger`
    runs it. Torch 2.13 deprecates this API (in favour of torchao, not a dependency) and its
    quantized tensors; those two deprecation warnings are silenced, nothing else."""
    from torch.ao.quantization import quantize_dynamic

    model = copy.deepcopy(model).float().cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"(?s).*torch\.ao\.quantization")
        warnings.filterwarnings("ignore", category=UserWarning, message=r"(?s).*quantize_per_tensor.*deprecated")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class _Output:
    """What a Hugging Face model returns, as far as nerbook reads it: ``.logits``."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class OnnxTokenClassifier:
    """An ONNX Runtime session (CPU) that quacks like a Hugging Face token classifier, so that
    :class:`~nerbook.predict.Tagger` runs it unchanged: called with ``input_ids``,
    ``attention_mask`` (``token_type_ids``) it returns an object with ``.logits`` (a CPU tensor);
    ``.config`` holds ``id2label``/``label2id``/``num_labels``; ``.parameters()`` yields one CPU
    tensor (device detection); ``.eval()`` is a no-op. Only the inputs the graph declares are fed.

    ``threads``: ONNX Runtime's intra-op threads (default: ``torch.get_num_threads()``, as the
    PyTorch model would use). Idle threads spin, as ONNX Runtime's do by default, unless
    ``OMP_WAIT_POLICY=PASSIVE``, the setting that stops torch's OpenMP threads from spinning:
    both libraries then wait alike (on a busy 2-core machine spinning cost ONNX Runtime 1.5x).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, config=None) -> None:
        import onnxruntime as ort

        folder = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        # Memory patterns are planned per input shape, and shapes change from batch to batch: they
        # only added a second set of buffers (MiniLM, batch 64: 187 MB instead of 99), no speed.
        opts.enable_mem_pattern = False
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), opts, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=list(SLOW_FUSIONS))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        if config is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        self.config = config
        self.path = folder
        self._anchor = torch.zeros(())

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **_) -> _Output:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        defaults = {"attention_mask": torch.ones_like, "token_type_ids": torch.zeros_like}
        feeds = {}
        for name in self.input_names:
            value = given.get(name)
            if value is None:
                if name not in defaults or input_ids is None:
                    raise ValueError(f"the ONNX model needs the input {name!r}")
                value = defaults[name](input_ids)
            feeds[name] = value.detach().to("cpu", torch.int64).numpy()
        (logits,) = self.session.run([self.output_name], feeds)
        return _Output(torch.from_numpy(logits))

    forward = __call__

    def eval(self) -> OnnxTokenClassifier:
        return self

    def to(self, device) -> OnnxTokenClassifier:
        if torch.device(device).type != "cpu":
            raise ModelLoadError(f"{self.path}: an ONNX export runs on the CPU here, not on {device}")
        return self

    def parameters(self):
        yield self._anchor


def load_onnx(path: str | os.PathLike, threads: int | None = None):
    """``(OnnxTokenClassifier, tokenizer)`` of a folder written by :func:`export_onnx` or
    :func:`quantize_onnx_int8`."""
    from transformers import AutoTokenizer

    from nerbook.align import require_fast_tokenizer

    if not is_onnx_export(path):
        raise ModelLoadError(f"{path}: not an ONNX export (no {ONNX_FILE})")
    try:
        model = OnnxTokenClassifier(path, threads=threads)
        tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True, trust_remote_code=False)
        require_fast_tokenizer(tokenizer)
    except Exception as e:  # onnxruntime's own errors (InvalidProtobuf, NoSuchFile) are plain Exceptions
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelLoadError(f"{path}: cannot load the ONNX export ({type(e).__name__}: {first})") from None
    return model, tokenizer
