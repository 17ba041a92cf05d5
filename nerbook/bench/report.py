"""The benchmark tables, as ``nerbook bench`` prints them and the chapters show them (chapter
"Making it fast")."""

from __future__ import annotations

import math


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or ``-`` for a value not measured (None or nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def train_table(result: dict) -> str:
    """One line per contender of :func:`nerbook.bench.bench_train`'s result: seconds, ratio to
    nerbook, real tokens per second, tokens computed, padding share, peak memory, dev F1, and the
    model-FLOP utilisation against the fp32 and bf16 matrix-product rates measured in the run."""
    lines = [f"{'contender':<15}{'seconds':>9}{'ratio':>8}{'tokens/s':>10}{'computed':>10}{'pad %':>7}"
             f"{'mem MB':>8}{'dev F1':>8}{'MFU fp32':>10}{'MFU bf16':>10}"]
    pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    for name, c in result["contenders"].items():
        lines.append(f"{name:<15}{c['seconds']:>9.2f}{c['ratio']:>8.2f}{c['tokens_per_s']:>10.0f}"
                     f"{c['computed_tokens']:>10}{100 * c['padding_share']:>7.1f}"
                     f"{fmt(c['peak_mem_mb'], '.0f'):>8}{fmt(c['dev_f1'], '.4f'):>8}"
                     f"{pct(c.get('mfu_fp32')):>10}{pct(c.get('mfu_bf16')):>10}")
    rates = result.get("setup", {}).get("matmul_tflops")
    if rates:
        lines.append("MFU: model FLOPs/s over the rate of 1024 x 1024 matrix products in this run: "
                     + ", ".join(f"{d} {1000 * r:.0f} GFLOP/s" for d, r in rates.items()))
    recipe = recipe_line(result.get("setup", {}))
    return "\n".join(lines + ([recipe] if recipe else []))


def recipe_line(setup: dict) -> str | None:
    """What nerbook's run changed from the settings every contender got (``--nerbook``), or None."""
    changed = setup.get("nerbook_config")
    if not changed:
        return None
    return f"nerbook ran with {_settings_text(changed)}; the others with batch_size={setup['batch_size']}, lr={setup['lr']:g}"


def _settings_text(settings: dict) -> str:
    """``k=v, ...`` for settings such as ``--nerbook``'s, floats in their shortest form (``warmup_ratio=0``)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def until_table(result: dict) -> str:
    """One line per contender of a time-to-F1 run (:func:`nerbook.bench.bench_train` with
    ``until_f1``): training seconds and real tokens to the target (mean over the repeats that
    reached it), how many repeats did, how many times sooner nerbook got there, the best dev F1."""
    target = result["setup"]["until_f1"]
    lines = [f"{'contender':<15}{'s to F1 ' + str(target):>14}{'tokens':>10}{'reached':>9}{'ratio':>8}{'best F1':>9}"]
    for name, c in result["time_to_f1"].items():
        lines.append(f"{name:<15}{fmt(c['mean_seconds_to_f1'], '.1f'):>14}{fmt(c['mean_tokens_to_f1'], '.0f'):>10}"
                     f"{c['reached']:>5}/{c['repeats']:<3}{fmt(c['ratio'], '.2f'):>8}{fmt(c['best_f1'], '.4f'):>9}")
    recipe = recipe_line(result["setup"])
    return "\n".join(lines + ([recipe] if recipe else []))


def repeat_ratios(result: dict, contender: str = "trainer-tuned") -> list[float | None]:
    """How many times sooner nerbook reached the target than ``contender``, repeat by repeat, in a
    time-to-F1 run (:func:`until_table`): the contender's seconds over nerbook's in the same repeat,
    ``None`` where either did not reach it. The mean ratio hides how far apart the repeats are; a
    goal such as "1.5 times sooner" holds for the run only if it holds in every repeat."""
    reach = result["time_to_f1"]
    return [None if theirs is None or ours is None else theirs / ours
            for theirs, ours in zip(reach[contender]["seconds_to_f1"], reach["nerbook"]["seconds_to_f1"], strict=True)]


def goal_by_repeat(values: list[float | None], goal: float) -> str:
    """Whether ``goal`` (a time-to-F1 ratio, an MFU) holds across the repeats of one benchmark run,
    as the chapters word it: ``met in every repeat``, ``met on average, not in every repeat`` (the
    mean of the repeats' values), ``met in some repeats only`` or ``not met``. A repeat without a
    value (``None``: the target not reached) does not meet it, and leaves no average."""
    reached = [v is not None and v >= goal for v in values]
    if values and all(reached):
        return "met in every repeat"
    if values and None not in values and sum(values) / len(values) >= goal:
        return "met on average, not in every repeat"
    return "met in some repeats only" if any(reached) else "not met"


def time_to_f1_rows(records: list[dict], goal: float = 1.5, contender: str = "trainer-tuned") -> list[dict]:
    """One row per time-to-F1 record (a committed ``bench-time-to-f1-*.json``, oldest first): the
    recipe nerbook ran, each loop's mean training seconds to the target, the mean ratio and the ratio
    repeat by repeat (:func:`repeat_ratios`), the verdict on ``goal`` (:func:`goal_by_repeat`),
    nerbook's real tokens per second and its MFU against the bf16 rate, repeat by repeat, with the
    CPU that ran it (:func:`cpu_name`): MFU is a ratio to that CPU's own matrix-product rate.
    The results page shows them side by side, so that a rerun of the same command stands next to
    its first run (chapter "Results")."""
    rows = []
    for rec in sorted(records, key=lambda r: r["date"]):
        result = rec["result"]
        setup, reach, ours = result["setup"], result["time_to_f1"], result["contenders"]["nerbook"]
        per_repeat = repeat_ratios(result, contender)
        lr = f"{setup['lr']:.0e}".replace("e-0", "e-")
        changed = _settings_text(setup.get("nerbook_config") or {})
        rows.append({
            "date": rec["date"][:10],
            "cpu": cpu_name(rec.get("hardware", {}).get("cpu")),
            "nerbook recipe": f"batch {setup['batch_size']}, lr {lr}" + (f"; {changed}" if changed else ""),
            "nerbook s": reach["nerbook"]["mean_seconds_to_f1"],
            f"{contender} s": reach[contender]["mean_seconds_to_f1"],
            "ratio": reach[contender]["ratio"],
            "by repeat": ", ".join(fmt(r, ".2f") for r in per_repeat),
            f"goal {goal:g}x": goal_by_repeat(per_repeat, goal),
            "nerbook tokens/s": ours["tokens_per_s"],
            "nerbook MFU bf16": ", ".join(fmt(r.get("mfu_bf16"), ".0%") for r in ours.get("runs", [])) or "-",
        })
    return rows


def cpu_name(cpu: str | None) -> str:
    """A record's CPU as a table shows it: the name the machine reports, without trademark signs
    and the word "Processor" (``Intel(R) Xeon(R) Processor`` -> ``Intel Xeon``); ``-`` if unknown."""
    if not cpu:
        return "-"
    return " ".join(cpu.replace("(R)", "").replace("(TM)", "").replace("Processor", "").split())


def predict_table(result: dict) -> str:
    """One line per contender of :func:`nerbook.bench.bench_predict`'s result: seconds, ratio,
    sentences per second, span agreement with nerbook (all, and on single-piece words), F1."""
    lines = [f"{'contender':<18}{'seconds':>9}{'ratio':>8}{'sent/s':>9}{'agreement':>11}"
             f"{'same words':>12}{'F1':>8}"]
    for name, c in result["contenders"].items():
        lines.append(f"{name:<18}{c['seconds']:>9.2f}{c['ratio']:>8.2f}{c['sentences_per_s']:>9.1f}"
                     f"{c['agreement']:>11.4f}{c['agreement_same_words']:>12.4f}{fmt(c.get('f1'), '.4f'):>8}")
    return "\n".join(lines)
