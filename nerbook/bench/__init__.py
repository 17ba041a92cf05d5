"""Benchmarks: nerbook against the naive loop, the HF Trainer and the HF pipeline (chapter
"Making it fast").

One idea a module:

- :mod:`nerbook.bench.measure`     peak memory, tokens computed, FLOPs and MFU
- :mod:`nerbook.bench.contenders`  the training loops compared (seed, Trainer, tuned Trainer, nerbook)
- :mod:`nerbook.bench.runner`      each run in a fresh process, so its peak memory is its own
- :mod:`nerbook.bench.clock`       time to a target dev F1: a clock that stops while dev is scored
- :mod:`nerbook.bench.training`    ``nerbook bench train``: the contenders interleaved, summarised
- :mod:`nerbook.bench.prediction`  ``nerbook bench predict``: the Tagger against the pipeline
- :mod:`nerbook.bench.report`      the tables the command line prints

Each run happens in a fresh process (forked from a server that has imported the libraries
once), so that its peak memory is its own: on a CPU the growth of the resident set during
training (the peak RSS, reset to the current RSS just before training), on a GPU
``torch.cuda.max_memory_allocated`` minus what was allocated before training. The command
line (``nerbook bench train|predict``) lives in :mod:`nerbook.cli.bench`.
"""

from __future__ import annotations

from nerbook.bench.clock import DevClock, StopRun
from nerbook.bench.contenders import (
    BERT_BASE_RANDOM,
    TRAIN_CONTENDERS,
    TrainSpec,
    run_train_contender,
)
from nerbook.bench.measure import (
    PEAK_BF16_TFLOPS,
    MemoryMeter,
    TokenCounter,
    model_flops,
    peak_tflops,
)
from nerbook.bench.prediction import (
    PREDICT_CONTENDERS,
    PredictSpec,
    bench_predict,
    pipeline_word_tags,
    run_predict_contender,
    same_words,
    single_piece_words,
)
from nerbook.bench.report import (
    goal_by_repeat,
    predict_table,
    repeat_ratios,
    time_to_f1_rows,
    train_table,
    until_table,
)
from nerbook.bench.runner import Runner
from nerbook.bench.training import bench_train

__all__ = ["BERT_BASE_RANDOM", "PEAK_BF16_TFLOPS", "PREDICT_CONTENDERS", "TRAIN_CONTENDERS", "DevClock", "MemoryMeter",
           "PredictSpec", "Runner", "TokenCounter", "TrainSpec", "bench_predict", "bench_train", "model_flops",
           "goal_by_repeat", "peak_tflops", "pipeline_word_tags", "predict_table", "repeat_ratios", "run_predict_contender", "run_train_contender",
           "same_words", "single_piece_words", "StopRun", "time_to_f1_rows", "train_table", "until_table"]
