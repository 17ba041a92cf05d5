"""CoNLL files, label schemas and the datasets we train on (chapter "NER data and labels").

A sentence is a list of words with one tag each. On disk that is the CoNLL format: one word
per line, the tag in the last column, a blank line between sentences and ``-DOCSTART-``
lines between documents. In memory it is a :class:`datasets.Dataset` with the columns
``tokens`` (words), ``ner_tags`` (ids, a ``ClassLabel`` that carries the names) and
``doc_id`` (which document the sentence belongs to, for document context).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from nerbook.hub import cached_snapshot, hub_cache_dir, hub_offline
from nerbook.schemes import TAG_RE, check_tag, iob2_to_bioes, to_iob1, to_iob2  # noqa: F401 (re-exported)

ENTITY_TYPES = ("PER", "ORG", "LOC", "MISC")
DOCSTART = "-DOCSTART-"


class ConllFormatError(ValueError):
    """A CoNLL file that cannot be read; the message names the file and line."""


# --------------------------------------------------------------------------------------
# Label schema
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSchema:
    """Tag names <-> ids, and the B-X -> I-X map built from the names (never from ids)."""

    names: tuple[str, ...]
    label2id: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tag names in schema: {names}")
        for n in names:
            if not TAG_RE.match(n):
                raise ValueError(f"tag {n!r} is not 'O' or PREFIX-TYPE")
        object.__setattr__(self, "label2id", {n: i for i, n in enumerate(names)})

    @classmethod
    def from_types(cls, types: Sequence[str] = ENTITY_TYPES, scheme: str = "iob2") -> LabelSchema:
        """``O`` then ``B-T, I-T`` (IOB2) or ``B-T, I-T, E-T, S-T`` (BIOES) for each type."""
        prefixes = {"iob2": "BI", "bioes": "BIES"}[scheme]
        return cls(("O", *(f"{p}-{t}" for t in types for p in prefixes)))

    @classmethod
    def from_tags(cls, tags: Iterable[str]) -> LabelSchema:
        """The IOB2 schema that covers every type seen in ``tags`` (CoNLL type order first)."""
        seen = {t.split("-", 1)[1] for t in tags if t != "O"}
        types = [t for t in ENTITY_TYPES if t in seen] + sorted(seen - set(ENTITY_TYPES))
        return cls.from_types(types)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def b_to_i(self) -> dict[int, int]:
        """Id of ``B-X`` -> id of ``I-X``, looked up by name."""
        return {
            i: self.label2id["I-" + n[2:]]
            for i, n in enumerate(self.names)
            if n.startswith("B-") and "I-" + n[2:] in self.label2id
        }

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, tags: Sequence[str]) -> list[int]:
        try:
            return [self.label2id[t] for t in tags]
        except KeyError as e:
            raise ValueError(f"unknown tag {e.args[0]!r}; schema has {list(self.names)}") from None



#: The order used by the Hugging Face ``conll2003`` dataset.
CONLL2003 = LabelSchema(("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"))


# --------------------------------------------------------------------------------------
# Reading and writing CoNLL files
# --------------------------------------------------------------------------------------


@dataclass
class Sentence:
    """One sentence of a CoNLL file: words, their tags (or None), and where it came from."""

    tokens: list[str]
    tags: list[str] | None
    doc_id: int
    line: int  # line number (1-based) of the sentence's first word
    columns: list[list[str]] = field(default_factory=list)  # all columns of each word line


def read_lines(path: str | os.PathLike) -> list[str]:
    r"""The lines of a UTF-8 text file, split at ``\n`` only (``\r\n`` too, but not at U+2028,
    U+0085 or form feeds, which may sit inside a line), without a leading byte-order mark.

    A missing file, a folder or an unreadable file raises ``FileNotFoundError``; bytes that are
    not UTF-8 raise :class:`ConllFormatError`; both name the file (and line).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a folder, not a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConllFormatError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line.removesuffix("\r") for line in lines]


