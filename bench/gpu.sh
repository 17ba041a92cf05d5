#!/usr/bin/env bash
# The GPU benchmark of the chapter "Making it fast", in one call on a GPU machine.
#
# A bert-base-cased-shaped model (BertConfig() defaults, random weights: speed does not need
# pretrained ones, and the GPU machine has no network), CoNLL-2003 train, one epoch, batch 32:
# nerbook against the seed loop. Reports seconds per epoch, real tokens/s and the model-FLOPs
# utilisation against the card's dense bf16 peak, and writes a record for the results page.
#
#   bash bench/gpu.sh prepare DATA_DIR   # here: copy what the GPU machine lacks into .gpu/
#   bash bench/gpu.sh run                # there (one call): install .gpu/, run, write the record
#
# "prepare" copies CoNLL-2003 train/valid (from DATA_DIR, never committed: .gpu/ is git-ignored),
# the WordPiece tokenizer of the offline model and wheels of the packages the GPU image lacks
# (datasets, seqeval and their own needs), so that "run" needs no network. "run" writes
# records/bench-train-gpu-bert-base-conll2003.json, and a copy to $OUT when that is set.
# Environment: LIMIT (sentences; default all), REPEAT (default 2), DEVICE (default cuda),
# BATCH (default 32), COMPILE=1 (then also bench/compile_check.py: eager vs torch.compile, on
# LIMIT or 2000 sentences, printed and copied to $OUT/compile-check.txt), TTF=1 (then also the
# time to dev F1 0.88 of MiniLM, the CPU record's settings: nerbook against trainer-tuned and the
# seed loop, records/bench-time-to-f1-gpu-minilm-conll2003.json). For TTF, "prepare" stores
# MiniLM's weights in bf16 (45 MB, so that .gpu/ fits what a device call carries) and "run" widens
# them back to fp32: the model trained there is MiniLM rounded to bf16 once, a close stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=.gpu

prepare() {
    local data=${1:?usage: bench/gpu.sh prepare DATA_DIR (a folder with train.txt and valid.txt)}
    mkdir -p "$STAGE/conll2003" "$STAGE/tokenizer" "$STAGE/whl"
    cp "$data/train.txt" "$data/valid.txt" "$STAGE/conll2003/"
    python - "$STAGE/tokenizer" <<'PY'
import sys
from transformers import AutoTokenizer
from nerbook.model import offline_model_path
AutoTokenizer.from_pretrained(str(offline_model_path())).save_pretrained(sys.argv[1])
PY
    # packages nerbook needs that the GPU image lacks (its torch, transformers, accelerate, pandas,
    # pyarrow, xxhash, fsspec, huggingface-hub are used as they are)
    # (multiprocess has one wheel per Python version: take those of 3.10 to 3.13)
    for py in 3.10 3.11 3.12 3.13; do
        python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "$STAGE/whl" datasets==5.2.0 dill multiprocess
    done
    python -m pip wheel -q --no-deps -w "$STAGE/whl" seqeval==1.2.2  # an sdist only: build its (pure Python) wheel here
    python - "$STAGE/minilm" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from nerbook.model import offline_model_path
src, dst = offline_model_path(), Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(src / name, dst / name)
weights = load_file(str(src / "model.safetensors"))
save_file({k: v.bfloat16().contiguous() for k, v in weights.items()}, str(dst / "model.bf16.safetensors"))
PY
    du -sh "$STAGE"
    echo "now, on the GPU machine: bash bench/gpu.sh run   (carry: $STAGE)"
}

run() {
    if [ -d "$STAGE/whl" ] && ! python3 -c "import datasets, seqeval" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/site \
            --find-links "$STAGE/whl" datasets==5.2.0 dill multiprocess seqeval==1.2.2
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
    export NERBOOK_BENCH_TOKENIZER="$PWD/$STAGE/tokenizer" PYTHONUNBUFFERED=1
    local device=${DEVICE:-cuda} record=records/bench-train-gpu-bert-base-conll2003.json
    [ "$device" = cuda ] || record="${RECORD:-/tmp/bench-train-$device-check.json}"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -m nerbook bench train --train "$STAGE/conll2003/train.txt" --model bert-base-random \
        ${LIMIT:+--limit "$LIMIT"} --batch-size "${BATCH:-32}" --epochs 1 --against seed \
        --repeat "${REPEAT:-2}" --device "$device" --no-eval --record "$record"
    if [ -n "${OUT:-}" ]; then cp "$record" "$OUT/"; fi
    if [ -n "${TTF:-}" ]; then  # time to dev F1 0.88, as records/bench-time-to-f1-cpu-minilm-conll2003.json
        python3 - "$STAGE/minilm" /tmp/minilm <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name != "model.bf16.safetensors":
        shutil.copy(f, dst / f.name)
weights = load_file(str(src / "model.bf16.safetensors"))
save_file({k: v.float().contiguous() for k, v in weights.items()}, str(dst / "model.safetensors"))
PY
        local ttf=records/bench-time-to-f1-gpu-minilm-conll2003.json
        [ "$device" = cuda ] || ttf="/tmp/bench-time-to-f1-$device-check.json"
        python3 -m nerbook bench train --train "$STAGE/conll2003" --model /tmp/minilm --epochs 3 --lr 2e-4 \
            ${LIMIT:+--limit "$LIMIT" --valid-limit "$LIMIT"} --batch-size 16 --until-f1 0.88 --eval-every 28000 \
            --budget 600 --against trainer-tuned,seed \
            --repeat "${REPEAT:-2}" --device "$device" --record "$ttf"
        if [ -n "${OUT:-}" ]; then cp "$ttf" "$OUT/"; fi
    fi
    if [ -n "${COMPILE:-}" ]; then  # does torch.compile pay for its compile time here?
        python3 bench/compile_check.py "$STAGE/conll2003/train.txt" --model bert-base-random \
            --device "$device" --limit "${LIMIT:-2000}" --batch-size "${BATCH:-32}" | tee "${OUT:-/tmp}/compile-check.txt"
    fi
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) run ;;
    *) echo "usage: bash bench/gpu.sh prepare DATA_DIR | run" >&2; exit 2 ;;
esac
