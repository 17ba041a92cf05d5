"""Plots and HTML rendering for the NER chapters (chapter "Fine-tuning and evaluation").

- :func:`plot_history`  training loss and dev F1 curves of a :func:`nerbook.train.train` run
- :func:`plot_confusion`  a word-level confusion matrix (from :func:`nerbook.metrics.confusion`)
- :func:`plot_reliability`  a reliability diagram: accuracy against confidence, bin by bin
- :func:`plot_risk_coverage`  precision against the share of entities kept, as the threshold rises
- :func:`plot_time_to_f1`    dev F1 against training seconds, each contender of a time-to-F1 benchmark
- :func:`plot_scaling`  dev error against training compute on log axes, with a fitted power law per family
- :func:`render_entities_html`  words with tags, or text with entity spans, as highlighted HTML

Every piece of text that reaches the HTML (words, entity types) goes through
:func:`html.escape`, so a ``<script>`` typed into a demo box is shown, never run.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["EntityHTML", "entity_color", "plot_confusion", "plot_history", "plot_reliability",
           "plot_risk_coverage", "plot_scaling", "plot_time_to_f1", "render_entities_html"]

#: Background colours of the CoNLL entity types (other types get one from the fallback list).
TYPE_COLORS = {"PER": "#fde68a", "ORG": "#bfdbfe", "LOC": "#bbf7d0", "MISC": "#e9d5ff"}
_FALLBACK_COLORS = ("#fecaca", "#fed7aa", "#a5f3fc", "#d9f99d", "#fbcfe8", "#e5e7eb")
#: Line colours of the same types in plots (saturated versions of the backgrounds).
_LINE_COLORS = {"PER": "#d97706", "ORG": "#2563eb", "LOC": "#16a34a", "MISC": "#9333ea"}


def plot_history(history: Mapping[str, Any], title: str | None = None) -> Figure:
    """Two panels: the training loss against the step, and dev entity F1 after each epoch.

    ``history`` is ``TrainResult.history`` from :func:`nerbook.train.train`: ``steps`` (dicts
    with ``step`` and ``loss``, logged every ``log_every`` steps) and ``epochs`` (dicts with
    ``step``, ``train_loss`` and, when there was a dev set, ``dev_f1`` and ``dev_per_type``).
    The loss panel shows the logged loss, a running mean since the start of the epoch (line),
    and each epoch's mean loss (dots);
    the F1 panel shows overall dev F1 (thick line) and the F1 of each type (thin lines).

    Chapter: Fine-tuning and evaluation.
    """
    import matplotlib.pyplot as plt

    steps = list(history.get("steps", []))
    epochs = list(history.get("epochs", []))
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(11, 3.6))
    if steps:
        ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], "-", color="C0",
                     label="mean loss since the epoch began")
    if epochs:
        ax_loss.plot([e["step"] for e in epochs], [e["train_loss"] for e in epochs], "o", color="C1",
                     label="mean loss of the epoch")
    ax_loss.set(xlabel="optimizer step", ylabel="training loss (cross-entropy)", title="loss")
    ax_loss.set_ylim(bottom=0)
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()

    scored = [e for e in epochs if "dev_f1" in e]
    x = [e["epoch"] for e in scored]
    if scored:
        ax_f1.plot(x, [e["dev_f1"] for e in scored], "o-", lw=2.5, color="k", label="all types")
        types = sorted({t for e in scored for t in e.get("dev_per_type", {})})
        for typ in types:
            ax_f1.plot(x, [e.get("dev_per_type", {}).get(typ, float("nan")) for e in scored], ".--",
                       lw=1, color=_LINE_COLORS.get(typ), label=typ)
        ax_f1.set_xticks(x)
        ax_f1.legend(fontsize=8)
    else:
        ax_f1.text(0.5, 0.5, "no dev set", ha="center", va="center", transform=ax_f1.transAxes)
    ax_f1.set(xlabel="epoch", ylabel="dev entity F1", title="dev entity F1 (conlleval)", ylim=(0, 1.02))
    ax_f1.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: Any, labels: Sequence[str], normalize: bool = True,
                   title: str | None = None) -> Figure:
    """Heatmap of a confusion matrix: row = gold tag, column = predicted tag.

    ``matrix[i][j]`` counts the words tagged ``labels[i]`` and predicted ``labels[j]`` (as
    returned by :func:`nerbook.metrics.confusion`). Each cell shows its count; with
    ``normalize`` the colours are row fractions, so that the rare entity tags are as visible as
    ``O`` (rows without words stay blank).

    Chapter: Fine-tuning and evaluation.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"a {m.shape} matrix for {len(labels)} labels")
    if normalize:
        rows = m.sum(1, keepdims=True)
        colours = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    else:
        colours = m
    size = 1.6 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(1.0, m.max()))
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if colours[i, j] > 0.6 * (1.0 if normalize else m.max()) else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted tag")
    ax.set_ylabel("gold tag")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of the gold row" if normalize else "words")
    ax.set_title(title or "confusion matrix (words)")
    fig.tight_layout()
    return fig


