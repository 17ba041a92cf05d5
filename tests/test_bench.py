"""nerbook bench: the plumbing (JSON shape, contenders, ratios, token counts, agreement) with the
tiny model on small synthetic CoNLL files. No timing is asserted: timings belong to the
committed records (records/bench-*.json), measured on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nerbook.bench import (
    TRAIN_CONTENDERS,
    MemoryMeter,
    TokenCounter,
    goal_by_repeat,
    model_flops,
    pipeline_word_tags,
    repeat_ratios,
    time_to_f1_rows,
    until_table,
)
from nerbook.cli import main

N_TRAIN = 24


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from nerbook.data import tag_names, write_conll
    from nerbook.synthetic import synthetic_conll

    ds = synthetic_conll(N_TRAIN, 16, 0, seed=0, long_fraction=0.0)
    d = tmp_path_factory.mktemp("bench_data")
    for split in ("train", "valid"):
        write_conll(d / f"{split}.txt", ds[split]["tokens"], tag_names(ds[split]), doc_ids=ds[split]["doc_id"])
    return d


@pytest.fixture(scope="module")
def tiny_tokenizer(files):
    from nerbook.data import read_conll
    from nerbook.model import train_wordpiece

    return train_wordpiece(read_conll(files / "train.txt")["tokens"])


@pytest.fixture(scope="module")
def tiny_ckpt(files, tmp_path_factory):
    """A tiny model trained for one short epoch: enough to find some entities."""
    from nerbook.data import read_conll, schema_of
    from nerbook.model import load_model, save_checkpoint
    from nerbook.train import TrainConfig, train

    ds = read_conll(files / "train.txt")
    model, tok = load_model("tiny", schema_of(ds), texts=ds["tokens"])
    res = train(model, tok, ds, None, TrainConfig(epochs=2, batch_size=8, lr=3e-3, progress=False))
    return save_checkpoint(res.model, tok, tmp_path_factory.mktemp("bench_ckpt"), {"max_length": 128, "stride": 32})


@pytest.fixture(autouse=True)
def brief_rate_samples(monkeypatch):
    """``bench train`` samples the 1024 x 1024 matrix-product rate before the first run and after
    every run, 0.3 s per dtype (about 0.7 s a sample, 3-4 s a test here); these tests check the
    plumbing, so each sample runs for 0.02 s per dtype. ``test_matmul_rate_counts_two_n_cubed_per_product``
    checks the arithmetic, ``test_bench_train_samples_the_rates_around_every_run`` the bracketing."""
    from nerbook.bench import measure, training

    monkeypatch.setattr(training, "matmul_rates", lambda device: measure.matmul_rates(device, min_seconds=0.02))


def _json(capsys, argv) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_train_json(files, tmp_path, capsys):
    """All contenders, in this process (fast); the JSON shape, ratios and token counts."""
    record = tmp_path / "bench.json"
    r = _json(capsys, ["bench", "train", "--train", str(files / "train.txt"), "--valid", str(files / "valid.txt"),
                       "--model", "tiny", "--limit", str(N_TRAIN), "--batch-size", "8", "--epochs", "1",
                       "--against", ",".join(TRAIN_CONTENDERS), "--threads", "1", "--no-isolate",
                       "--json", "--record", str(record)])
    assert set(r) == {"contenders", "setup"}
    c = r["contenders"]
    assert list(c) == ["nerbook", *TRAIN_CONTENDERS]
    for entry in c.values():
        for key in ("seconds", "tokens_per_s", "computed_tokens", "peak_mem_mb", "dev_f1", "ratio"):
            assert key in entry
        assert entry["seconds"] > 0 and entry["tokens_per_s"] > 0
        assert 0.0 <= entry["dev_f1"] <= 1.0
        assert entry["peak_mem_mb"] is None  # not each run's own without isolation
        assert entry["computed_tokens"] >= entry["real_tokens"] > 0
    assert c["seed"]["computed_tokens"] == N_TRAIN * 128  # every sentence padded to 128
    assert c["nerbook"]["computed_tokens"] < c["trainer"]["computed_tokens"] < c["seed"]["computed_tokens"]
    assert r["setup"]["n_train"] == N_TRAIN and r["setup"]["isolated"] is False
    rec = json.loads(record.read_text())
    assert rec["kind"] == "bench" and rec["result"]["contenders"].keys() == c.keys()
    from nerbook.records import missing_provenance

    assert missing_provenance(rec) == []


def test_bench_train_isolated_repeats(files, capsys):
    """Each run in a fresh process (the default): memory measured per run; repeats interleaved."""
    r = _json(capsys, ["bench", "train", "--train", str(files / "train.txt"), "--model", "tiny",
                       "--limit", "16", "--batch-size", "8", "--against", "seed", "--repeat", "2",
                       "--threads", "1", "--no-eval", "--json"])
    c = r["contenders"]
    assert list(c) == ["nerbook", "seed"] and r["setup"]["isolated"] is True
    assert all(len(e["runs"]) == 2 for e in c.values())
    assert c["seed"]["seconds"] == min(run["seconds"] for run in c["seed"]["runs"])  # best of the repeats
    assert c["seed"]["computed_tokens"] == 16 * 128
    assert all(e["peak_mem_mb"] is not None and e["peak_mem_mb"] >= 0 for e in c.values())
    assert c["nerbook"]["dev_f1"] is None


def test_bench_predict_json(tiny_ckpt, files, capsys):
    r = _json(capsys, ["bench", "predict", "--model", str(tiny_ckpt), "--data", str(files / "valid.txt"),
                       "--against", "pipeline,pipeline-batched", "--no-isolate", "--json"])
    c = r["contenders"]
    assert list(c) == ["nerbook", "pipeline", "pipeline-batched"]
    for entry in c.values():
        assert 0.0 <= entry["agreement"] <= 1.0
        assert 0.0 <= entry["agreement_same_words"] <= 1.0 and entry["spans_same_words"] >= 0
        assert 0.0 <= entry["f1"] <= 1.0
        assert entry["sentences_per_s"] > 0
    assert r["setup"]["n_sentences"] == 16
    assert r["setup"]["model_trained_with"] == {"label_all_subwords": False, "doc_context": False}


def test_summarise_train_by_hand():
    """Two contenders, two repeats each: best-of times, ratios, throughput, padding, mean F1 and
    MFU worked out by hand."""
    from nerbook.bench.training import summarise

    def run(seconds, f1, real=800, computed=1000, mem=None):
        return {"seconds": seconds, "dev_f1": f1, "real_tokens": real, "computed_tokens": computed,
                "model_flops": 4e12, "peak_mem_mb": mem, "train_loss": 0.5}

    runs = {"nerbook": [run(4.0, 0.80, mem=100.0), run(2.0, 0.90, mem=120.0)],
            "seed": [run(10.0, 0.70, computed=3200), run(12.0, 0.60, computed=3200)]}
    out = summarise(runs, peak=2.0, rates={"fp32": 1.0, "bf16": 4.0})  # a 2 TFLOP/s card; measured rates
    assert out["nerbook"]["seconds"] == 2.0 and out["seed"]["seconds"] == 10.0  # the faster repeat
    assert out["nerbook"]["ratio"] == 1.0 and out["seed"]["ratio"] == 5.0      # 10 s / 2 s
    assert out["nerbook"]["tokens_per_s"] == 400.0                             # 800 real tokens / 2 s
    assert out["seed"]["padding_share"] == pytest.approx(0.75)                 # 1 - 800 / 3200
    assert out["nerbook"]["dev_f1"] == pytest.approx(0.85)                     # mean over repeats
    assert out["nerbook"]["peak_mem_mb"] == 120.0 and out["seed"]["peak_mem_mb"] is None
    assert out["nerbook"]["mfu"] == pytest.approx(1.0)                         # 4 TFLOP in 2 s on 2 TFLOP/s
    assert out["seed"]["mfu"] == pytest.approx(0.2)
    assert out["nerbook"]["mfu_fp32"] == pytest.approx(2.0)                    # 2 TFLOP/s over 1 TFLOP/s
    assert out["nerbook"]["mfu_bf16"] == pytest.approx(0.5) and out["seed"]["mfu_bf16"] == pytest.approx(0.1)


def test_summarise_train_mfu_against_each_runs_own_rates():
    """A run with the matrix-product rates sampled just around it is measured against those, not
    against the whole benchmark's."""
    from nerbook.bench.training import summarise

    def run(seconds, bf16):
        return {"seconds": seconds, "dev_f1": None, "real_tokens": 800, "computed_tokens": 1000,
                "model_flops": 4e12, "peak_mem_mb": None, "matmul_tflops": {"fp32": 1.0, "bf16": bf16}}

    out = summarise({"nerbook": [run(2.0, 8.0), run(4.0, 2.0)]}, rates={"fp32": 1.0, "bf16": 8.0})
    entry = out["nerbook"]
    assert entry["mfu_bf16"] == pytest.approx(0.25) and entry["matmul_tflops"]["bf16"] == 8.0  # 2 of 8 TFLOP/s
    assert [r["mfu_bf16"] for r in entry["runs"]] == pytest.approx([0.25, 0.5])  # 1 of 2 TFLOP/s in the slow one


