"""`s5jax sweep`: tune a system config over the cache and write what was found.

    OUT/best.json          the tuned config (loadable by `infer --system`, `SystemConfig.load`)
    OUT/stage_<name>.csv   every config a stage tried (fusion, verification, gates) with its CA-SDRi;
                           coordinate.csv and per_class_search.csv: every decision with its gain
    OUT/per_class.csv      CA-SDRi per class (baseline, start, tuned), false alarms on silent clips
    OUT/confusion.csv      label confusion of the tuned config (rows reference, columns estimate)
    OUT/folds.csv          with --folds K: in-sample and held-out scores of each fold
    OUT/summary.json       every headline figure (scores, gain and its 95 % interval, oracle, folds)
    OUT/report.md          all of it for people; OUT/*.png plots

OUT must be new or empty: a sweep never overwrites what it did not write.  Every file is written
atomically.  The bad-input checks (config, options, OUT) run before anything is computed or written.
"""
from __future__ import annotations

import io
import os
from typing import Callable

import numpy as np

from ..errors import S5Error
from ..files import write_bytes_atomic, write_json_atomic, write_text_atomic
from ..labels import CLASSES, LABELS, NUM_CLASSES
from ..system.config import SystemConfig, preset
from .arrays import CacheArrays
from .search import (Evaluator, Grids, SMALL_GRIDS, bootstrap_gain, class_report, fold_ids, params_of,
                     search)

GRIDS = {"default": Grids(), "small": SMALL_GRIDS}


def check_out_dir(out_dir: str) -> None:
    """OUT must not be a file nor a non-empty folder (a sweep overwrites nothing it did not write)."""
    if os.path.isfile(out_dir):
        raise S5Error(f"{out_dir}: is a file; give a new or empty folder for the sweep's outputs")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise S5Error(f"{out_dir}: folder is not empty; give a new or empty folder for the sweep's outputs")


def _csv(columns, rows) -> str:
    def cell(x):
        if isinstance(x, (bool, np.bool_)):
            return "1" if x else "0"
        if isinstance(x, (float, np.floating)):
            return f"{float(x):.6g}"
        return str(x)
    return "\n".join([",".join(columns)] + [",".join(cell(x) for x in r) for r in rows]) + "\n"


def _table(columns, rows, limit: int | None = None) -> str:
    """A plain text table (also valid markdown)."""
    rows = rows if limit is None else rows[:limit]
    cells = [[f"{x:.4f}" if isinstance(x, (float, np.floating)) else str(x) for x in r] for r in rows]
    width = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda r: "| " + " | ".join(x.rjust(w) for x, w in zip(r, width)) + " |"   # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in width) + "|"] + [line(r) for r in cells])


