"""Shared fixtures: small synthetic CoNLL data and a tiny trained checkpoint (offline, seeded);
and the order in which the two test workers take the work."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _share_the_cores() -> None:
    """Give each xdist worker's torch its share of the cores (one each for two workers on two).

    By default every worker's torch starts as many threads as there are cores, so two workers
    ask for twice the cores there are. The unit tests train tiny models, whose small matrix
    products gain little from a second thread: measured, the held-out-names test ran in 41 s
    on one thread and 46 s on two, alone on this 2-core machine. Only this process: the
    notebooks' kernels and the commands the tests start keep torch's default.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores()

#: Test modules with tests of tens of seconds each (``pytest --durations``): queued right after
#: the notebooks, before the many quick modules.
SLOW_MODULES = ("test_ddp.py", "test_resume.py", "test_train.py", "test_full_profile.py", "test_time_limits.py",
                "test_serve.py", "test_bench.py", "test_export.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest work first: every notebook, then the slow modules, then the rest (a stable sort).

    The two xdist workers take whole files (``--dist loadscope``, with ``--no-loadscope-reorder``
    so that this order is kept) as they become free; when the long files come last, one worker
    ends the run alone on a notebook of a minute while the other waits.
    """
    def rank(item: pytest.Item) -> int:
        if item.path.suffix == ".ipynb":
            return 0
        return 1 if item.path.name in SLOW_MODULES else 2

    items.sort(key=rank)


@pytest.fixture(scope="session")
def synth():
    from nerbook.synthetic import synthetic_conll

    return synthetic_conll(n_train=600, n_valid=150, n_test=150, seed=0)


@pytest.fixture(scope="session")
def conll_dir(tmp_path_factory, synth):
    """A folder with train.txt/valid.txt/test.txt written from the synthetic data."""
    from nerbook.data import tag_names, write_conll

    d = tmp_path_factory.mktemp("conll")
    for split, ds in synth.items():
        write_conll(d / f"{split}.txt", ds["tokens"], tag_names(ds), doc_ids=ds["doc_id"])
    return d


@pytest.fixture(scope="session")
def tiny_tokenizer(synth):
    from nerbook.model import train_wordpiece

    return train_wordpiece(synth["train"]["tokens"])


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, synth):
    """A tiny BERT trained briefly on the synthetic data, saved as a nerbook checkpoint."""
    from nerbook.data import schema_of
    from nerbook.model import load_model
    from nerbook.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run")
    model, tok = load_model("tiny", schema_of(synth["train"]), texts=synth["train"]["tokens"])
    train(model, tok, synth["train"], synth["valid"],
          TrainConfig(epochs=2, batch_size=32, lr=3e-3, progress=False, max_length=64, stride=16),
          out_dir=out)
    return out / "best"


@pytest.fixture
def cut_after_first_save(monkeypatch):
    """``cut(run)`` calls ``run()`` and stops it right after ``nerbook.train`` saves its first
    ``OUT/last`` state (the end of epoch 1), as a kill would; the tests then resume from it."""
    import nerbook.train as T

    class Stop(Exception):
        pass

    real_save = T.save_state

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Stop

    def cut(run) -> None:
        with monkeypatch.context() as m:
            m.setattr(T, "save_state", save_then_stop)
            with pytest.raises(Stop):
                run()

    return cut