def test_bench_train_samples_the_rates_around_every_run(files, capsys, monkeypatch):
    """One sample before the first run and one after each: a run's rates are the faster of its two
    neighbours, the setup's the fastest of all."""
    from nerbook.bench import training

    values = iter([3.0, 1.0, 2.0, 5.0, 4.0])  # before, then after each of 4 runs
    monkeypatch.setattr(training, "matmul_rates", lambda device: {"bf16": next(values)})
    r = _json(capsys, ["bench", "train", "--train", str(files / "train.txt"), "--model", "tiny",
                       "--limit", "16", "--batch-size", "8", "--against", "seed", "--repeat", "2",
                       "--threads", "1", "--no-eval", "--no-isolate", "--json"])
    assert r["setup"]["matmul_samples"] == [{"bf16": v} for v in (3.0, 1.0, 2.0, 5.0, 4.0)]
    assert r["setup"]["matmul_tflops"] == {"bf16": 5.0}
    # runs in order: nerbook between samples 3 and 1, seed 1 and 2, nerbook 2 and 5, seed 5 and 4
    for name, brackets in (("nerbook", [3.0, 5.0]), ("seed", [2.0, 5.0])):
        entry = r["contenders"][name]
        for run, rate in zip(entry["runs"], brackets):  # MFU x rate x seconds: the run's model TFLOP
            assert run["mfu_bf16"] * rate * run["seconds"] == pytest.approx(entry["model_tflop"])
        best = min(range(2), key=lambda i: entry["runs"][i]["seconds"])
        assert entry["matmul_tflops"] == {"bf16": brackets[best]}
        assert entry["mfu_bf16"] == pytest.approx(entry["runs"][best]["mfu_bf16"])


