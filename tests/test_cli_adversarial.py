"""``nerbook train --adversarial fgm|pgd --adv-eps --adv-steps``: trains, records, refuses nonsense."""

from __future__ import annotations

import json

import pytest

from nerbook.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_documents_the_adversarial_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--adversarial {fgm,pgd}", "--adv-eps EPS", "--adv-steps K"):
        assert option in text


@pytest.mark.parametrize("flags", [["--adversarial", "fgm", "--adv-eps", "0.5"],
                                   ["--adversarial", "pgd", "--adv-steps", "2"]], ids=["fgm", "pgd"])
def test_train_with_an_adversary_keeps_its_settings_in_the_checkpoint(tmp_path, conll_dir, capsys, flags):
    code, out, err = run(capsys, "train", "--train", conll_dir, "--model", "tiny", "--out", tmp_path / "run",
                         "--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--max-length", "64",
                         "--limit", "48", "--json", *flags)
    assert code == 0, err
    r = json.loads(out)
    assert 0.0 <= r["dev_f1"] <= 1.0
    meta = json.loads((tmp_path / "run" / "best" / "nerbook.json").read_text())
    cfg = meta["train_config"]
    assert cfg["adversarial"] == flags[1]
    assert (cfg["adv_eps"], cfg["adv_steps"]) == ((0.5, 3) if flags[1] == "fgm" else (0.1, 2))


@pytest.mark.parametrize("flags, match", [
    (["--adv-eps", "0.5"], "--adv-eps: needs --adversarial fgm or pgd"),
    (["--adv-steps", "2"], "--adv-steps: needs --adversarial fgm or pgd"),
    (["--adversarial", "fgm", "--adv-steps", "2"], "--adv-steps: FGM takes one step; use --adversarial pgd"),
])
def test_adversarial_options_without_meaning_are_one_line_errors(tmp_path, conll_dir, capsys, flags, match):
    code, out, err = run(capsys, "train", "--train", conll_dir, "--model", "tiny", "--out", tmp_path / "o",
                         "--limit", "8", *flags)
    assert code == 2 and out == "" and err == f"nerbook: error: {match}\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags", [["--adversarial", "fgsm"], ["--adversarial", "fgm", "--adv-eps", "0"],
                                   ["--adversarial", "pgd", "--adv-steps", "0"]])
def test_bad_adversarial_values_exit_2(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", str(tmp_path), "--out", str(tmp_path / "o"), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --adv" in err and err.strip().splitlines()[-1].startswith("nerbook train: error:")
