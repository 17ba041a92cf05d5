"""Train the tiny model with nerbook.train, unchanged, and print the loss curve as JSON.

Run it with one process, or several under ``accelerate launch`` / ``torch.distributed.run``:
with the same global batch (per-process batch = global / processes) the curves must agree
(tests/test_ddp.py). Every step here uses the whole training set (global batch = all windows),
so that one process and several see exactly the same examples at every step, whatever order
the sampler picks; dropout is off and the precision fp32, so the only differences left are
float rounding and DDP averaging per-process mean losses instead of one mean over all tokens.

    python -c "import runpy; runpy.run_path('bench/ddp_check.py')['prepare']('/tmp/ddp-tiny')"  # once
    python bench/ddp_check.py --model /tmp/ddp-tiny --global-batch 32
    python -m torch.distributed.run --nproc_per_node 2 bench/ddp_check.py --model /tmp/ddp-tiny --global-batch 32

The tiny model (dropout 0) is made once and saved, so that every process and every run loads
the same weights and the same tokenizer (a WordPiece tokenizer trained in each process could
differ).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def training_set(global_batch: int):
    """The sentences every step trains on: one global batch of synthetic sentences."""
    from nerbook.synthetic import synthetic_conll

    return synthetic_conll(global_batch, 0, 0, seed=0, long_fraction=0.0)["train"]


def prepare(folder, global_batch: int = 32) -> None:
    """Make the tiny model (dropout 0, seed 0) and its tokenizer, and save them to ``folder``.

    A function, not a command: the notebook and the tests, which have nerbook loaded already,
    make it without starting another Python (about 6 s each)."""
    from nerbook.data import schema_of
    from nerbook.model import load_model, save_checkpoint

    ds = training_set(global_batch)
    model, tok = load_model("tiny", schema_of(ds), texts=list(ds["tokens"]), seed=0, dropout=0.0,
                            tiny_kwargs={"attention_probs_dropout_prob": 0.0})
    save_checkpoint(model, tok, folder)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--global-batch", type=int, default=32, help="sentences per step over all processes")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--model", required=True, help="folder saved by prepare()")
    p.add_argument("--adversarial", choices=["fgm", "pgd"], help="adversarial training (nerbook.adversarial)")
    p.add_argument("--adv-eps", type=float, default=0.5)
    p.add_argument("--adv-steps", type=int, default=2)
    args = p.parse_args()

    import torch

    from nerbook.data import schema_of
    from nerbook.model import load_model
    from nerbook.train import TrainConfig, train

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} is not a multiple of {world} processes")
    ds = training_set(args.global_batch)
    model, tok = load_model(args.model, schema_of(ds))

    # token-weighted loss of each step, summed over processes: the loss of the global batch
    sums: list[list[float]] = []

    def record(module, args_, kwargs, output):
        if module.training and output.loss is not None:
            n = (kwargs["labels"] != -100).sum()
            sums.append([float(output.loss.detach() * n), float(n)])

    model.register_forward_hook(record, with_kwargs=True)
    cfg = TrainConfig(epochs=args.steps, batch_size=args.global_batch // world, lr=args.lr,
                      mixed_precision="no", patience=None, progress=False, log_every=1, seed=0,
                      adversarial=args.adversarial, adv_eps=args.adv_eps, adv_steps=args.adv_steps)
    res = train(model, tok, ds, None, cfg)
    local = torch.tensor(sums, dtype=torch.float64)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(local)
    if int(os.environ.get("RANK", "0")) == 0:
        curve = (local[:, 0] / local[:, 1]).tolist()
        print(json.dumps({"processes": world, "global_batch": args.global_batch, "loss": curve,
                          "lr": [s["lr"] for s in res.history["steps"]]}))


if __name__ == "__main__":
    main()