def test_matmul_rate_counts_two_n_cubed_per_product(monkeypatch):
    """With a clock that advances 0.1 s per reading, 0.3 s take three timed products of 2 x 64^3
    FLOPs each (the clock is read once at the start and once after each product)."""
    import itertools

    from nerbook.bench import measure

    ticks = itertools.count()
    monkeypatch.setattr(measure, "perf_counter", lambda: next(ticks) / 10)
    rate = measure.matmul_tflops("cpu", "fp32", size=64, min_seconds=0.3)
    assert rate == pytest.approx(3 * 2 * 64**3 / 0.3 / 1e12)
    assert set(measure.matmul_rates("cpu")) == {"fp32", "bf16"}


def test_summarise_predict_by_hand():
    """Agreement (Jaccard of entity spans), agreement on comparable spans, F1 and ratio by hand."""
    from nerbook.bench.prediction import agreement, summarise_predict
    from nerbook.data import Sentence

    assert agreement({1, 2}, {2, 3}) == pytest.approx(1 / 3) and agreement(set(), set()) == 1.0
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    sents = [Sentence(["Ann", "Lee", "in", "Rome"], gold[0], 0, 1), Sentence(["Acme", "rose"], gold[1], 1, 6)]
    ours = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]    # all three gold entities
    theirs = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "O"]]      # "Ann" alone: a boundary error
    runs = {"nerbook": [{"seconds": 1.0, "tags": ours, "peak_mem_mb": None}],
            "pipeline": [{"seconds": 3.0, "tags": theirs, "peak_mem_mb": None},
                         {"seconds": 2.5, "tags": theirs, "peak_mem_mb": None}]}
    not_sentence_0 = lambda span: span[0] != 0  # noqa: E731 - only sentence 1's words are comparable
    out = summarise_predict(runs, sents, not_sentence_0)
    p = out["pipeline"]
    # spans: ours {PER 0-1, LOC 3, ORG (1) 0}, theirs {PER 0-0, LOC 3, ORG (1) 0}: 2 shared of 4
    assert p["agreement"] == 0.5 and out["nerbook"]["agreement"] == 1.0
    assert p["agreement_same_words"] == 1.0 and p["spans_same_words"] == 1  # only ORG in sentence 1
    assert p["f1"] == pytest.approx(2 / 3) and out["nerbook"]["f1"] == 1.0  # P = R = 2/3
    assert p["seconds"] == 2.5 and p["ratio"] == 2.5 and p["sentences_per_s"] == pytest.approx(0.8)


def test_single_piece_words_and_the_spans_compared(tiny_tokenizer):
    from nerbook.bench import same_words, single_piece_words

    single = single_piece_words(tiny_tokenizer, [["U.S.", "troops", "in", "Kabul", "."], ["Hewlett-Packard", "said"]])
    assert single == [[False, True, True, True, True], [False, True]]
    same = same_words(single)
    assert same((0, "LOC", 3, 3))          # "Kabul": it and its neighbours are whole words
    assert not same((0, "LOC", 0, 0))      # "U.S." is four pipeline words
    assert not same((0, "MISC", 1, 1))     # next to "U.S.": a pipeline span may run into it
    assert not same((1, "ORG", 0, 0))


def test_unknown_contender_is_a_one_line_error(files, capsys):
    assert main(["bench", "train", "--train", str(files / "train.txt"), "--model", "tiny",
                 "--against", "deepspeed"]) == 2
    assert "unknown contender" in capsys.readouterr().err


def test_pipeline_spans_back_to_words():
    words = ["John", "Smith", "visited", "U.S.", "-", "based", "Acme", "Acme"]
    text = " ".join(words)
    at = {w: text.index(w) for w in ("John", "U.S.", "Acme")}
    ents = [{"entity_group": "PER", "start": 0, "end": 10},  # John Smith
            {"entity_group": "LOC", "start": at["U.S."], "end": at["U.S."] + 1},  # only "u" of U.S.
            {"entity_group": "ORG", "start": at["U.S."] + 2, "end": at["U.S."] + 3},  # inside a word: ignored
            {"entity_group": "ORG", "start": at["Acme"], "end": at["Acme"] + 4},
            {"entity_group": "ORG", "start": at["Acme"] + 5, "end": at["Acme"] + 9}]  # a second entity
    assert pipeline_word_tags(words, ents) == ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-ORG", "B-ORG"]
    assert pipeline_word_tags(["a", "b"], []) == ["O", "O"]
    # the pipeline cuts "P." into "p" and ".": "p" and ". simmons" are one entity on words
    words = ["(", "P.", "Simmons", "4-38", ")"]
    ents = [{"entity_group": "PER", "start": 2, "end": 3}, {"entity_group": "PER", "start": 3, "end": 12}]
    assert pipeline_word_tags(words, ents) == ["O", "B-PER", "I-PER", "O", "O"]


