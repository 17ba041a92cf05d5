"""Why scripts/quickstart.sh sets OMP_WAIT_POLICY=PASSIVE: training steps with other work beside.

torch's CPU kernels run on GNU OpenMP with one thread per core. By default a thread that waits
for the others at the end of a parallel region spins for a while before it sleeps; when another
process wants the same cores, the spinning threads take CPU time from the one thread that still
has work. This script times the same 10 training steps of a 4-layer BERT (hidden 384, batch
16 x 64 tokens) in fresh processes, with 0, 1 and 2 busy processes beside them, for three
settings: the default (one thread per core, spinning), ``OMP_WAIT_POLICY=PASSIVE`` (waiting
threads sleep) and ``OMP_NUM_THREADS=1``. Settings are interleaved and repeated; the best time
of each is printed, side by side in one run.

    python bench/omp_wait_policy.py [--repeat 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}

STEPS = r"""
import time, torch
from transformers import BertConfig, BertForTokenClassification
torch.manual_seed(0)
cfg = BertConfig(hidden_size=384, num_hidden_layers=4, num_attention_heads=12,
                 intermediate_size=1536, num_labels=9)
model = BertForTokenClassification(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x, y = torch.randint(0, cfg.vocab_size, (16, 64)), torch.randint(0, 9, (16, 64))
def step():
    model(input_ids=x, labels=y).loss.backward(); opt.step(); opt.zero_grad()
step(); step()
t0 = time.perf_counter()
for _ in range(10):
    step()
print(time.perf_counter() - t0)
"""


def busy(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


def time_steps(env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    for var in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        os.environ.pop(var, None)
    results: dict[int, dict[str, float]] = {}
    for n_busy in (0, 1, 2):
        procs = [mp.Process(target=busy, args=(3600,), daemon=True) for _ in range(n_busy)]
        for p in procs:
            p.start()
        try:
            times: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for _ in range(args.repeat):
                for name, env in SETTINGS.items():
                    times[name].append(time_steps(env))
        finally:
            for p in procs:
                p.terminate()
        results[n_busy] = {name: min(ts) for name, ts in times.items()}
    print(f"10 training steps, best of {args.repeat}, seconds (cores: {os.cpu_count()})")
    print(f"{'busy processes beside':<24}" + "".join(f"{name:>12}" for name in SETTINGS))
    for n_busy, row in results.items():
        print(f"{n_busy:<24}" + "".join(f"{row[name]:12.2f}" for name in SETTINGS))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cores": os.cpu_count(), "repeat": args.repeat, "seconds": results}, f, indent=1)


if __name__ == "__main__":
    main()
