"""nerbook.viz: the plots draw what they say, and the entity HTML escapes all user text."""

from __future__ import annotations

import html
import re

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from nerbook.predict import Entity  # noqa: E402
from nerbook.viz import EntityHTML, entity_color, plot_confusion, plot_history, render_entities_html  # noqa: E402

HISTORY = {
    "steps": [{"step": s, "epoch": 1 + (s > 20), "loss": 1.0 / s, "lr": 1e-4} for s in (5, 10, 15, 20, 25, 30, 35, 40)],
    "epochs": [
        {"epoch": 1, "step": 20, "train_loss": 0.4, "dev_f1": 0.6,
         "dev_per_type": {"PER": 0.7, "LOC": 0.5}},
        {"epoch": 2, "step": 40, "train_loss": 0.1, "dev_f1": 0.8,
         "dev_per_type": {"PER": 0.9, "LOC": 0.7}},
    ],
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_history_draws_loss_and_f1_curves():
    fig = plot_history(HISTORY, title="run")
    ax_loss, ax_f1 = fig.axes
    loss_lines = ax_loss.get_lines()
    assert len(loss_lines) == 2  # logged running loss + one dot per epoch
    assert list(loss_lines[0].get_xdata()) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert list(loss_lines[1].get_ydata()) == [0.4, 0.1]
    f1_lines = ax_f1.get_lines()
    assert len(f1_lines) == 3  # overall + PER + LOC
    assert list(f1_lines[0].get_ydata()) == [0.6, 0.8]
    assert {t.get_text() for t in ax_f1.get_legend().get_texts()} == {"all types", "LOC", "PER"}
    assert fig._suptitle.get_text() == "run"


def test_plot_history_without_dev_set():
    hist = {"steps": HISTORY["steps"], "epochs": [{"epoch": 1, "step": 40, "train_loss": 0.2}]}
    fig = plot_history(hist)
    assert len(fig.axes[1].get_lines()) == 0
    assert any(t.get_text() == "no dev set" for t in fig.axes[1].texts)


def test_plot_confusion_shows_every_count():
    labels = ["O", "B-PER", "I-PER"]
    m = np.array([[50, 1, 0], [2, 7, 0], [0, 0, 0]])
    fig = plot_confusion(m, labels)
    ax = fig.axes[0]
    images = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    assert len(images) == 1
    colours = images[0].get_array()
    assert colours.shape == (3, 3)
    assert colours[1, 1] == pytest.approx(7 / 9)  # row-normalised colours
    assert colours[2].sum() == 0  # an empty row stays blank, no division by zero
    assert [t.get_text() for t in ax.texts] == [str(v) for v in m.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert ax.get_xlabel() == "predicted tag" and ax.get_ylabel() == "gold tag"
    with pytest.raises(ValueError):
        plot_confusion(m, labels[:2])


def test_plot_confusion_raw_counts():
    fig = plot_confusion([[3, 1], [0, 4]], ["O", "B-LOC"], normalize=False)
    image = next(a for a in fig.axes[0].get_children() if isinstance(a, AxesImage))
    assert image.get_array()[1, 1] == 4


EVIL = ['<script>alert("x")</script>', "Tom", "&", "Jerry's", "Inc", "said", "."]
EVIL_TAGS = ["O", "B-PER", "I-PER", "I-PER", "B-ORG", "O", "O"]


def _visible_text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_words_and_tags_are_escaped_and_every_entity_is_marked():
    out = render_entities_html(EVIL, EVIL_TAGS)
    assert isinstance(out, EntityHTML) and isinstance(out, str)
    assert out._repr_html_() == out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "&quot;x&quot;" in out and "Jerry&#x27;s" in out and " &amp; " in out
    assert out.count("<mark ") == 2
    assert "Tom &amp; Jerry&#x27;s" in out  # the PER entity is one span
    assert f"background:{entity_color('PER')}" in out and f"background:{entity_color('ORG')}" in out
    assert _visible_text(out).split() == [EVIL[0], "Tom", "&", "Jerry'sPER", "IncORG", "said", "."]


def test_entity_types_are_escaped_too():
    out = render_entities_html(["a", "b"], [("<b>T&\"'", 0, 0), ("X", 1, 1)])
    assert "<b>" not in out and "&lt;b&gt;T&amp;&quot;&#x27;" in out
    assert out.count("<mark ") == 2


def test_text_with_character_offsets():
    text = 'Ann <i>"Lee"</i> & co visited Paris.'
    ents = [Entity("PER", 0, 16, text[0:16], 0.9), {"type": "LOC", "start": 30, "end": 35}]
    out = render_entities_html(text, ents)
    assert "<i>" not in out and "&lt;i&gt;&quot;Lee&quot;&lt;/i&gt;" in out and "&amp; co" in out
    assert out.count("<mark ") == 2
    assert _visible_text(out) == text.replace("</i>", "</i>PER", 1).replace("Paris", "ParisLOC")
    with pytest.raises(ValueError):
        render_entities_html(text, [{"type": "LOC", "start": 0, "end": 5}, {"type": "PER", "start": 3, "end": 8}])


def test_no_entities_and_bad_input():
    out = render_entities_html(["just", "words"], ["O", "O"])
    assert "<mark" not in out and _visible_text(out) == "just words"
    assert render_entities_html("", []) == '<div class="nerbook-entities" style="line-height:2.2"></div>'
    with pytest.raises(ValueError):
        render_entities_html(["a", "b"], ["O"])


def test_reliability_diagram_draws_each_bin():
    from nerbook.calibration import reliability_bins, risk_coverage
    from nerbook.viz import plot_reliability, plot_risk_coverage

    conf = [0.15, 0.55, 0.58, 0.95, 0.97, 0.99]
    ok = [False, True, False, True, True, False]
    bins = reliability_bins(conf, ok)
    fig = plot_reliability({"before": bins, "after": bins[:2]}, title="t")
    ax = fig.axes[0]
    assert [round(p.get_height(), 3) for p in ax.patches] == [0.0, 0.5, 0.667]   # accuracy per bin
    assert [round(p.get_x(), 2) for p in ax.patches] == [0.1, 0.5, 0.9]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3"]             # the counts
    assert len(fig.axes[1].patches) == 2 and ax.get_title() == "before"
    fig = plot_risk_coverage({"T = 1": risk_coverage(conf, ok)})
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    assert list(line.get_ydata())[:3] == pytest.approx([0.0, 0.5, 2 / 3])