def test_token_counter_padded_and_packed(tiny_tokenizer):
    from transformers import AutoModelForTokenClassification

    from nerbook.batching import PackingCollator, token_collator
    from nerbook.data import CONLL2003
    from nerbook.model import tiny_config

    cfg = tiny_config(len(tiny_tokenizer))
    cfg.num_labels = len(CONLL2003)
    model = AutoModelForTokenClassification.from_config(cfg)
    rows = [{"input_ids": [2, 10 + i] + [11] * i + [3], "labels": [-100, 1] + [0] * i + [-100]} for i in range(5)]
    lengths = [len(r["input_ids"]) for r in rows]
    for collate in (token_collator(tiny_tokenizer), PackingCollator(tiny_tokenizer, row_length=8)):
        counter = TokenCounter(model, tiny_tokenizer.pad_token_id)
        model.train()
        batch = collate(rows)
        model(**batch)
        model.eval()
        model(**batch)  # not counted: evaluation
        counter.remove()
        t = counter.totals()
        assert t["real_tokens"] == sum(lengths) and t["batches"] == 1
        assert t["sum_len_sq"] == sum(n * n for n in lengths)
        assert t["computed_tokens"] == batch["input_ids"].numel()
    flops = model_flops(model, 100, 1000)
    assert flops > 6 * 100 * sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)


def test_packing_computes_what_padding_computes(tiny_tokenizer):
    """A packed batch (block-diagonal attention, positions restarting) gives the same logits at
    every real position and the same loss as the padded batch."""
    from transformers import AutoModelForTokenClassification

    from nerbook.batching import PackingCollator, token_collator
    from nerbook.data import CONLL2003
    from nerbook.model import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(len(tiny_tokenizer))
    cfg.num_labels = len(CONLL2003)
    for impl in ("sdpa", "eager"):
        cfg._attn_implementation = impl
        model = AutoModelForTokenClassification.from_config(cfg).eval()
        g = torch.Generator().manual_seed(1)
        rows = []
        for n in (3, 17, 5, 40, 9, 9, 2):
            ids = torch.randint(5, len(tiny_tokenizer), (n,), generator=g).tolist()
            rows.append({"input_ids": [2, *ids, 3], "attention_mask": [1] * (n + 2),
                         "labels": [-100, *torch.randint(0, 9, (n,), generator=g).tolist(), -100]})
        packer = PackingCollator.for_model(model, tiny_tokenizer, row_length=48)
        assert packer is not None and packer.float_mask == (impl == "eager")
        packed = packer([{k: v for k, v in r.items() if k != "attention_mask"} for r in rows])
        padded = token_collator(tiny_tokenizer)(rows)
        assert packed["input_ids"].shape[0] < len(rows)  # fewer rows
        assert packed["input_ids"].numel() < padded["input_ids"].numel()  # less padding
        with torch.no_grad():
            a, b = model(**padded), model(**packed)
        assert torch.allclose(a.loss, b.loss, atol=1e-5)
        real_a = a.logits[padded["labels"] != -100].flatten().sort().values  # same values,
        real_b = b.logits[packed["labels"] != -100].flatten().sort().values  # other order
        assert torch.allclose(real_a, real_b, atol=1e-4)


def test_packing_only_where_exact(tiny_tokenizer):
    from nerbook.batching import PackingCollator

    class Cfg:
        model_type = "distilbert"
        _attn_implementation = "sdpa"

    class M:
        config = Cfg()

    assert PackingCollator.for_model(M(), tiny_tokenizer) is None


def test_memory_meter_sees_an_allocation():
    with MemoryMeter("cpu") as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        x += 1
    del x
    assert mem.peak_mb is not None and mem.peak_mb >= 48


def test_compile_check_times_every_step_eager_and_compiled(conll_dir, monkeypatch, capsys):
    """bench/compile_check.py's plumbing on the tiny model; torch.compile itself is stood in for
    (a real CPU compile takes a minute), but asked for with dynamic shapes."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "compile_check.py"
    spec = importlib.util.spec_from_file_location("compile_check", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    compiled = []

    def fake_compile(model, dynamic=None):
        compiled.append(dynamic)
        return model

    monkeypatch.setattr(check.torch, "compile", fake_compile)
    monkeypatch.setattr(sys, "argv", ["compile_check.py", str(conll_dir), "--model", "tiny", "--limit", "48",
                                      "--device", "cpu"])
    check.main()
    lines = capsys.readouterr().out.splitlines()
    assert compiled == [True]  # once, for the compiled run, with dynamic shapes
    assert [line.split(":")[0].strip() for line in lines] == ["eager", "compiled"]
    assert all("3 steps in" in line for line in lines)  # 48 sentences, batches of 16


def test_trainer_seed_follows_the_bench_seed(tmp_path):
    """The Trainer's data order depends on --seed (and the repeat), not only on the repeat."""
    from nerbook.bench.contenders import TrainSpec, trainer_args

    seeds = {(s, r): trainer_args(TrainSpec(train="x", seed=s + r, repeat=r), str(tmp_path), "cpu", tuned=False).seed
             for s in (0, 2) for r in (0, 1)}
    assert seeds == {(0, 0): 42, (0, 1): 43, (2, 0): 44, (2, 1): 45}