def _check_word_line(cols: list[str], n_cols: int, schema: LabelSchema | None, where: str, line: str,
                     with_tags: bool = True) -> None:
    """Raise :class:`ConllFormatError` at ``where`` (``file:line``) unless a word line has
    ``n_cols`` columns like the file's first and, ``with_tags``, at least 2 of them, the last a
    well-formed tag of the schema."""
    if with_tags and n_cols < 2:
        raise ConllFormatError(f"{where}: expected at least 2 columns (word ... tag), found 1: {line!r}")
    if len(cols) != n_cols:
        raise ConllFormatError(f"{where}: expected {n_cols} columns like the first word line, "
                               f"found {len(cols)}: {line!r}")
    if not with_tags:
        return
    try:
        _, typ = check_tag(cols[-1])
    except ValueError as e:
        raise ConllFormatError(f"{where}: {e}") from None
    if schema is not None and typ is not None and f"B-{typ}" not in schema.label2id:
        raise ConllFormatError(f"{where}: unknown tag {cols[-1]!r}: entity type {typ!r} is not in "
                               f"the schema {list(schema.names)}")


def read_conll_sentences(
    path: str | os.PathLike, *, with_tags: bool = True, schema: LabelSchema | None = None,
    normalize: bool = True, lines: Sequence[str] | None = None,
) -> list[Sentence]:
    """Read a CoNLL file into :class:`Sentence` objects, checking every line.

    Word lines hold whitespace-separated columns (2 or 4 in the usual files: ``word tag`` or
    ``word POS chunk tag``), the tag last; every word line of a file must have the same number
    of columns. ``with_tags=False`` reads words only (the first column) for prediction.
    Tags may be IOB1, IOB2 or BIOES and are returned as IOB2 (as written with
    ``normalize=False``). ``-DOCSTART-`` lines start a new
    document. Problems raise :class:`ConllFormatError` naming ``file:line``. ``lines``: the
    file's lines, when :func:`read_lines` has read them already.
    """
    path = Path(path)
    lines = read_lines(path) if lines is None else lines
    sentences: list[Sentence] = []
    doc_id, n_cols = 0, None
    cur: list[list[str]] = []
    start = 0
    seen_doc_content = False

    def flush() -> None:
        nonlocal cur, seen_doc_content
        if cur:
            tokens = [c[0] for c in cur]
            tags = None
            if with_tags:
                tags = [c[-1] for c in cur]
                tags = to_iob2(tags) if normalize else tags
            sentences.append(Sentence(tokens, tags, doc_id, start, cur))
            seen_doc_content = True
        cur = []

    for lineno, line in enumerate(lines, 1):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == DOCSTART:
            flush()
            if seen_doc_content:
                doc_id += 1
                seen_doc_content = False
            continue
        n_cols = n_cols or len(cols)
        _check_word_line(cols, n_cols, schema, f"{path}:{lineno}", line, with_tags)
        if not cur:
            start = lineno
        cur.append(cols)
    flush()
    if not sentences:
        raise ConllFormatError(f"{path}: no sentences (the file is empty or holds only blank/-DOCSTART- lines)")
    return sentences


def features_of(schema: LabelSchema) -> datasets.Features:
    """The columns of every nerbook dataset: ``tokens``, ``ner_tags`` (a ``ClassLabel`` holding
    the schema's names) and ``doc_id``."""
    return datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(schema.names))),
        "doc_id": datasets.Value("int32"),
    })


def default_schema(sentences: Iterable[Sentence]) -> LabelSchema:
    """CoNLL-2003's schema when every entity type is PER/ORG/LOC/MISC, else an IOB2 schema of
    the types found (CoNLL's first)."""
    tags = [t for s in sentences for t in s.tags or []]
    found = {t[2:] for t in tags if t != "O"}
    return CONLL2003 if found <= set(ENTITY_TYPES) else LabelSchema.from_tags(tags)