def plot_reliability(panels: Mapping[str, Sequence[Mapping[str, float]]], title: str | None = None) -> Figure:
    """One reliability diagram per entry of ``panels`` (name -> the bins of
    :func:`nerbook.calibration.reliability_bins`): each bin's accuracy as a bar over its
    confidence range, its mean confidence as a dot, and the diagonal where they would agree.
    A bar below the diagonal is overconfidence. The bin counts are printed above the bars.

    Chapter: Safety and ethics.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, bins) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="confidence = accuracy")
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins],
               width=[b["high"] - b["low"] for b in bins], align="edge", color="#93c5fd",
               edgecolor="#1d4ed8", label="accuracy in the bin")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="#b91c1c",
                ms=4, label="mean confidence in the bin")
        for b in bins:
            ax.text((b["low"] + b["high"]) / 2, min(b["accuracy"] + 0.02, 1.0), str(b["count"]),
                    ha="center", va="bottom", fontsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence", ylabel="accuracy", title=name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_risk_coverage(curves: Mapping[str, Sequence[Mapping[str, float]]], title: str | None = None) -> Figure:
    """Precision against coverage for each entry of ``curves`` (name -> the rows of
    :func:`nerbook.calibration.risk_coverage`): moving right, the threshold falls and more
    entities are kept.

    Chapter: Safety and ethics.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, rows in curves.items():
        ax.plot([r["coverage"] for r in rows], [r["precision"] for r in rows], "-", lw=1.8, label=name)
    ax.set(xlabel="coverage (share of entities kept)", ylabel="precision of the kept entities",
           xlim=(0, 1.01), title=title or "risk-coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_time_to_f1(result: Mapping[str, Any], title: str | None = None) -> Figure:
    """Dev entity F1 against training seconds for every contender and repeat of a time-to-F1
    benchmark (:func:`nerbook.bench.bench_train` with ``until_f1``; the ``result`` of its record),
    with the target as a dashed line and each run's arrival there marked by a dot.

    Chapters: Making it fast, Results.
    """
    import matplotlib.pyplot as plt

    target = result["setup"]["until_f1"]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, entry) in enumerate(result["time_to_f1"].items()):
        for r, (curve, hit) in enumerate(zip(entry["curves"], entry["seconds_to_f1"])):
            ax.plot([p["seconds"] for p in curve], [p["dev_f1"] for p in curve], "-", lw=1.5,
                    color=colours[i % len(colours)], alpha=1.0 if r == 0 else 0.55,
                    label=name if r == 0 else None)
            if hit is not None:
                ax.plot([hit], [next(p["dev_f1"] for p in curve if p["dev_f1"] >= target)], "o",
                        color=colours[i % len(colours)])
    ax.axhline(target, ls="--", color="grey", lw=1, label=f"target F1 {target}")
    ax.set(xlabel="training seconds (dev scoring off the clock)", ylabel="dev entity F1",
           ylim=(0, 1), title=title or "time to a good model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


#: Axis labels of :func:`plot_scaling`'s x keys.
SCALING_AXES = {"flops": "training compute C = 6 N T (FLOPs)", "n_train": "training sentences",
                "non_embedding_parameters": "parameters N (outside the embeddings)"}


def plot_scaling(families: Mapping[str, Sequence[Mapping[str, Any]]], x: str = "flops",
                 title: str | None = None, ax=None) -> Figure:
    """Dev error (1 - F1) against ``x`` (default: training compute ``C = 6 N T``) on log-log axes:
    one colour per family of runs (each run a mapping with ``x``, ``dev_f1`` and a ``label``), and
    the least-squares power law of each family with three or more distinct ``x``
    (:func:`nerbook.scaling.fit_power_law`) as a dashed line, its slope in the legend. Draws on
    ``ax`` when given.

    Chapters: One recipe, any size; Results.
    """
    import matplotlib.pyplot as plt

    from nerbook.scaling import fit_power_law

    fig, ax = plt.subplots(figsize=(7.5, 4.2)) if ax is None else (ax.figure, ax)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, runs) in enumerate(families.items()):
        c = colours[i % len(colours)]
        xs, ys = [r[x] for r in runs], [1.0 - r["dev_f1"] for r in runs]
        label = name
        if len({*xs}) >= 3 and min(ys) > 0:
            law = fit_power_law(xs, ys)
            ends = [min(xs), max(xs)]
            ax.plot(ends, [law(v) for v in ends], "--", color=c, lw=1)
            label = f"{name} (slope {law.slope:.2f})"
        ax.plot(xs, ys, "o", color=c, label=label)
        for r, xi, yi in zip(runs, xs, ys):
            ax.annotate(str(r["label"]), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
    ax.set(xscale="log", yscale="log", xlabel=SCALING_AXES.get(x, x), ylabel="dev error, 1 - entity F1",
           title=title or "error against " + SCALING_AXES.get(x, x).split(" (")[0])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def entity_color(typ: str) -> str:
    """The background colour of an entity type (fixed for PER/ORG/LOC/MISC, stable otherwise).

    Chapter: Fine-tuning and evaluation.
    """
    if typ in TYPE_COLORS:
        return TYPE_COLORS[typ]
    return _FALLBACK_COLORS[sum(typ.encode("utf-8")) % len(_FALLBACK_COLORS)]


class EntityHTML(str):
    """HTML text that Jupyter displays as HTML (it has ``_repr_html_``) and that is a ``str``.

    Chapter: Fine-tuning and evaluation.
    """

    def _repr_html_(self) -> str:
        return str(self)


def _mark(text: str, typ: str) -> str:
    return (f'<mark style="background:{entity_color(typ)};padding:0.1em 0.35em;margin:0 0.1em;'
            f'border-radius:0.35em;line-height:1">{html.escape(text)}'
            f'<span style="font-size:0.7em;font-weight:bold;margin-left:0.4em;'
            f'vertical-align:middle">{html.escape(typ)}</span></mark>')


def _char_spans(entities: Sequence[Any]) -> list[tuple[str, int, int]]:
    out = []
    for e in entities:
        if isinstance(e, Mapping):
            out.append((str(e["type"]), int(e["start"]), int(e["end"])))
        else:  # nerbook.predict.Entity or anything with type/start/end
            out.append((str(e.type), int(e.start), int(e.end)))
    return out


def render_entities_html(words_or_text: str | Sequence[str],
                         entities_or_tags: Sequence[Any]) -> EntityHTML:
    """Highlight entities in HTML, escaping every word and type with :func:`html.escape`.

    Two forms:

    - ``render_entities_html(words, tags)``: a list of words and one IOB2 tag per word (or
      a list of ``(type, first word, last word)`` spans); words are joined by spaces.
    - ``render_entities_html(text, entities)``: raw text and entities with character offsets
      (``nerbook.predict.Entity`` objects, or dicts with ``type``, ``start``, ``end``), as
      ``Tagger.predict_text`` returns them.

    Entities must not overlap. Returns an :class:`EntityHTML` (a ``str`` Jupyter shows as HTML).

    Chapter: Fine-tuning and evaluation.
    """
    parts: list[str] = []
    if isinstance(words_or_text, str):
        text = words_or_text
        pos = 0
        for typ, start, end in sorted(_char_spans(entities_or_tags), key=lambda s: s[1]):
            if not 0 <= start < end <= len(text) or start < pos:
                raise ValueError(f"entity {typ} [{start}, {end}) is out of the text or overlaps another")
            parts += [html.escape(text[pos:start]), _mark(text[start:end], typ)]
            pos = end
        parts.append(html.escape(text[pos:]))
    else:
        words = list(words_or_text)
        items = list(entities_or_tags)
        if items and all(isinstance(t, str) for t in items):
            if len(items) != len(words):
                raise ValueError(f"{len(words)} words but {len(items)} tags")
            from nerbook.metrics import spans

            found = spans(items)
        else:
            found = [(str(t), int(s), int(e)) for t, s, e in items]
        w = 0
        for typ, first, last in sorted(found, key=lambda s: s[1]):
            if not w <= first <= last < len(words):
                raise ValueError(f"entity {typ} words [{first}, {last}] is out of range or overlaps another")
            parts += [html.escape(x) + " " for x in words[w:first]]
            parts.append(_mark(" ".join(words[first:last + 1]), typ) + " ")
            w = last + 1
        parts += [html.escape(x) + " " for x in words[w:]]
    body = "".join(parts).rstrip(" ")
    return EntityHTML(f'<div class="nerbook-entities" style="line-height:2.2">{body}</div>')