class _Toy(torch.nn.Module):
    """A model a loop can drive: one linear layer over embedded ids."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.emb(input_ids)).sum()


def _drive(model, lengths, width=8):
    """One forward and step per batch of one row with ``lengths[i]`` real tokens (pad id 0)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for n in lengths:
        ids = torch.zeros(1, width, dtype=torch.long)
        ids[0, :n] = 3
        mask = (ids != 0).long()
        model(input_ids=ids, attention_mask=mask).backward()
        opt.step()
        opt.zero_grad()


def test_dev_clock_scores_on_the_token_schedule_off_the_clock():
    """Checkpoints fall at the first batch boundary at or past each multiple of ``every`` real
    tokens (counted by hand here), the weights scored are those trained so far, and the time
    spent scoring is not on the clock."""
    import copy
    import time

    from nerbook.bench.clock import DevClock, StopRun

    model = _Toy()
    eval_model = copy.deepcopy(model)
    counter = TokenCounter(model, pad_id=0)
    seen_weights = []

    def score(m):
        seen_weights.append(m.out.weight.detach().clone())
        time.sleep(0.2)
        return [0.1, 0.5, 0.9][len(seen_weights) - 1]

    clock = DevClock(model, eval_model, counter, score, every=10, target=0.8)
    lengths = [4, 4, 4, 3, 5, 6, 2, 8, 1, 1]  # cumulative: 4 8 12 15 20 26 28 36 37 38
    wall = time.perf_counter()
    clock.start()
    with pytest.raises(StopRun):
        _drive(model, lengths)
    wall = time.perf_counter() - wall
    # checked when a batch enters: after 12 tokens (>= 10), after 20 (>= 20), after 36 (>= 30)
    assert [p["tokens"] for p in clock.curve] == [12, 20, 36]
    assert [p["dev_f1"] for p in clock.curve] == [0.1, 0.5, 0.9]
    assert clock.reason == "target"
    res = clock.result()
    assert res["seconds_to_f1"] == clock.curve[-1]["seconds"] and res["tokens_to_f1"] == 36
    assert res["eval_seconds"] >= 0.6 and clock.curve[-1]["seconds"] < wall - 0.6
    # the third score saw the weights after the 8th batch, not the model's current ones (equal here:
    # the batch that triggered the stop never ran), and the eval copy is a copy, not the model
    assert torch.equal(seen_weights[-1], model.out.weight.detach())
    assert eval_model is not model and not torch.equal(seen_weights[0], seen_weights[-1])
    clock.remove()
    counter.remove()


def test_dev_clock_end_and_budget():
    """A loop that ends by itself is scored once more at its end; a spent budget stops the run."""
    import copy

    from nerbook.bench.clock import DevClock, StopRun

    model = _Toy()
    counter = TokenCounter(model, pad_id=0)
    clock = DevClock(model, copy.deepcopy(model), counter, lambda m: 0.2, every=10, target=0.9)
    clock.start()
    _drive(model, [6, 6, 6])
    clock.finish()
    assert [p["tokens"] for p in clock.curve] == [12, 18] and clock.reason == "end"
    assert clock.result()["seconds_to_f1"] is None and clock.result()["best_f1"] == 0.2
    clock.remove()
    counter.remove()

    model = _Toy()
    counter = TokenCounter(model, pad_id=0)
    clock = DevClock(model, copy.deepcopy(model), counter, lambda m: 0.3, every=10**6, budget=0.0)
    clock.start()
    with pytest.raises(StopRun):
        _drive(model, [6, 6])
    assert clock.reason == "budget" and [p["tokens"] for p in clock.curve] == [0]


def test_bench_time_to_f1(files, capsys):
    """--until-f1 through the command line: every contender's curve on the same token schedule,
    the target reached (a low one) or not (1.0: the run ends with its epochs)."""
    base = ["bench", "train", "--train", str(files / "train.txt"), "--valid", str(files / "valid.txt"),
            "--model", "tiny", "--batch-size", "8", "--lr", "3e-3", "--threads", "1", "--no-isolate",
            "--eval-every", "300", "--json"]
    r = _json(capsys, [*base, "--epochs", "1", "--until-f1", "1.0", "--against", "trainer-tuned,seed"])
    t = r["time_to_f1"]
    assert list(t) == ["nerbook", "trainer-tuned", "seed"]
    for name, entry in t.items():
        (curve,) = entry["curves"]
        tokens = [p["tokens"] for p in curve]
        assert tokens == sorted(tokens) and tokens[-1] == r["contenders"][name]["real_tokens"]
        assert all(t >= 300 * (i + 1) for i, t in enumerate(tokens[:-1]))  # one point per 300 tokens
        assert entry["reasons"] == ["end"] and entry["seconds_to_f1"] == [None] and entry["ratio"] is None
        assert entry["best_f1"] == max(p["dev_f1"] for p in curve)
    r = _json(capsys, [*base, "--epochs", "12", "--until-f1", "0.01", "--against", "none",
                       "--nerbook", "warmup_ratio=0", "--nerbook", "batch_size=8"])
    assert r["setup"]["nerbook_config"] == {"warmup_ratio": 0.0, "batch_size": 8}
    assert until_table(r).splitlines()[-1] == "nerbook ran with warmup_ratio=0, batch_size=8; the others with batch_size=8, lr=0.003"
    entry = r["time_to_f1"]["nerbook"]
    assert entry["reasons"] == ["target"] and entry["curves"][0][-1]["dev_f1"] >= 0.01
    assert entry["seconds_to_f1"][0] == entry["curves"][0][-1]["seconds"] and entry["ratio"] == 1.0