def sentences_to_dataset(sentences: Sequence[Sentence], schema: LabelSchema | None = None) -> datasets.Dataset:
    """Turn sentences into a ``datasets.Dataset`` with ``tokens``, ``ner_tags``, ``doc_id``."""
    if schema is None:
        schema = LabelSchema.from_tags(t for s in sentences for t in (s.tags or []))
    rows = {
        "tokens": [s.tokens for s in sentences],
        "ner_tags": [schema.encode(s.tags) if s.tags is not None else [0] * len(s.tokens) for s in sentences],
        "doc_id": [s.doc_id for s in sentences],
    }
    return datasets.Dataset.from_dict(rows, features=features_of(schema))


def read_conll(path: str | os.PathLike, schema: LabelSchema | None = None) -> datasets.Dataset:
    """Read a CoNLL file into a ``datasets.Dataset`` (tags normalised to IOB2).

    ``schema`` defaults to the CoNLL-2003 schema when every type in the file is one of
    PER/ORG/LOC/MISC, else to an IOB2 schema built from the types found.
    """
    sents = read_conll_sentences(path, schema=schema)
    return sentences_to_dataset(sents, schema or default_schema(sents))


def conll_lines(
    sentences: Sequence[Sequence[str]],
    *columns: Sequence[Sequence[str]],
    doc_ids: Sequence[int] | None = None,
) -> Iterator[str]:
    """The lines of a CoNLL file (without newlines): one word a line followed by its value in
    each of ``columns`` (the tag last, by convention), a blank line after each sentence.

    With ``doc_ids``, a ``-DOCSTART-`` line opens each new document, its columns filled as
    CoNLL-2003 fills them (``-X-``, and ``O`` in the last column).
    """
    prev_doc = None
    for i, words in enumerate(sentences):
        if doc_ids is not None and doc_ids[i] != prev_doc:
            yield " ".join([DOCSTART, *["-X-"] * (len(columns) - 1), *["O"][:len(columns)]])
            yield ""
            prev_doc = doc_ids[i]
        for j, w in enumerate(words):
            yield " ".join([w, *(c[i][j] for c in columns)])
        yield ""


def write_conll(
    path: str | os.PathLike,
    sentences: Sequence[Sequence[str]],
    *columns: Sequence[Sequence[str]],
    doc_ids: Sequence[int] | None = None,
) -> None:
    """Write words and their columns as CoNLL (see :func:`conll_lines`): ``write_conll(p, words,
    tags)``, or ``write_conll(p, words, pos, chunk, tags)``: the tag column last, where
    :func:`read_conll_sentences` reads it."""
    with open(path, "w", encoding="utf-8") as f:
        for line in conll_lines(sentences, *columns, doc_ids=doc_ids):
            f.write(line + "\n")


def schema_of(ds: datasets.Dataset) -> LabelSchema:
    """The label schema stored in a dataset's ``ner_tags`` ClassLabel feature."""
    feat = ds.features["ner_tags"]
    inner = getattr(feat, "feature", None) or feat
    return LabelSchema(tuple(inner.names))


def tag_names(ds: datasets.Dataset) -> list[list[str]]:
    """The tags of every sentence as strings."""
    names = schema_of(ds).names
    return [[names[i] for i in row] for row in ds["ner_tags"]]


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------

_SPLIT_FILES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


