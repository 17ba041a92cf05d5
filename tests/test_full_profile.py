"""The ``full`` profile (bert-base-cased on CoNLL-2003 from the hub), run offline.

No machine here reaches the hub, so this builds a stand-in hub cache in a temporary
``HF_HOME``, with the layout huggingface_hub writes (``hub/models--bert-base-cased/{refs/main,
snapshots/<commit>/..., blobs/...}`` and ``hub/datasets--lhoestq--conll2003/...``), that holds

- under the id ``bert-base-cased``: a tiny BERT (``BertForMaskedLM``, random weights,
  safetensors) with a cased WordPiece tokenizer, in the files of the real repository
  (``config.json``, ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``,
  ``vocab.txt``), and ``trees/<commit>.json``, the listing of the whole repository (with
  ``pytorch_model.bin``, ``tf_model.h5``, ... that were not fetched) that transformers 5 leaves
  when it downloads a model through ``snapshot_download``;
- under ``lhoestq/conll2003``: a few hundred seeded synthetic sentences as the parquet files
  ``push_to_hub`` writes (``data/{split}-00000-of-00001.parquet``, splits train/validation/test,
  columns ``id, tokens, pos_tags, chunk_tags, ner_tags`` with the ClassLabel names of
  CoNLL-2003) and a ``README.md`` whose YAML gives the features, splits and data files.

Then the chapters with a full-profile branch (``ner_data``, ``ner_training``) are executed with
``NERBOOK_PROFILE=full HF_HOME=<stand-in> HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1``, as a Colab
user with a warm cache runs them, and their printed values are checked. The notebooks are not
written back.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
MODEL_ID = "bert-base-cased"
DATASET_ID = "lhoestq/conll2003"
SPLITS = {"train": 240, "validation": 80, "test": 80}   # a few hundred sentences
HIDDEN = 64
CELL_TIMEOUT = 120  # seconds per cell; the longest (training) takes a few seconds here

# The ClassLabel names of CoNLL-2003 on the hub (conll2003 / lhoestq/conll2003).
POS_NAMES = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN",
             "JJ", "JJR", "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS",
             "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN",
             "VBP", "VBZ", "WDT", "WP", "WP$", "WRB"]
CHUNK_NAMES = ["O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ",
               "B-LST", "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR",
               "B-UCP", "I-UCP", "B-VP", "I-VP"]
LFS_SUFFIXES = (".safetensors", ".parquet")  # stored with git LFS on the hub: blob named by sha256
# Files of the real bert-base-cased repository that from_pretrained does not fetch (sizes made up).
MODEL_NOT_DOWNLOADED = {".gitattributes": 491, "README.md": 8862, "pytorch_model.bin": 435779157,
                        "tf_model.h5": 526681800, "flax_model.msgpack": 433248231,
                        "rust_model.ot": 508045749, "model.onnx": 433530981}


# --------------------------------------------------------------------------------------
# The stand-in hub cache
# --------------------------------------------------------------------------------------


def _etag(path: str, data: bytes) -> str:
    """The name huggingface_hub gives a blob: sha256 for LFS files, else the git blob sha1."""
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_cached_repo(hub_cache: Path, repo_id: str, repo_type: str, files: dict[str, bytes],
                      not_downloaded: dict[str, int] | None = None) -> str:
    """Write ``files`` as huggingface_hub caches a download of ``repo_id`` at ``main``.

    ``<hub_cache>/<type>s--<org>--<name>/blobs/<etag>`` holds the contents,
    ``snapshots/<commit>/<path>`` are relative symlinks to the blobs and ``refs/main`` names the
    commit. With ``not_downloaded`` (path -> size: files of the repository that were not
    fetched), ``trees/<commit>.json`` also lists the whole repository, as ``snapshot_download``
    leaves it online (transformers 5 calls it to fetch a model's files). Returns the (made-up,
    40-hex) commit hash.
    """
    from huggingface_hub.file_download import repo_folder_name

    repo = hub_cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    listing = "".join(f"{p}\0{_etag(p, d)}\n" for p, d in sorted(files.items()))
    commit = hashlib.sha1(f"{repo_type}/{repo_id}\n{listing}".encode()).hexdigest()
    if not_downloaded is not None:
        tree = {}
        for path, size in {**{p: len(d) for p, d in files.items()}, **not_downloaded}.items():
            data = files.get(path, path.encode())  # made-up ids for the files not here
            tree[path] = {"size": size, "blob_id": _etag("", data)}
            if path.endswith(LFS_SUFFIXES + (".bin", ".h5", ".msgpack", ".ot", ".onnx")):
                tree[path].update(lfs_sha256=hashlib.sha256(data).hexdigest(), lfs_size=size)
        (repo / "trees").mkdir(parents=True)
        (repo / "trees" / f"{commit}.json").write_text(
            json.dumps({"format_version": 1, "files": dict(sorted(tree.items()))}, indent=1))
    for path, data in files.items():
        blob = repo / "blobs" / _etag(path, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)  # no newline, as huggingface_hub writes it
    return commit


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def standin_model_files(tmp: Path) -> tuple[dict[str, bytes], int]:
    """The files of a tiny cased ``bert-base-cased``, and its number of parameters."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from nerbook.model import train_wordpiece
    from nerbook.synthetic import synthetic_sentences

    corpus = [s.tokens for s in synthetic_sentences(2000, "train", seed=7)]
    tokenizer = train_wordpiece(corpus, vocab_size=1000, lowercase=False)
    # Not nerbook.model.tiny_config: that marks the model ``nerbook_tiny``, which nerbook.train
    # treats as a model to train from scratch; this one stands in for a pretrained checkpoint.
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id, architectures=["BertForMaskedLM"])
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    out = tmp / "bert-base-cased"
    model.save_pretrained(out, safe_serialization=True)
    files = {k: v for k, v in _folder_files(out).items() if k in ("config.json", "model.safetensors")}
    # The tokenizer files of the real repository (its tokenizer_config.json, verbatim).
    files["tokenizer.json"] = tokenizer.backend_tokenizer.to_str().encode()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    files["vocab.txt"] = "".join(f"{piece}\n" for piece, _ in vocab).encode()
    files["tokenizer_config.json"] = json.dumps({"do_lower_case": False, "model_max_length": 512}).encode()
    return files, sum(p.numel() for p in model.bert.parameters())