@pytest.mark.parametrize("extra, message", [
    (["--budget", "10"], "--budget needs --until-f1"),
    (["--until-f1", "0.9", "--no-eval"], "cannot go with --no-eval"),
    (["--nerbook", "warmup=0"], "--nerbook warmup=0: expected FIELD=VALUE with FIELD one of epochs, "),
    (["--nerbook", "batch_size=big"], "--nerbook batch_size=big: 'big' is not a int"),
    (["--nerbook", "packing=maybe"], "--nerbook packing=maybe: 'maybe' is not a bool"),
    (["--nerbook", "dropout=high"], "--nerbook dropout=high: 'high' is not a float or none"),
])
def test_time_to_f1_bad_arguments(files, capsys, extra, message):
    assert main(["bench", "train", "--train", str(files), "--model", "tiny", *extra]) == 2
    assert message in capsys.readouterr().err


def test_time_to_f1_needs_a_dev_set(files, capsys):
    assert main(["bench", "train", "--train", str(files / "train.txt"), "--model", "tiny", "--until-f1", "0.9"]) == 2
    assert "needs a dev set" in capsys.readouterr().err


def test_summarise_until_by_hand():
    from nerbook.bench.training import summarise_until

    def run(s, t, best, reason):
        return {"seconds_to_f1": s, "tokens_to_f1": t, "best_f1": best, "reason": reason, "seconds": s or 9.0,
                "eval_seconds": 1.0, "curve": []}

    out = summarise_until({"nerbook": [run(2.0, 100, 0.9, "target"), run(4.0, 300, 0.91, "target")],
                           "trainer-tuned": [run(6.0, 200, 0.9, "target"), run(12.0, 400, 0.9, "target")],
                           "seed": [run(None, None, 0.5, "budget"), run(8.0, 500, 0.9, "target")]})
    assert out["nerbook"]["mean_seconds_to_f1"] == 3.0 and out["nerbook"]["mean_tokens_to_f1"] == 200
    assert out["trainer-tuned"]["ratio"] == 3.0  # 9 s over 3 s
    assert out["seed"]["reached"] == 1 and out["seed"]["ratio"] is None  # not every repeat got there
    assert out["seed"]["mean_seconds_to_f1"] == 8.0 and out["seed"]["best_f1"] == 0.9


def test_nerbook_loop_takes_the_overrides(monkeypatch):
    """``--nerbook FIELD=VALUE`` reaches nerbook's TrainConfig, over the spec's batch size and lr too."""
    import nerbook.train
    from nerbook.bench.contenders import TrainSpec, nerbook_loop
    from nerbook.cli.bench import config_overrides

    seen = {}

    def fake_train(model, tokenizer, train_ds, valid_ds, cfg):
        seen["cfg"] = cfg
        return nerbook.train.TrainResult(history={"steps": [], "epochs": [{"train_loss": 1.0}]}, model=model)

    monkeypatch.setattr(nerbook.train, "train", fake_train)
    overrides = config_overrides(["batch_size=64", "lr=4e-4", "warmup_ratio=0", "freeze_word_embeddings=false",
                                  "dropout=0"])
    assert overrides == {"batch_size": 64, "lr": 4e-4, "warmup_ratio": 0.0, "freeze_word_embeddings": False,
                         "dropout": 0.0}
    assert type(overrides["dropout"]) is float  # an optional number is parsed as one, not kept as text
    assert config_overrides(["patience=none", "adversarial=fgm", "dropout=None"]) == {
        "patience": None, "adversarial": "fgm", "dropout": None}
    nerbook_loop(None, None, None, TrainSpec(train="x", batch_size=16, lr=2e-4, epochs=3, nerbook_config=overrides), "cpu")
    cfg = seen["cfg"]
    assert (cfg.batch_size, cfg.lr, cfg.warmup_ratio, cfg.freeze_word_embeddings, cfg.epochs) == (64, 4e-4, 0.0, False, 3)


