"""What a user reads: the presets named where `--system` is asked for, progress lines where a command
used to sit silent, the summary `s5jax train` ends on, the cache's entry bar."""
from __future__ import annotations

import os
import re

import pytest

from s5jax.cli import main

PRESETS = ("baseline", "system1", "system2", "system3")


def test_an_unknown_preset_lists_the_presets(tmp_path, capsys):
    assert main(["infer", str(tmp_path), "--tagger", "t", "--separator", "s", "--out", str(tmp_path / "o"),
                 "--system", "system4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s5jax: error: unknown system preset 'system4'; give a config "
                                               "JSON (e.g. a sweep's best.json) or a preset. baseline: "), err
    for name in PRESETS:
        assert f" {name}: " in err[0]
    assert "No such file" not in err[0]
    # a path that is not there is named as a file
    assert main(["sweep", "--synthetic", "3", "--out", str(tmp_path / "w"), "--system",
                 str(tmp_path / "best.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"s5jax: error: no such system config file '{tmp_path / 'best.json'}'"), err


@pytest.mark.parametrize("command", ["infer", "submit"])
def test_help_says_what_each_preset_is(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())      # argparse wraps lines, also at hyphens
    from s5jax.system.config import PRESET_SUMMARY

    assert PRESET_SUMMARY["system1"] == ("both taggers fused, stems re-tagged by the 1-ch tagger, verify and "
                                         "refine, energy and probability gates, needs --tagger2")
    assert PRESET_SUMMARY["system3"] == "system2 + separator B chosen per slot, needs --separator2"
    for name, what in PRESET_SUMMARY.items():
        assert "".join(f"{name}: {what}".split()) in text, name


def test_readme_says_what_each_preset_is():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    from s5jax.system.config import PRESET_SUMMARY

    for name, what in PRESET_SUMMARY.items():
        assert f"`{name}`: {what}" in readme, name


def test_convert_says_what_it_is_doing(golden, tmp_path, capsys):
    ckpt, out = str(golden / "resunet" / "tiny_lightning.ckpt"), tmp_path / "sep"
    assert main(["convert", ckpt, str(out), "--set", "hop=40"]) == 0
    captured = capsys.readouterr()
    # the tiny separator checkpoint: 1.48 MB, 342 tensors (ls -l; the official key list), 0.3 M values
    assert captured.out.splitlines() == [f"reading {ckpt} (1 MB)",
                                         "converting 342 tensors (0.3 M values) as a separator checkpoint",
                                         f"writing {out} (hashing and saving the weights)",
                                         f"wrote separator checkpoint to {out}"]
    assert captured.err == ""
    assert main(["convert", ckpt, str(out), "--set", "hop=40", "--quiet"]) == 0
    assert capsys.readouterr().out == f"wrote separator checkpoint to {out}\n"


def test_train_summary_is_formatted(tmp_path):
    from s5jax.training.launch import summary
    from s5jax.training.loop import TrainResult

    os.makedirs(tmp_path / "export" / "best")
    os.makedirs(tmp_path / "export" / "last")
    res = TrainResult(str(tmp_path), 30, 10, valid=[
        {"step": 20, "valid_loss": 1.23456, "ca_sdri": None, "accuracy_mixture": 37.5, "accuracy_source": 41.25},
        {"step": 30, "valid_loss": 1.5, "ca_sdri": 3.14159, "accuracy_mixture": 50.0, "accuracy_source": 60.0}],
        best_valid_loss=1.23456)
    assert summary(res, 30, str(tmp_path)).splitlines() == [
        "done: step 30/30 (resumed from step 10)",
        "last validation (step 30): loss 1.5000, CA-SDRi 3.142 dB, accuracy 50.0 % (mixture), 60.0 % (source)",
        "best validation loss 1.2346 (step 20)",
        f"exports: {tmp_path}/export/best, {tmp_path}/export/last"]
    fresh = TrainResult(str(tmp_path / "new"), 2, 0, valid=[], best_valid_loss=None)
    assert summary(fresh, 100, str(tmp_path / "new")).splitlines() == [
        "done: step 2/100", "best validation loss n/a",
        "exports: none yet (the run stopped before its first validation)"]


def test_cache_entry_bar_has_a_total(tmp_path, monkeypatch, capsys):
    """The entries bar counts against the entries each round found missing ("2/5 entries"), not a
    bare count with a unit glued on ("2entry")."""
    import s5jax.replay.cache as cache
    import s5jax.system.engine as system_engine

    class Builder:
        mine, clips, bad = ["a", "b"], [("a", ""), ("b", "")], {}

        def base(self, progress=None):
            progress(2)
            return ["a", "b"]

        def finish(self):
            return {}

    def reach(builder, configs, progress=None, found=None):      # two rounds, as after a refine
        found(3)
        progress(2)
        progress(1)
        found(2)
        progress(2)
        return 5

    monkeypatch.setattr(system_engine, "load_models", lambda *a: ("t4", "t1", "A", None))
    monkeypatch.setattr(cache.CacheBuilder, "open", classmethod(lambda cls, *a, **k: Builder()))
    monkeypatch.setattr(cache, "reach", reach)
    cache.run_cache(str(tmp_path), str(tmp_path / "c"), ["t4", "t1"], "A", progress=True, log=lambda m: None)
    bars = re.split(r"[\r\n]", capsys.readouterr().err)
    final = [b for b in bars if b.startswith("cache: entries")][-1]
    assert re.match(r"cache: entries: 100%\|.*\| 5/5 \[.*entries/s\]", final), final