def standin_dataset_files(tmp: Path) -> dict[str, bytes]:
    """``README.md`` and ``data/*.parquet`` of ``lhoestq/conll2003``, with synthetic sentences."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from nerbook.data import CONLL2003
    from nerbook.synthetic import synthetic_conll

    synth = synthetic_conll(n_train=SPLITS["train"], n_valid=SPLITS["validation"],
                            n_test=SPLITS["test"], seed=3)
    features = datasets.Features({
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "pos_tags": datasets.List(datasets.ClassLabel(names=POS_NAMES)),
        "chunk_tags": datasets.List(datasets.ClassLabel(names=CHUNK_NAMES)),
        "ner_tags": datasets.List(datasets.ClassLabel(names=list(CONLL2003.names))),
    })
    nnp, nn = POS_NAMES.index("NNP"), POS_NAMES.index("NN")
    b_np, i_np = CHUNK_NAMES.index("B-NP"), CHUNK_NAMES.index("I-NP")
    files: dict[str, bytes] = {}
    info = datasets.DatasetInfo(features=features, splits=datasets.SplitDict(), download_size=0, dataset_size=0)
    for split, ours in zip(SPLITS, ("train", "valid", "test")):
        src = synth[ours]
        assert len(src) == SPLITS[split]
        names = src.features["ner_tags"].feature.names
        tags = [[CONLL2003.label2id[names[t]] for t in row] for row in src["ner_tags"]]
        ds = datasets.Dataset.from_dict({
            "id": [str(i) for i in range(len(src))],
            "tokens": src["tokens"],
            "pos_tags": [[nnp if t else nn for t in row] for row in tags],
            "chunk_tags": [[b_np if i == 0 else i_np for i in range(len(row))] for row in tags],
            "ner_tags": tags,
        }, features=features, split=split)
        path = tmp / f"{split}.parquet"
        ds.to_parquet(str(path))
        files[f"data/{split}-00000-of-00001.parquet"] = path.read_bytes()
        info.splits.add(datasets.SplitInfo(name=split, num_bytes=ds.data.nbytes, num_examples=len(ds)))
        info.download_size += path.stat().st_size
        info.dataset_size += ds.data.nbytes
    # The card push_to_hub writes: features and splits (dataset_info) and data files (configs).
    card_data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs({"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in SPLITS]}}
                    ).to_dataset_card_data(card_data)
    files["README.md"] = str(DatasetCard(f"---\n{card_data}\n---\n# CoNLL-2003 (offline stand-in)\n")).encode()
    return files


def build_hub_standin(hf_home: Path, tmp: Path) -> dict:
    """Fill ``hf_home/hub`` with the stand-ins; return what the checks need to know."""
    model_files, n_params = standin_model_files(tmp)
    dataset_files = standin_dataset_files(tmp)
    hub = hf_home / "hub"
    hub.mkdir(parents=True)
    return {
        "hf_home": hf_home,
        "model_commit": write_cached_repo(hub, MODEL_ID, "model", model_files, MODEL_NOT_DOWNLOADED),
        "dataset_commit": write_cached_repo(hub, DATASET_ID, "dataset", dataset_files),
        "encoder_params": n_params,
    }


@pytest.fixture(scope="module")
def hub_standin(tmp_path_factory):
    return build_hub_standin(tmp_path_factory.mktemp("hf_home"), tmp_path_factory.mktemp("standin_src"))


@pytest.fixture
def offline_standin_env(hub_standin, monkeypatch):
    """This process, offline, with ``HF_HOME`` pointing at the stand-in."""
    import datasets

    monkeypatch.setenv("HF_HOME", str(hub_standin["hf_home"]))
    # datasets read HF_HOME at import: keep its arrow files with the stand-in, out of ~/.cache
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_standin["hf_home"] / "datasets")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return hub_standin


# --------------------------------------------------------------------------------------
# The stand-in as huggingface_hub sees it, and nerbook's loaders reading it offline
# --------------------------------------------------------------------------------------


def test_standin_is_a_valid_hub_cache(hub_standin):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    hub = hub_standin["hf_home"] / "hub"
    info = scan_cache_dir(hub)
    assert not info.warnings, info.warnings
    repos = {(r.repo_type, r.repo_id): r for r in info.repos}
    assert set(repos) == {("model", MODEL_ID), ("dataset", DATASET_ID)}
    model_rev, = repos["model", MODEL_ID].revisions
    assert model_rev.commit_hash == hub_standin["model_commit"] and model_rev.refs == {"main"}
    assert {f.file_name for f in model_rev.files} == {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"}
    data_rev, = repos["dataset", DATASET_ID].revisions
    assert {f.file_path.relative_to(data_rev.snapshot_path).as_posix() for f in data_rev.files} == {
        "README.md", *(f"data/{s}-00000-of-00001.parquet" for s in SPLITS)}
    cached = try_to_load_from_cache(MODEL_ID, "config.json", cache_dir=hub)
    assert cached == str(hub / f"models--{MODEL_ID}" / "snapshots" / hub_standin["model_commit"] / "config.json")


def test_load_hub_reads_the_hub_cache_offline(offline_standin_env):
    from nerbook.data import CONLL2003, load_hub, schema_of

    dd = load_hub()
    assert {k: len(v) for k, v in dd.items()} == {"train": SPLITS["train"], "valid": SPLITS["validation"],
                                                  "test": SPLITS["test"]}
    assert dd["train"].column_names == ["tokens", "ner_tags", "doc_id"]
    assert schema_of(dd["train"]) == CONLL2003


def test_resolve_model_path_reads_the_hub_cache_offline(offline_standin_env):
    from nerbook.data import CONLL2003
    from nerbook.model import count_parameters, load_model, resolve_model_path

    path = Path(resolve_model_path(MODEL_ID))
    assert path == offline_standin_env["hf_home"] / "hub" / f"models--{MODEL_ID}" / "snapshots" / \
        offline_standin_env["model_commit"]
    model, tok = load_model(MODEL_ID, CONLL2003)
    assert count_parameters(model.bert) == offline_standin_env["encoder_params"]
    assert model.classifier.weight.shape == (len(CONLL2003), HIDDEN)
    assert any(c.isupper() for c in "".join(tok.tokenize("Paris Weber")))  # cased, like bert-base-cased


def test_offline_hub_id_missing_from_the_cache_is_a_clear_error(offline_standin_env):
    from nerbook.model import ModelLoadError, resolve_model_path

    with pytest.raises(ModelLoadError, match="offline") as err:
        resolve_model_path("dslim/bert-base-NER")
    assert str(offline_standin_env["hf_home"] / "hub") in str(err.value)


def test_incomplete_cache_is_a_clear_error_offline(tmp_path, monkeypatch):
    """Where the cache's file list names a needed file that is not there, nothing is half-read."""
    from nerbook.data import load_hub
    from nerbook.model import ModelLoadError, resolve_model_path

    hub = tmp_path / "hub"
    write_cached_repo(hub, MODEL_ID, "model", {"vocab.txt": b"[PAD]\n"}, {"config.json": 570})
    write_cached_repo(hub, DATASET_ID, "dataset", {"README.md": b"---\n---\n"},
                      {"data/train-00000-of-00001.parquet": 1000})
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline.*does not hold it"):
        resolve_model_path(MODEL_ID)
    with pytest.raises(RuntimeError, match="offline.*holds no complete copy"):
        load_hub(DATASET_ID)


