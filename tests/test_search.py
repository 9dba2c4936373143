"""The search over a synthetic cache with a known optimum; the margin rule; folds; `s5jax sweep` end to end
and its refusals of bad input."""
import dataclasses
import json
import os

import numpy as np
import pytest

from s5jax.cli import main
from s5jax.replay.arrays import MISSING_KEY as MISSING
from s5jax.replay.search import SMALL_GRIDS, Evaluator, Grids, search
from s5jax.replay.synthetic import SyntheticWorld
from s5jax.system.config import SystemConfig, preset

# false positives (probability 0.25-0.45) get in, are not dropped nor gated: far from the optimum
LOOSE = dataclasses.replace(preset("system1"), solo4=0.2, solo1=0.2, verify=(0.05,) * 18, drop=(0.2,) * 18,
                            energy_db=-70.0, gate=(0.0,) * 18)


def test_search_finds_the_known_optimum():
    world = SyntheticWorld(80, seed=7)
    ev = Evaluator(world.cache(), world.fill)
    oracle, missing = ev.oracle()
    assert not missing.any()
    best_possible = float(np.nanmean(oracle))
    res = search(LOOSE, ev, grids=SMALL_GRIDS, steps=("fusion", "verification", "gates", "coordinate"),
                 progress=False, log=lambda *a: None)
    assert res.start_score < best_possible - 0.5          # the start is far from it
    assert abs(res.score - best_possible) < 1e-4, (res.score, best_possible)
    # the tuned config scores the same when replayed on its own, and keeps the start's switches
    out = ev.replay(res.best)
    assert abs(float(np.nanmean(np.asarray(out.clips.score, np.float64))) - best_possible) < 1e-4
    assert res.best.switches() == LOOSE.switches()
    assert SystemConfig.from_dict(json.loads(res.best.to_json())) == res.best


def test_margin_rejects_a_gain_below_it_accepts_above():
    world = SyntheticWorld(80, seed=8)
    ev = Evaluator(world.cache(), world.fill)
    start = dataclasses.replace(LOOSE, solo4=0.5, solo1=0.2, prob_gate=True)   # 1-ch false positives pass
    grids = Grids(verify=(0.05,), drop=(0.2,), gate=(0.0, 0.5))

    def per_class(margin):
        r = search(start, ev, grids=grids, margin=margin, steps=("per_class",), progress=False, log=lambda *a: None)
        return r, {(row[0], row[1]): row for row in r.tables[-1].rows}

    r0, rows0 = per_class(0.0)
    first = next(row for row in r0.tables[-1].rows if row[-1])
    g = first[4]
    assert g > 0 and first[1] == "gate"
    _, hi = per_class(1.5 * g)
    assert not hi[(first[0], "gate")][-1] and abs(hi[(first[0], "gate")][4] - g) < 1e-6
    r_lo, lo = per_class(0.5 * g)
    assert lo[(first[0], "gate")][-1]
    cls = list(rows0).index((first[0], "gate")) // 3
    assert r_lo.best.gate[cls] == 0.5 and start.gate[cls] == 0.0


def test_sweep_cli_writes_everything_with_folds(tmp_path, capsys):
    out = tmp_path / "sw"
    start = tmp_path / "start.json"
    start.write_text(dataclasses.replace(LOOSE, separator_b=True).to_json())
    code = main(["sweep", "--synthetic", "60", "--grid", "small", "--out", str(out), "--system", str(start),
                 "--folds", "2", "--oracle", "--bootstrap", "200", "--quiet"])
    assert code == 0
    names = set(os.listdir(out))
    assert {"best.json", "report.md", "summary.json", "stage_fusion.csv", "stage_verification.csv",
            "stage_gates.csv", "coordinate.csv", "per_class_search.csv", "per_class.csv", "confusion.csv",
            "folds.csv", "thresholds.png", "progress.png", "per_class_gain.png", "confusion.png"} <= names
    assert not [n for n in names if n.startswith(".")]
    best = SystemConfig.load(out / "best.json")
    assert best.separator_b and best.switches() == dataclasses.replace(LOOSE, separator_b=True).switches()
    s = json.loads((out / "summary.json").read_text())
    assert s["tuned"] > s["start"] + 0.3 and s["tuned"] > s["baseline"]
    lo, hi = s["gain_over_baseline"]["ci95"]
    assert lo < s["gain_over_baseline"]["gain"] < hi
    assert s["oracle"] is not None and s["missing_clips"] == {"baseline": 0, "start": 0, "tuned": 0}
    folds = s["folds"]["rows"]
    assert len(folds) == 2 and sum(r[1] for r in folds) == 60
    for r in folds:
        assert all(np.isfinite(r[2:])) and r[6] > r[5]    # held-out: tuned beats the loose start
    assert len((out / "folds.csv").read_text().splitlines()) == 3
    assert "held-out" in (out / "report.md").read_text()
    assert (out / "thresholds.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("body, needle", [
    ('{"w1": 0.5, "extra": 1}', "unknown key 'extra'"),
    ('{"solo4": -1}', "key 'solo4': value -1.0 out of range"),
])
def test_sweep_bad_config_one_line_error_nothing_written(tmp_path, capsys, body, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(body)
    out = tmp_path / "out"
    assert main(["sweep", "--synthetic", "5", "--out", str(out), "--system", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s5jax: error: ") and needle in err and str(cfg) in err and "\n" not in err
    assert not out.exists()


def test_sweep_refuses_a_non_empty_out_and_bad_folds(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["sweep", "--synthetic", "5", "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["mine.txt"] and (out / "mine.txt").read_text() == "keep"
    assert main(["sweep", "--synthetic", "5", "--out", str(tmp_path / "o2"), "--folds", "1", "--quiet"]) == 2
    assert "--folds 1" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_sweep_over_a_real_cache_fills_missing_entries_from_the_models(tmp_path, capsys):
    """`s5jax cache` with tiny models, then `s5jax sweep CACHE` with the models: the entries the
    search reaches are computed between rounds, the tuned config's score equals its replay."""
    from s5jax.replay import cache as C
    from tiny_system import write_models, write_scenes

    paths = write_models(str(tmp_path / "models"))
    data = write_scenes(str(tmp_path / "data"), count=4)
    models = ["--tagger", paths["tagger-4ch"], "--tagger2", paths["tagger-1ch"], "--separator", paths["separator"]]
    cache_dir = str(tmp_path / "cache")
    assert main(["cache", data, *models, "--out", cache_dir, "--system", "baseline", "--quiet"]) == 0
    _, before = C.load(cache_dir)
    out = tmp_path / "sw"
    code = main(["sweep", cache_dir, "--out", str(out), "--system", "system1", "--grid", "small", "--input", data,
                 *models, "--bootstrap", "50", "--oracle", "--quiet"])
    assert code == 0, capsys.readouterr().err
    _, after = C.load(cache_dir)
    assert (after.keys != MISSING).sum() > (before.keys != MISSING).sum()     # entries computed on demand
    s = json.loads((out / "summary.json").read_text())
    assert s["missing_clips"] == {"baseline": 0, "start": 0, "tuned": 0} and s["search"]["fill_rounds"] > 0
    assert s["made_by"]["separator"]["kind"] == "separator"
    best = SystemConfig.load(out / "best.json")
    ev = Evaluator(after)
    r = ev.replay(best)
    assert not np.asarray(r.clips.missing).any()
    tuned = np.asarray(r.clips.score, np.float64)
    if np.isfinite(tuned).any():
        assert abs(float(np.nanmean(tuned)) - s["tuned"]) < 1e-5
