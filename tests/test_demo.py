"""`s5jax demo`: the report's Table 1 in miniature on the bundled world and models, end to end (every
step a real `s5jax` command), on a reduced clip count; the table must be sane."""
from __future__ import annotations

import os

import pytest

from s5jax.demo import paired_gain, run_demo
from s5jax.errors import S5Error


def test_paired_gain_on_a_known_construction():
    base = {"a": 1.0, "b": 2.0, "c": None, "d": 3.0}
    system = {"a": 2.0, "b": 3.0, "c": 0.0, "d": 4.0}      # +1 on every scored clip; c scored only here
    gain, lo, hi = paired_gain(system, base, resamples=500)
    # system mean (2+3+0+4)/4 = 2.25, baseline mean (1+2+3)/3 = 2.0
    assert gain == pytest.approx(0.25)
    assert lo <= gain <= hi
    same = paired_gain(base, base, resamples=200)
    assert same == (0.0, 0.0, 0.0)


def test_demo_refuses_bad_counts_before_writing(tmp_path):
    with pytest.raises(S5Error, match="--clips 0"):
        run_demo(str(tmp_path / "d"), clips=0, log=lambda m: None)
    with pytest.raises(S5Error, match="more folds"):
        run_demo(str(tmp_path / "d"), clips=3, folds=5, log=lambda m: None)
    assert not (tmp_path / "d").exists()


def test_a_failing_step_stops_the_demo_in_one_line(tmp_path):
    """The default step runner: `s5jax ARGV` in its own process, its exit status checked."""
    from s5jax.demo import _cli, run_process

    with pytest.raises(S5Error, match=r"demo step `s5jax infer .*nowhere.*` ended with status 2") as e:
        _cli(["infer", str(tmp_path / "nowhere"), "--tagger", "world:tagger-4ch", "--separator",
              "world:separator-a", "--out", str(tmp_path / "out")], run_process)
    assert "\n" not in str(e.value) and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_table_is_sane(world_dir, world_demo):
    """The demo (conftest.world_demo: its steps in-process, 3 folds, small grid) on 16 clips."""
    from conftest import WORLD_CLIPS

    out, res, lines = world_demo
    rows = {r["system"]: r for r in res["rows"]}
    silence, mixture = rows["all slots silent"], rows["mixture as every true-label stem"]
    base = rows["Baseline (4-ch tagger + separator A)"]
    from s5jax.synth.metadata import read_scenes

    scenes = read_scenes(os.path.join(world_dir, "metadata", "test.json"))[:WORLD_CLIPS]
    empty = sum(1 for _, m in scenes if not m["fg_events"])
    # the trivial references, known by construction: silence misses every source (0 dB) and is right
    # on the empty clips only; the mixture as the stem of every true label improves nothing (0 dB)
    assert silence["ca_sdri"] == 0.0
    assert silence["accuracy_mixture"] == pytest.approx(100.0 * empty / WORLD_CLIPS)
    assert abs(mixture["ca_sdri"]) < 1e-6 and mixture["accuracy_mixture"] == 100.0
    # the bundled models hear the world: above both trivial references (on these 16 clips, measured
    # 2026-12-07: 1.21 dB, 31.25 % against 0 dB / 25 %), below the oracle-label bound
    assert base["ca_sdri"] > 0.5, base
    assert base["accuracy_mixture"] > silence["accuracy_mixture"] and base["accuracy_source"] > 20, base
    assert rows["Oracle labels (separator A)"]["ca_sdri"] > base["ca_sdri"]
    for name in ("System 1: fusion + verify-and-refine, global thr.", "System 3: + dual-separator selection"):
        lo, hi = rows[name]["gain_ci95"]
        assert lo <= rows[name]["gain"] <= hi
    assert (out / "table.md").read_text().count("|") > 30
    assert (out / "sweep" / "report.md").is_file() and (out / "sweep" / "best.json").is_file()
    # where README's quick start says each system's stems and scores are
    for system in ("baseline", "system1", "system3", "tuned"):
        assert (out / system / "results.json").is_file() and (out / system / "scores" / "per_clip.csv").is_file()
        assert any(f.endswith(".wav") for f in os.listdir(out / system)), system
    assert any("s5jax sweep" in l for l in lines) and any("Go on from here" in l for l in lines)


def test_demo_writes_only_into_its_own_folder(tmp_path, monkeypatch):
    """A careless --out: a user's folder is refused before anything is written in it; a demo folder
    asked again with other settings is refused (its kept sweep and runs would be mixed into the new
    table); the same settings resume."""
    from s5jax.synth import world as world_mod

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop                              # the first step: what comes before it is the guard

    monkeypatch.setattr(world_mod, "make_world", stop)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(S5Error, match="not empty and not a demo folder") as e:
        run_demo(str(user), clips=4, folds=2, log=lambda m: None)
    assert str(user) in str(e.value) and "\n" not in str(e.value)
    assert sorted(os.listdir(user)) == ["notes.txt"] and (user / "notes.txt").read_text() == "mine"

    out = tmp_path / "demo"
    with pytest.raises(Stop):
        run_demo(str(out), clips=4, folds=2, log=lambda m: None)
    assert os.listdir(out) == ["demo.json"]
    with pytest.raises(Stop):                   # the same settings: resumes
        run_demo(str(out), clips=4, folds=2, log=lambda m: None)
    with pytest.raises(S5Error, match=r"other settings \(clips 4 -> 8\)") as e:
        run_demo(str(out), clips=8, folds=2, log=lambda m: None)
    assert "\n" not in str(e.value)
    with pytest.raises(S5Error, match=r"grid 'default' -> 'small'"):
        run_demo(str(out), clips=4, folds=2, grid="small", log=lambda m: None)
    for garbage, why in (("{not json", "unreadable demo record"), ("[1, 2]", "not a JSON object"),
                         ('{"command": "s5jax demo"}', "no settings")):
        (out / "demo.json").write_text(garbage)
        with pytest.raises(S5Error, match=why) as e:
            run_demo(str(out), clips=4, folds=2, log=lambda m: None)
        assert str(out / "demo.json") in str(e.value) and "\n" not in str(e.value)
    assert os.listdir(out) == ["demo.json"]