def load_local(folder: str | os.PathLike, schema: LabelSchema | None = None) -> datasets.DatasetDict:
    """Load ``train.txt``/``valid.txt``/``test.txt`` (those present) from a folder.

    All splits share one schema: the given one, CoNLL-2003's, or one built from the train split.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder (expected train.txt, valid.txt, test.txt)")
    found = {k: folder / v for k, v in _SPLIT_FILES.items() if (folder / v).is_file()}
    if not found:
        raise FileNotFoundError(f"{folder}: none of {', '.join(_SPLIT_FILES.values())} found")
    sents = {k: read_conll_sentences(p, schema=schema) for k, p in found.items()}
    schema = schema or default_schema(s for ss in sents.values() for s in ss)
    return datasets.DatasetDict({k: sentences_to_dataset(v, schema) for k, v in sents.items()})


def load_splits(train: str | os.PathLike, valid: str | os.PathLike | None = None,
                limit: int | None = None) -> tuple[datasets.Dataset, datasets.Dataset | None, LabelSchema]:
    """``(train, valid or None, schema)`` as ``nerbook train`` and the benchmarks read them.

    ``train`` is a CoNLL file, or a folder with ``train.txt`` (and ``valid.txt``, used unless
    ``valid`` names another dev file). The dev set is read with the training set's schema;
    ``limit`` keeps the first N training sentences. A missing file raises
    ``FileNotFoundError``, a bad one :class:`ConllFormatError`, each naming the path.
    """
    p = Path(train)
    if p.is_dir():
        splits = load_local(p)
        if "train" not in splits:
            raise FileNotFoundError(f"{p}: no train.txt")
        train_ds, valid_ds = splits["train"], splits.get("valid")
    elif p.is_file():
        train_ds, valid_ds = read_conll(p), None
    else:
        raise FileNotFoundError(f"{p}: no such file or folder")
    schema = schema_of(train_ds)
    if valid is not None:
        valid_ds = sentences_to_dataset(read_conll_sentences(valid, schema=schema), schema)
    if limit is not None:
        train_ds = train_ds.select(range(min(limit, len(train_ds))))
    return train_ds, valid_ds, schema


HUB_CONLL2003 = "lhoestq/conll2003"


def load_hub(name: str = HUB_CONLL2003, revision: str | None = None) -> datasets.DatasetDict:
    """CoNLL-2003 from the Hugging Face hub, as parquet (the ``full`` profile).

    ``name`` is a hub dataset id with the ``conll2003`` schema (``tokens``, ``ner_tags`` as a
    ClassLabel) or a local folder of parquet files with that schema. Splits are renamed
    ``train/valid/test``. The hub copy drops ``-DOCSTART-``, so every sentence becomes its own
    document (no document context). Offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``), the
    copy in the local hub cache (``$HF_HOME/hub``) is read, as a first online run left it;
    without one, a clear error says how to get the data instead.
    """
    source = name
    if not Path(name).exists() and hub_offline(datasets_too=True):
        snapshot = cached_snapshot(name, "dataset", revision, needed=("README.md", "*.parquet"))
        if snapshot is None:
            raise RuntimeError(
                f"cannot load {name!r} from the hub: offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) "
                f"and the hub cache {hub_cache_dir()} holds no complete copy. Use the offline profile "
                "(nerbook.synthetic.synthetic_conll) or a local folder of CoNLL files (nerbook.data.load_local), "
                "or unset the variables and run once with network access.")
        # Offline, datasets reads only its own arrow cache for a hub id, not the hub cache: read the
        # cached snapshot as the local folder it is (its README gives the splits and features).
        source, revision = str(snapshot), None
    try:
        raw = datasets.load_dataset(source, revision=revision)
    except Exception as e:  # connection problems surface as many exception types
        raise RuntimeError(f"cannot load {name!r} from the hub ({type(e).__name__}: {e}). "
                           "Offline? Use nerbook.data.load_local or nerbook.synthetic.synthetic_conll.") from e
    out = {}
    for split, ds in raw.items():
        key = {"validation": "valid"}.get(split, split)
        feat = ds.features["ner_tags"]
        inner = getattr(feat, "feature", None) or feat
        names = getattr(inner, "names", None) or list(CONLL2003.names)
        schema = LabelSchema(tuple(names))
        ds = ds.map(lambda _, i: {"doc_id": i}, with_indices=True,
                    remove_columns=[c for c in ds.column_names if c not in ("tokens", "ner_tags")])
        ds = ds.cast(features_of(schema))
        out[key] = ds.filter(lambda r: len(r["tokens"]) > 0)
    return datasets.DatasetDict(out)