def test_take_turns_warms_up_then_times_every_setting_each_round_in_a_new_order():
    """nerbook.bench.turns.take_turns (bench/pack_width.py, bench/attention_kernel.py): one warm-up
    call of 3 batches per setting, then every setting once per round on all its batches, the
    order reshuffled by the round's seed; the seconds come back by setting, round by round."""
    import random

    from nerbook.bench.turns import take_turns

    calls = []

    def run(name, first):
        calls.append((name, first))
        return float(len(calls))

    names = ["a", "b", "c", "d"]
    seconds = take_turns(names, run, rounds=3)
    assert calls[:4] == [(n, 3) for n in names]
    timed = calls[4:]
    assert all(first is None for _, first in timed) and len(timed) == 12
    expected, order = [], list(names)
    for r in range(3):
        random.Random(r).shuffle(order)
        expected += order
    assert [n for n, _ in timed] == expected
    assert seconds == {n: [float(5 + i) for i, m in enumerate(expected) if m == n] for n in names}


def test_goal_by_repeat_words_every_case():
    assert goal_by_repeat([1.54, 1.95], 1.5) == "met in every repeat"
    assert goal_by_repeat([1.36, 2.09], 1.5) == "met on average, not in every repeat"  # mean 1.725
    assert goal_by_repeat([1.2, 1.6], 1.5) == "met in some repeats only"  # mean 1.4
    assert goal_by_repeat([None, 2.0], 1.5) == "met in some repeats only"  # one never reached the target
    assert goal_by_repeat([0.17, 0.14], 0.45) == "not met"
    assert goal_by_repeat([], 1.5) == "not met"


def test_repeat_ratios_pairs_the_repeats():
    """The contender's seconds over nerbook's in the same repeat; None where a repeat missed the target."""
    result = {"time_to_f1": {"nerbook": {"seconds_to_f1": [100.0, 120.0, 90.0]},
                             "trainer-tuned": {"seconds_to_f1": [150.0, None, 270.0]}}}
    assert repeat_ratios(result) == [1.5, None, 3.0]
    # the committed batch-64 record: 207.3 / 120.7 and 214.8 / 115.0 (its log lines)
    rec = json.loads((Path(__file__).resolve().parents[1] / "records"
                      / "bench-time-to-f1-cpu-minilm-conll2003-batch64.json").read_text())
    assert [round(r, 2) for r in repeat_ratios(rec["result"])] == [1.72, 1.87]


def test_time_to_f1_rows_one_row_per_record_oldest_first():
    """Each record's row: its recipe, means, ratio by repeat and verdict, computed here by hand."""
    def record(date, ours, theirs, config=None, cpu="Intel(R) Xeon(R) Processor", mfu=(0.17, 0.144)):
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        return {"date": date, "hardware": {"cpu": cpu}, "result": {
            "setup": {"batch_size": 64, "lr": 4e-4, "nerbook_config": config},
            "time_to_f1": {"nerbook": {"seconds_to_f1": ours, "mean_seconds_to_f1": mean(ours)},
                           "trainer-tuned": {"seconds_to_f1": theirs, "mean_seconds_to_f1": mean(theirs),
                                             "ratio": mean(theirs) / mean(ours)}},
            "contenders": {"nerbook": {"tokens_per_s": 2400.0, "runs": [{"mfu_bf16": m} for m in mfu]}}}}

    later = record("2026-12-02T07:00:00Z", [100.0, 120.0], [136.0, 251.0], {"warmup_ratio": 0.0}, cpu="AMD EPYC",
                   mfu=(0.455, None))
    first = record("2026-12-01T03:00:00Z", [100.0, 100.0], [154.0, 195.0])
    rows = time_to_f1_rows([later, first])
    assert [r["cpu"] for r in rows] == ["Intel Xeon", "AMD EPYC"]
    assert rows[0]["nerbook MFU bf16"] == "17%, 14%" and rows[1]["nerbook MFU bf16"] == "46%, -"
    assert [r["date"] for r in rows] == ["2026-12-01", "2026-12-02"]
    assert rows[0]["nerbook recipe"] == "batch 64, lr 4e-4"
    assert rows[1]["nerbook recipe"] == "batch 64, lr 4e-4; warmup_ratio=0"
    assert rows[0]["by repeat"] == "1.54, 1.95" and rows[0]["goal 1.5x"] == "met in every repeat"
    assert rows[1]["by repeat"] == "1.36, 2.09"                  # 136 / 100, 251 / 120
    assert rows[1]["goal 1.5x"] == "met on average, not in every repeat"  # mean 1.725
    assert abs(rows[1]["ratio"] - 387 / 220) < 1e-12 and rows[1]["nerbook s"] == 110.0
    assert rows[1]["nerbook tokens/s"] == 2400.0
    # the committed records: the current default recipe ran twice, the second time one repeat fell short
    files = sorted((Path(__file__).resolve().parents[1] / "records").glob("bench-time-to-f1-*.json"))
    committed = time_to_f1_rows([json.loads(f.read_text()) for f in files])
    assert len(committed) == len(files) >= 6
    assert [r["date"] for r in committed] == sorted(r["date"] for r in committed)
    today = [r for r in committed if r["nerbook recipe"] == committed[-1]["nerbook recipe"]]
    assert [(r["cpu"], r["goal 1.5x"]) for r in today] == [
        ("Intel Xeon", "met in every repeat"), ("Intel Xeon", "met on average, not in every repeat"),
        ("AMD EPYC", "met in every repeat")]
    assert today[-1]["nerbook MFU bf16"] == "32%, 35%"  # higher than on the Xeon, still below 45%