# --------------------------------------------------------------------------------------
# The chapters, executed with the full profile
# --------------------------------------------------------------------------------------


CHAPTERS = ("ner_data", "ner_training")  # the chapters with a full-profile branch
EXPECTED_SIZES = {"train": SPLITS["train"], "valid": SPLITS["validation"], "test": SPLITS["test"]}
PROFILE_LINE = f"profile: full (model={MODEL_ID}, data=conll2003)"


@dataclass
class ChapterRun:
    seconds: float
    nb: object = field(repr=False)
    error: BaseException | None = field(default=None, repr=False)


async def _execute(path: Path) -> ChapterRun:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)  # executed in memory, never written back
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        await client.async_execute()
        error = None
    except Exception as e:  # CellExecutionError, DeadKernelError, timeouts: reported by the test
        error = e
    return ChapterRun(time.perf_counter() - t0, nb, error)


async def _execute_all(paths: list[Path]) -> list[ChapterRun]:
    return await asyncio.gather(*(_execute(p) for p in paths))


@pytest.fixture(scope="module")
def full_runs(hub_standin) -> dict[str, ChapterRun]:
    """Both chapters, executed at the same time, each in its own kernel, with the full profile.

    The kernels inherit this environment: the full profile, offline, ``HF_HOME`` at the
    stand-in, the working directory ``book/``.
    """
    with pytest.MonkeyPatch.context() as mp:
        for var in ("NERBOOK_DATA", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_OFFLINE"):
            mp.delenv(var, raising=False)
        mp.setenv("NERBOOK_PROFILE", "full")
        mp.setenv("HF_HOME", str(hub_standin["hf_home"]))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        mp.setenv("MPLBACKEND", "Agg")
        # Two kernels share a small CPU: one OpenMP thread each. With torch's default (one per
        # core) the threads of the two kernels contend and training runs about 7x slower here.
        mp.setenv("OMP_NUM_THREADS", "1")
        t0 = time.perf_counter()
        runs = asyncio.run(_execute_all([BOOK / f"{c}.ipynb" for c in CHAPTERS]))
    each = ", ".join(f"{c} {r.seconds:.1f} s" for c, r in zip(CHAPTERS, runs))
    print(f"\nfull profile: {each} ({time.perf_counter() - t0:.1f} s together)")
    return dict(zip(CHAPTERS, runs))


def _run(full_runs: dict, chapter: str):
    run = full_runs[chapter]
    if run.error is not None:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(run.error))  # the traceback's colours
        pytest.fail(f"{chapter}.ipynb failed with the full profile:\n{message}", pytrace=False)
    return run.nb


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _cell(nb, snippet: str):
    """The one code cell whose source contains ``snippet``."""
    found = [c for c in _code_cells(nb) if snippet in c.source]
    assert len(found) == 1, f"{len(found)} cells contain {snippet!r}"
    return found[0]