def _png(fig, out_dir: str, name: str, written: list[str]) -> None:
    """Write `fig` as OUT/name atomically, close it, and list `name` in `written`."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(os.path.join(out_dir, name), buf.getvalue())
    plt.close(fig)
    written.append(name)


def _plots(out_dir: str, res, per_class_rows, confusion) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    stages = [t for t in res.tables if t.name in ("fusion", "verification", "gates")]
    panels = [(t, i) for t in stages for i in range(len(t.columns) - 1)]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False)
        for ax, (t, i) in zip(axes[0], panels):
            vals = sorted({r[i] for r in t.rows})
            best = [np.nanmax([r[-1] for r in t.rows if r[i] == v] + [np.nan]) for v in vals]
            ax.plot(vals, best, "o-")
            ax.set_xlabel(t.columns[i])
            ax.set_title(t.name, fontsize=9)
        axes[0][0].set_ylabel("best CA-SDRi (dB)")
        _png(fig, out_dir, "thresholds.png", written)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(len(res.progress)), [s for _, s in res.progress], "o-")
    ax.set_xticks(range(len(res.progress)), [n for n, _ in res.progress], rotation=30, fontsize=8)
    ax.set_ylabel("CA-SDRi (dB)")
    ax.set_title("search progress")
    _png(fig, out_dir, "progress.png", written)
    fig, ax = plt.subplots(figsize=(8, 3))
    gains = [r[-2] if np.isfinite(r[-2]) else 0.0 for r in per_class_rows]
    ax.bar(range(NUM_CLASSES), gains)
    ax.set_xticks(range(NUM_CLASSES), CLASSES, rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("tuned − baseline (dB)")
    ax.set_title("per-class CA-SDRi gain")
    _png(fig, out_dir, "per_class_gain.png", written)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(np.log1p(confusion), cmap="viridis")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=90, fontsize=6)
    ax.set_yticks(range(len(LABELS)), LABELS, fontsize=6)
    ax.set_xlabel("estimate")
    ax.set_ylabel("reference")
    ax.set_title("label confusion (log 1+count)")
    _png(fig, out_dir, "confusion.png", written)
    return written


def run_sweep(cache: CacheArrays, start: SystemConfig, out_dir: str, fill: Callable | None = None,
              grids: Grids = Grids(), margin: float = 0.01, folds: int = 0, oracle: bool = False,
              bootstrap: int = 1000, seed: int = 0, progress: bool = True, made_by: dict | None = None,
              log=print) -> dict:
    """Search, evaluate and write everything (see the module doc); returns the summary dict."""
    from tqdm.auto import tqdm

    check_out_dir(out_dir)
    if folds == 1 or folds < 0:
        raise S5Error(f"--folds {folds}: give 0 (no folds) or at least 2")
    n = int(cache.keys.shape[0])
    if folds > n:
        raise S5Error(f"--folds {folds}: more folds than the {n} clip(s) of the cache")
    if not margin >= 0:
        raise S5Error(f"--margin {margin}: must be >= 0")
    ev = Evaluator(cache, fill)
    log(f"sweep over {n} clip(s), start config switches: {start.switches()}")
    res = search(start, ev, grids=grids, margin=margin, progress=progress, log=log)

    base_cfg = preset("baseline")
    if oracle:
        o, om = ev.oracle()
    for _ in range(4):      # until no fill happens between them: entry indices refer to one cache
        rounds = ev.fill_rounds
        runs = {name: ev.replay(cfg) for name, cfg in (("baseline", base_cfg), ("start", start), ("tuned", res.best))}
        if ev.fill_rounds == rounds:
            break
    clip_scores = {k: np.where(np.asarray(r.clips.valid), np.asarray(r.clips.score, np.float64), np.nan)
                   for k, r in runs.items()}
    missing = {k: int(np.asarray(r.clips.missing).sum()) for k, r in runs.items()}
    score = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in clip_scores.items()}
    accuracy = {k: float(np.mean(np.asarray(r.correct)[~np.asarray(r.clips.missing)])) for k, r in runs.items()}
    gain, lo, hi = bootstrap_gain(clip_scores["tuned"], clip_scores["baseline"], bootstrap, seed)
    summary = {"clips": n, "baseline": score["baseline"], "start": score["start"], "tuned": score["tuned"],
               "tag_accuracy": accuracy, "missing_clips": missing,
               "gain_over_baseline": {"gain": gain, "ci95": [lo, hi], "bootstrap": bootstrap},
               "search": {"margin": margin, "steps": [[s, v] for s, v in res.progress],
                          "fill_rounds": ev.fill_rounds, "unscored_configs": ev.unscored},
               "best": res.best.to_dict(), "made_by": made_by or {}}
    if oracle:
        summary["oracle"] = float(np.nanmean(o)) if np.isfinite(o).any() else float("nan")
        summary["oracle_missing_clips"] = int(om.sum())

    fold_rows = []
    if folds:
        fid = fold_ids(n, folds, seed)
        for f in tqdm(range(folds), desc="folds", disable=not progress):
            train = (fid != f).astype(np.float32)
            held = (fid == f).astype(np.float32)[None]
            r = search(start, ev, weights=train, grids=grids, margin=margin, progress=False, log=lambda *a: None)
            sw = start.switches()
            ho = ev.scores(params_of([start, r.best]), sw, held)[:, 0]
            hb = ev.scores(params_of([base_cfg]), base_cfg.switches(), held)[0, 0]
            fold_rows.append([f, int(held.sum()), r.start_score, r.score, float(hb), float(ho[0]), float(ho[1]),
                              float(ho[1] - ho[0]), float(ho[1] - hb)])
        cols = ["fold", "clips", "in_start", "in_tuned", "held_baseline", "held_start", "held_tuned",
                "held_gain_over_start", "held_gain_over_baseline"]
        summary["folds"] = {"k": folds, "columns": cols, "rows": fold_rows,
                            "mean_held_gain_over_start": float(np.nanmean([r[7] for r in fold_rows])),
                            "mean_in_sample_gain": float(np.nanmean([r[3] - r[2] for r in fold_rows]))}

    reports = {k: class_report(r, ev.cache) for k, r in runs.items()}

    def per_class_mean(rep, c):
        return float(rep.class_sum[c] / rep.class_count[c]) if rep.class_count[c] else float("nan")
    per_class_rows = []
    for c in range(NUM_CLASSES):
        b, s, t = (per_class_mean(reports[k], c) for k in ("baseline", "start", "tuned"))
        per_class_rows.append([CLASSES[c], int(reports["tuned"].class_count[c]), b, s, t, t - b,
                               int(reports["baseline"].false_alarms[c]), int(reports["tuned"].false_alarms[c])])
    pc_cols = ["class", "values", "baseline", "start", "tuned", "gain", "fa_silent_baseline", "fa_silent_tuned"]
    conf = reports["tuned"].confusion
    summary["false_alarm_clips"] = {k: [int(r.silent_clips_alarmed), int(r.silent_clips)] for k, r in reports.items()}

    # ---- write (OUT checked above; created now)
    os.makedirs(out_dir, exist_ok=True)   # mkdir follows the umask
    write_text_atomic(os.path.join(out_dir, "best.json"), res.best.to_json())
    for t in res.tables:
        fname = f"stage_{t.name}.csv" if t.name in ("fusion", "verification", "gates") else (
            "coordinate.csv" if t.name == "coordinate" else "per_class_search.csv")
        write_text_atomic(os.path.join(out_dir, fname), _csv(t.columns, t.rows))
    write_text_atomic(os.path.join(out_dir, "per_class.csv"), _csv(pc_cols, per_class_rows))
    write_text_atomic(os.path.join(out_dir, "confusion.csv"),
                      _csv(["reference"] + list(LABELS), [[LABELS[i]] + list(conf[i]) for i in range(len(LABELS))]))
    if fold_rows:
        write_text_atomic(os.path.join(out_dir, "folds.csv"), _csv(summary["folds"]["columns"], fold_rows))
    pngs = _plots(out_dir, res, per_class_rows, conf)
    write_json_atomic(os.path.join(out_dir, "summary.json"), _finite(summary))

    head = [["baseline (4-ch tagger alone)", score["baseline"], 100 * accuracy["baseline"]],
            ["start config", score["start"], 100 * accuracy["start"]],
            ["tuned (in-sample)", score["tuned"], 100 * accuracy["tuned"]]]
    if oracle:
        head.append(["oracle labels (separator A)", summary["oracle"], 100.0])
    md = ["# s5jax sweep", "", f"{n} clips; margin {margin:g} dB; start switches `{start.switches()}`.", "",
          _table(["system", "CA-SDRi (dB)", "tag acc. (%)"], head), "",
          f"Gain of the tuned config over the baseline: {gain:+.4f} dB, 95 % bootstrap interval "
          f"[{lo:+.4f}, {hi:+.4f}] ({bootstrap} resamples of the clips). In-sample: the thresholds were tuned "
          "on these clips; see the folds for what they are worth on unseen clips.", ""]
    if fold_rows:
        md += [f"## {folds}-fold held-out scores", "", _table(summary["folds"]["columns"], fold_rows), "",
               f"Mean held-out gain over the start config: {summary['folds']['mean_held_gain_over_start']:+.4f} dB "
               f"(in-sample: {summary['folds']['mean_in_sample_gain']:+.4f} dB).", ""]
    for t in res.tables:
        rows = sorted(t.rows, key=lambda r: -np.nan_to_num(r[-1], nan=-1e9)) if t.name in (
            "fusion", "verification", "gates") else t.rows
        md += [f"## Stage {t.name} ({len(t.rows)} rows{', best 10' if len(rows) > 10 else ''})", "",
               _table(t.columns, rows, 10), ""]
    md += ["## Per class", "", _table(pc_cols, per_class_rows), "",
           f"False alarms on clips with no reference: baseline {summary['false_alarm_clips']['baseline'][0]} "
           f"of {summary['false_alarm_clips']['baseline'][1]} clips, tuned {summary['false_alarm_clips']['tuned'][0]}.",
           "", "Missing entries (never scored): " + ", ".join(f"{k} {v}" for k, v in missing.items())
           + f"; fill rounds {ev.fill_rounds}.", "", "Plots: " + ", ".join(pngs), ""]
    write_text_atomic(os.path.join(out_dir, "report.md"), "\n".join(md))
    log("\n".join(md[4:8]))
    for t in res.tables:
        if t.name in ("coordinate", "per_class"):
            acc = [r for r in t.rows if r[-1]]
            if acc:
                log(f"{t.name}: accepted\n" + _table(t.columns, acc))
    log(f"wrote {out_dir}/best.json, report.md, {len(res.tables)} stage tables, {len(pngs)} plots")
    return summary


def _finite(x):
    """NaN -> None so summary.json stays strict JSON."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating,)):
        return _finite(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


__all__ = ["run_sweep", "check_out_dir", "GRIDS"]