def test_token_counter_counts_a_batch_directly_as_its_hook_does():
    """count() adds what the hook adds (a benchmark counts its batches outside the timed steps with
    it): hand-counted padded rows, and packed rows with a block-diagonal mask."""
    model = _Toy().train()
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    direct = TokenCounter(model, pad_id=0)
    direct.remove()
    direct.count(ids, mask)
    assert direct.totals() == {"real_tokens": 5, "computed_tokens": 8, "batches": 1, "sum_len_sq": 9 + 4}
    hooked = TokenCounter(model, pad_id=0)
    model(input_ids=ids, attention_mask=mask)
    hooked.remove()
    assert hooked.totals() == direct.totals()
    # one row packing windows of 2 and 1 tokens, then a pad that sees itself only
    packed = torch.tensor([[[[True, True, False, False], [True, True, False, False],
                             [False, False, True, False], [False, False, False, True]]]])
    direct.count(torch.tensor([[5, 6, 7, 0]]), packed)
    assert direct.totals() == {"real_tokens": 8, "computed_tokens": 12, "batches": 2, "sum_len_sq": 13 + 4 + 1}


def test_linear_gemm_rate_weights_each_product_by_its_flops(monkeypatch):
    """The rate of a step's linear products is their FLOPs over the sum of each product's time at
    its own rate; with a stand-in rate per shape the answer is worked out by hand."""
    from nerbook.bench import measure

    rates = {}

    def fake_rate(device, dtype="bf16", size=1024, min_seconds=0.3, shape=None):
        rates[shape] = rates.get(shape, 0) + 1
        return {(10, 4, 8): 1.0, (10, 8, 4): 2.0, (8, 10, 4): 4.0, (4, 10, 8): 0.5}[shape]

    monkeypatch.setattr(measure, "matmul_tflops", fake_rate)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4), torch.nn.Linear(4, 8))
    flop = 2 * 10 * 4 * 8  # every product here does 640 FLOPs
    # forward: (10,4,8) twice at 1, (10,8,4) once at 2
    assert measure.linear_gemm_rate(model, 10, backward=False) * 1e12 == pytest.approx(
        3 * flop / ((2 * flop / 1.0 + flop / 2.0) / 1e12))
    # and backward: two layers 4->8 add (10,8,4) and (8,10,4); the 8->4 layer adds (10,4,8) and (4,10,8)
    seconds = (3 * flop / 1.0 + 3 * flop / 2.0 + 2 * flop / 4.0 + flop / 0.5) / 1e12
    assert measure.linear_gemm_rate(model, 10) * 1e12 == pytest.approx(9 * flop / seconds)
    assert set(rates) == {(10, 4, 8), (10, 8, 4), (8, 10, 4), (4, 10, 8)}


def test_mfu_ceiling_runs_every_setting_on_the_same_batches(conll_dir, monkeypatch, tmp_path, capsys):
    """bench/mfu_ceiling.py's plumbing on the tiny model: every setting in turn on the same tokens,
    the compiled ones asked for with dynamic shapes, MFU as model FLOP rate over the reference; the
    levers really change the model (bf16 weights, no dropout). torch.compile and the reference
    products are stood in for (a real CPU compile takes a minute)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "bench" / "mfu_ceiling.py"
    spec = importlib.util.spec_from_file_location("mfu_ceiling", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    compiled = []
    monkeypatch.setattr(check.torch, "compile", lambda model, dynamic=None, mode=None: compiled.append((dynamic, mode)) or model)
    monkeypatch.setattr(check, "matmul_tflops", lambda *a, **k: 2.0)
    monkeypatch.setattr(check, "linear_gemm_rate", lambda model, tokens, dtype: 3.0)
    record = tmp_path / "ceiling.json"
    argv = ["mfu_ceiling.py", str(conll_dir), "--model", "tiny", "--warmup", "1", "--steps", "2", "--rounds", "1",
            "--record", str(record)]
    monkeypatch.setattr(sys, "argv", argv)
    check.main()
    # compiled, max-autotune, compiled with bf16 weights, all three: every one with dynamic shapes
    assert compiled == [(True, None), (True, "max-autotune"), (True, None), (True, None)]
    result = json.loads(record.read_text())["result"]
    rows = result["rows"]
    assert list(rows) == list(check.SETTINGS)
    assert len({(r["real_tokens"], r["computed_tokens"], r["sum_len_sq"]) for r in rows.values()}) == 1
    for r in rows.values():
        assert len(r["step_seconds"]) == 2 and len(r["rounds"]) == 1
        assert r["mfu_bf16"] == pytest.approx(r["model_tflops"] / 2.0)
    assert result["ceiling"]["mfu_bf16"] == pytest.approx(1.5)
    assert "MFU ceiling 150.0%" in capsys.readouterr().out
    args = check.argparse.Namespace(model="tiny", warmup=1, steps=2, data=str(conll_dir))
    from nerbook.data import load_splits

    train_ds, _, schema = load_splits(str(conll_dir), None, 64 * 3)
    _, model = check.measure("all three", args, train_ds, schema)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    _, model = check.measure("nerbook", args, train_ds, schema)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert any(m.p > 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