def _sizes(text: str) -> dict:
    line = next(ln for ln in text.splitlines() if ln.startswith("{") and ln.endswith("sentences"))
    return ast.literal_eval(line[: -len("sentences")].strip())


def _unit_values(pattern: str, text: str) -> list[float]:
    """Every number ``pattern``'s groups match in ``text``; each must be in [0, 1]."""
    values = [float(v) for m in re.finditer(pattern, text) for v in m.groups()]
    assert values, f"no match for {pattern!r} in:\n{text}"
    assert all(0.0 <= v <= 1.0 for v in values), values
    return values


FULL_BRANCH = re.compile(r'profile\.name == "full"|profile\.(model|dataset)\b|load_dataset_for\(profile')


def test_every_chapter_with_a_full_branch_is_run_here():
    """A chapter that branches on the full profile must be added to CHAPTERS."""
    with_branch = set()
    for path in sorted(BOOK.glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if FULL_BRANCH.search(code):
            with_branch.add(path.stem)
    assert with_branch == set(CHAPTERS)


def test_ner_data_runs_with_the_full_profile(full_runs):
    nb = _run(full_runs, "ner_data")
    assert PROFILE_LINE in _stdout(_code_cells(nb)[0])
    data = _stdout(_cell(nb, "data = load_hub()"))
    assert _sizes(data) == EXPECTED_SIZES
    assert "columns: ['tokens', 'ner_tags', 'doc_id']" in data
    assert "tags: ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC']" in data
    assert _stdout(_cell(nb, "entities = Counter(")).startswith(f"{SPLITS['train']} sentences, ")
    # The tokenizer is the stand-in's, from the hub cache: cased, [CLS] ... [SEP].
    subwords = ast.literal_eval(_stdout(_cell(nb, "resolve_model_path(profile.model)")).splitlines()[-1])
    assert subwords[0] == "[CLS]" and subwords[-1] == "[SEP]"
    assert any(ch.isupper() for piece in subwords[1:-1] for ch in piece), subwords
    windows = _stdout(_cell(nb, "train_windows = encode_windows("))
    assert f"{SPLITS['train']} sentences -> " in windows
    assert "same labels as align_word_labels: True" in windows


def test_ner_training_runs_with_the_full_profile(full_runs, hub_standin):
    nb = _run(full_runs, "ner_training")
    assert PROFILE_LINE in _stdout(_code_cells(nb)[0])
    setup = _stdout(_cell(nb, "data = load_hub()"))
    assert _sizes(setup) == EXPECTED_SIZES
    assert "TrainConfig(epochs=3, batch_size=32, lr=5e-05," in setup and "mixed_precision='bf16'" in setup
    trained = _stdout(_cell(nb, "result = train(model, tokenizer"))
    n_params = hub_standin["encoder_params"] + 9 * HIDDEN + 9  # the stand-in's encoder + the new head
    assert f"{MODEL_ID}: {n_params / 1e6:.1f}M parameters, classifier (9, {HIDDEN})" in trained
    assert len(_unit_values(r"epoch \d+: train loss [\d.]+, dev entity F1 ([\d.]+)", trained)) == 3
    _unit_values(r"best dev F1 ([\d.]+)", trained)
    scores = _stdout(_cell(nb, "scores = entity_scores(gold, pred)"))
    overall = next(ln for ln in scores.splitlines() if ln.startswith("overall"))
    assert len(_unit_values(r"^overall +([\d.]+) +([\d.]+) +([\d.]+) +\d+$", overall)) == 3
    assert "one tag per word for every test sentence: True" in _stdout(_cell(nb, "one tag per word"))
    compared = _stdout(_cell(nb, "trainer.train()"))
    assert len(_unit_values(r"nerbook.train ([\d.]+), Trainer ([\d.]+)", compared)) == 2
    same = _stdout(_cell(nb, "same number of optimizer steps"))
    assert "same initial classifier weights: True" in same and "same number of optimizer steps: True" in same
    reloaded = _stdout(_cell(nb, "reloaded = Tagger.from_checkpoint"))
    assert "window settings restored: True" in reloaded and "same tags after reloading: True" in reloaded
