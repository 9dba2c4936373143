"""`s5jax sweep`: tune a system config over the cache and write what was found.

    OUT/best.json          the tuned config (loadable by `infer --system`, `SystemConfig.load`)
    OUT/stage_<name>.csv   every config a stage tried (fusion, verification, gates) with its CA-SDRi
                           (nan: unscored); coordinate.csv and per_class_search.csv: every step with the
                           best other value tried, its gain, whether it was accepted and the value kept
    OUT/per_class.csv      CA-SDRi per class (baseline, start, tuned) with each system's value count and
                           the references of the class, false alarms on silent clips
    OUT/per_clip.csv       each clip's references, and per system (baseline, start, tuned) its labels,
                           CA-SDRi and status (scored / none: no reference and no estimate / missing)
    OUT/confusion.csv      label confusion of the tuned config (rows reference, columns estimate)
    OUT/folds.csv          with --folds K: in-sample and held-out scores of each fold
    OUT/summary.json       every headline figure (scores, gain and its 95 % interval, oracle, folds,
                           unscored configs per stage, the known optimum of a synthetic cache)
    OUT/report.md          all of it for people; OUT/*.png plots

OUT must be new or empty: a sweep never overwrites what it did not write.  Everything is written into a
temporary folder beside OUT (`.part-<pid>-<name>-*`, created before any work, so an unwritable place
fails at once), which becomes OUT in one rename at the end: OUT exists only complete.  A failing run
removes its temporary folder; a killed one leaves it (safe to delete) and a re-run starts afresh.  The
bad-input checks (config, options, OUT) run before anything is computed or written.

A config, the baseline or the start that needs entries the cache lacks (and no models were given to
compute them) is reported unscored: its CA-SDRi is never computed from part of the clips.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from typing import Callable, Sequence

import numpy as np

from ..errors import S5Error
from ..files import dir_mode, part_prefix, write_bytes_atomic, write_json_atomic, write_text_atomic
from ..labels import CLASSES, LABELS, NUM_CLASSES, SILENCE
from ..system.config import SystemConfig, preset
from .arrays import CacheArrays
from .search import (Evaluator, Grids, SMALL_GRIDS, bootstrap_gain, class_report, fold_ids, params_of,
                     search)

GRIDS = {"default": Grids(), "small": SMALL_GRIDS}
SYSTEMS = ("baseline", "start", "tuned")
REACHED_TOL = 1e-4          # dB: the tuned score within this of a known optimum has reached it


def check_out_dir(out_dir: str) -> None:
    """OUT must not be a file nor a non-empty folder (a sweep overwrites nothing it did not write)."""
    if os.path.isfile(out_dir):
        raise S5Error(f"{out_dir}: is a file; give a new or empty folder for the sweep's outputs")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise S5Error(f"{out_dir}: folder is not empty; give a new or empty folder for the sweep's outputs")


def _temp_out(out_dir: str) -> str:
    """The run's temporary output folder beside OUT (its parent created if need be), mode from the umask."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    name = os.path.basename(os.path.abspath(out_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f"{part_prefix()}{name}-", dir=parent)
    except OSError as e:
        raise S5Error(f"{out_dir}: cannot write here ({e.strerror})") from None
    os.chmod(tmp, dir_mode())
    return tmp


def _publish(tmp: str, out_dir: str) -> None:
    """Rename the finished temporary folder to OUT (replacing OUT only if it is an empty folder)."""
    try:
        os.rename(tmp, out_dir)
    except OSError as e:
        raise S5Error(f"{out_dir}: cannot put the results there ({e.strerror}; did something write into it "
                      f"during the sweep?); they are complete in {tmp}") from None


def _cell(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "1" if x else "0"
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


def _csv(columns, rows) -> str:
    """CSV text (the csv module: a comma or quote in a clip name is quoted, not a broken row)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(x) for x in r])
    return buf.getvalue()


def _table(columns, rows, limit: int | None = None) -> str:
    """A plain text table (also valid markdown); floats with 4 decimals, NaN as "—"."""
    rows = rows if limit is None else rows[:limit]

    def fmt(x):
        if isinstance(x, (bool, np.bool_)):
            return "yes" if x else "no"
        if isinstance(x, (float, np.floating)):
            return f"{x:.4f}" if np.isfinite(x) else "—"
        return str(x)
    cells = [[fmt(x) for x in r] for r in rows]
    width = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = lambda r: "| " + " | ".join(x.rjust(w) for x, w in zip(r, width)) + " |"   # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in width) + "|"] + [line(r) for r in cells])


def _dB(x: float, unscored: str = "unscored") -> str:
    return f"{x:.4f}" if np.isfinite(x) else unscored


# ----------------------------------------------------------------------------------------------------
# Plots: each a figure built from the data written beside it (tests read the artists back)
# ----------------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def thresholds_figure(tables):
    """Best CA-SDRi per value of each threshold of the grid stages, one panel per threshold, on ONE
    y-scale (a panel of its own would blow a 0.003 dB spread up to full height); values whose every
    config was unscored are marked with an x on the axis.  None when no grid stage ran."""
    plt = _pyplot()
    stages = [t for t in tables if t.name in ("fusion", "verification", "gates")]
    panels = [(t, i) for t in stages for i in range(len(t.columns) - 1)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), squeeze=False, sharey=True)
    finite = [r[-1] for t in stages for r in t.rows if np.isfinite(r[-1])]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = max(0.05 * (hi - lo), 0.01)
    for ax, (t, i) in zip(axes[0], panels):
        vals = sorted({r[i] for r in t.rows})
        scored = [[r[-1] for r in t.rows if r[i] == v and np.isfinite(r[-1])] for v in vals]
        best = [max(s) if s else np.nan for s in scored]
        ax.plot(vals, best, "o-")
        none = [v for v, s in zip(vals, scored) if not s]
        if none:
            ax.plot(none, [lo - pad] * len(none), "x", color="red", clip_on=False, label="unscored")
            ax.legend(fontsize=7)
        ax.set_xlabel(t.columns[i])
        ax.set_title(f"{t.name}" + (f" ({t.unscored} of {t.tried} unscored)" if t.unscored else ""), fontsize=9)
    axes[0][0].set_ylim(lo - 2 * pad, hi + pad)
    axes[0][0].set_ylabel("best CA-SDRi (dB), same scale in every panel")
    return fig


def progress_figure(progress):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(len(progress)), [s for _, s in progress], "o-")
    ax.set_xticks(range(len(progress)), [n for n, _ in progress], rotation=30, fontsize=8)
    ax.set_ylabel("CA-SDRi (dB)")
    ax.set_title("search progress")
    return fig


def per_class_gain_figure(columns, rows):
    """Bars of the per-class `gain` column (tuned − baseline, dB); a class without a gain (no value in
    one of the two) gets no bar and an "n/a" mark."""
    plt = _pyplot()
    g = columns.index("gain")
    gains = [float(r[g]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(range(len(rows)), [x if np.isfinite(x) else 0.0 for x in gains])
    for i, x in enumerate(gains):
        if not np.isfinite(x):
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("tuned − baseline (dB)")
    ax.set_title("per-class CA-SDRi gain of the tuned config over the baseline")
    return fig


def confusion_figure(confusion, which: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.log1p(confusion), cmap="viridis")
    fig.colorbar(im, ax=ax, label="log(1 + clips)")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=90, fontsize=6)
    ax.set_yticks(range(len(LABELS)), LABELS, fontsize=6)
    ax.set_xlabel("estimate")
    ax.set_ylabel("reference")
    ax.set_title(f"label confusion of {which}")
    return fig


def figures(res, per_class_columns, per_class_rows, confusion) -> dict:
    """{file name: matplotlib figure} of a sweep's plots."""
    figs = {"thresholds.png": thresholds_figure(res.tables), "progress.png": progress_figure(res.progress),
            "per_class_gain.png": per_class_gain_figure(per_class_columns, per_class_rows),
            "confusion.png": confusion_figure(confusion, "the tuned config (best.json)")}
    return {k: v for k, v in figs.items() if v is not None}


def _write_png(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())
    _pyplot().close(fig)


# ----------------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------------

def _class_cell(mean: float, count: int, refs: int) -> str:
    """A per-class value for people: "—" without values; a class with values but no reference on the
    scored clips is all false alarms (each counts 0 dB), not a measured 0 dB."""
    if count == 0:
        return "—"
    if refs == 0:
        return f"FA only ({count})"
    return f"{mean:.4f}"


def run_sweep(cache: CacheArrays, start: SystemConfig, out_dir: str, fill: Callable | None = None,
              grids: Grids = Grids(), margin: float = 0.01, folds: int = 0, oracle: bool = False,
              bootstrap: int = 1000, seed: int = 0, progress: bool = True, made_by: dict | None = None,
              names: Sequence[str] | None = None, known_optimum: float | None = None, log=print) -> dict:
    """Search, evaluate and write everything (see the module doc); returns the summary dict.

    names: the clips' names (per_clip.csv; default clip0000...); known_optimum: the best dataset
    CA-SDRi of a synthetic cache by construction (reported with whether the tuned config reached it)."""
    check_out_dir(out_dir)
    if folds == 1 or folds < 0:
        raise S5Error(f"--folds {folds}: give 0 (no folds) or at least 2")
    n = int(cache.keys.shape[0])
    if folds > n:
        raise S5Error(f"--folds {folds}: more folds than the {n} clip(s) of the cache")
    if not margin >= 0:
        raise S5Error(f"--margin {margin}: must be >= 0")
    names = [f"clip{i:04d}" for i in range(n)] if names is None else list(names)
    if len(names) != n:
        raise ValueError(f"{len(names)} names for {n} clips")
    tmp = _temp_out(out_dir)              # before any work: an unwritable place fails now
    try:
        summary = _sweep(cache, start, tmp, fill, grids, margin, folds, oracle, bootstrap, seed, progress,
                         made_by, names, known_optimum, log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)      # ours alone: made by this run
        raise
    _publish(tmp, out_dir)
    log(f"wrote {out_dir}: best.json, report.md, summary.json, per_class.csv, per_clip.csv, tables and plots")
    return summary


def _sweep(cache, start, out, fill, grids, margin, folds, oracle, bootstrap, seed, progress, made_by, names,
           known_optimum, log) -> dict:
    from tqdm.auto import tqdm

    n = int(cache.keys.shape[0])
    ev = Evaluator(cache, fill, log=log)
    log(f"sweep over {n} clip(s), start config switches: {start.switches()}")
    res = search(start, ev, grids=grids, margin=margin, progress=progress, log=log)
    base_cfg = preset("baseline")
    if oracle:
        o, om = ev.oracle()

    fold_rows, fold_unscored = [], 0
    if folds:
        fid = fold_ids(n, folds, seed)
        for f in tqdm(range(folds), desc="folds", disable=not progress):
            train = (fid != f).astype(np.float32)
            held = (fid == f).astype(np.float32)[None]
            r = search(start, ev, weights=train, grids=grids, margin=margin, progress=False, log=lambda *a: None)
            fold_unscored += sum(t.unscored for t in r.tables)
            ho = ev.scores(params_of([start, r.best]), start.switches(), held)[:, 0]
            hb = ev.scores(params_of([base_cfg]), base_cfg.switches(), held)[0, 0]
            fold_rows.append([f, int(held.sum()), r.start_score, r.score, float(hb), float(ho[0]), float(ho[1]),
                              float(ho[1] - ho[0]), float(ho[1] - hb)])

    # the final replays last, repeated until no fill happens between them: their entry indices must
    # refer to the cache the per-class report reads
    for _ in range(4):
        rounds = ev.fill_rounds
        runs = {k: ev.replay(cfg) for k, cfg in zip(SYSTEMS, (base_cfg, start, res.best))}
        if ev.fill_rounds == rounds:
            break
    reports = {k: class_report(r, ev.cache) for k, r in runs.items()}
    missing = {k: np.asarray(r.clips.missing) for k, r in runs.items()}
    clip_scores = {k: np.where(np.asarray(r.clips.valid), np.asarray(r.clips.score, np.float64), np.nan)
                   for k, r in runs.items()}
    # a system missing entries on any clip is unscored (a mean over part of the clips compares with nothing)
    score = {k: float(np.nanmean(v)) if np.isfinite(v).any() and not missing[k].any() else float("nan")
             for k, v in clip_scores.items()}
    accuracy = {k: float(np.mean(np.asarray(r.correct)[~missing[k]])) if (~missing[k]).any() else float("nan")
                for k, r in runs.items()}
    if np.isfinite(score["tuned"]) and np.isfinite(score["baseline"]):
        gain, lo, hi = bootstrap_gain(clip_scores["tuned"], clip_scores["baseline"], bootstrap, seed)
    else:
        gain = lo = hi = float("nan")
    stages = {t.name: {"tried": t.tried, "unscored": t.unscored} for t in res.tables}
    summary = {"clips": n, "baseline": score["baseline"], "start": score["start"], "tuned": score["tuned"],
               "tag_accuracy": accuracy, "missing_clips": {k: int(v.sum()) for k, v in missing.items()},
               "gain_over_baseline": {"gain": gain, "ci95": [lo, hi], "bootstrap": bootstrap},
               "search": {"margin": margin, "steps": [[s, v] for s, v in res.progress],
                          "fill_rounds": ev.fill_rounds, "filled_clips": ev.filled_clips,
                          "unscored_configs": sum(t.unscored for t in res.tables), "stages": stages},
               "best": res.best.to_dict(), "made_by": made_by or {}}
    if oracle:
        summary["oracle"] = float(np.nanmean(o)) if np.isfinite(o).any() and not om.any() else float("nan")
        summary["oracle_missing_clips"] = int(om.sum())
    if known_optimum is not None:
        reached = bool(np.isfinite(score["tuned"]) and score["tuned"] >= known_optimum - REACHED_TOL)
        summary["known_optimum"] = {"score": float(known_optimum), "reached": reached,
                                    "tuned_minus_optimum": score["tuned"] - float(known_optimum)}
    fold_cols = ["fold", "clips", "in_start", "in_tuned", "held_baseline", "held_start", "held_tuned",
                 "held_gain_over_start", "held_gain_over_baseline"]
    if folds:
        with np.errstate(invalid="ignore"):
            summary["folds"] = {"k": folds, "columns": fold_cols, "rows": fold_rows,
                                "mean_held_gain_over_start": _nanmean([r[7] for r in fold_rows]),
                                "mean_in_sample_gain": _nanmean([r[3] - r[2] for r in fold_rows]),
                                "unscored_configs": fold_unscored}

    # per class: each system's mean, its value count, the references of the class on its scored clips
    def mean(rep, c):
        return float(rep.class_sum[c] / rep.class_count[c]) if rep.class_count[c] else float("nan")
    pc_cols = ["class", "references", "values_baseline", "values_start", "values_tuned", "baseline", "start",
               "tuned", "gain", "fa_silent_baseline", "fa_silent_tuned"]
    per_class_rows = []
    for c in range(NUM_CLASSES):
        b, s, t = (mean(reports[k], c) for k in SYSTEMS)
        per_class_rows.append([CLASSES[c], int(reports["tuned"].references[c])]
                              + [int(reports[k].class_count[c]) for k in SYSTEMS] + [b, s, t, t - b,
                              int(reports["baseline"].false_alarms[c]), int(reports["tuned"].false_alarms[c])])
    conf = reports["tuned"].confusion
    summary["false_alarm_clips"] = {k: [int(r.silent_clips_alarmed), int(r.silent_clips)] for k, r in reports.items()}

    # per clip
    refs = np.asarray(cache.ref_labels)

    def labels_text(row):
        return " ".join(LABELS[int(c)] for c in row if int(c) != SILENCE)
    clip_cols = ["clip", "references"] + [f"{k}_{x}" for k in SYSTEMS for x in ("labels", "ca_sdri", "status")]
    clip_rows = []
    for i in range(n):
        row = [names[i], labels_text(refs[i])]
        for k in SYSTEMS:
            if missing[k][i]:
                row += ["", "", "missing"]
            else:
                v = clip_scores[k][i]
                row += [labels_text(np.asarray(runs[k].clips.labels)[i]), "" if not np.isfinite(v) else float(v),
                        "scored" if np.isfinite(v) else "none"]
        clip_rows.append(row)

    # ---- write (into the temporary folder)
    write_text_atomic(os.path.join(out, "best.json"), res.best.to_json())
    for t in res.tables:
        fname = f"stage_{t.name}.csv" if t.name in ("fusion", "verification", "gates") else (
            "coordinate.csv" if t.name == "coordinate" else "per_class_search.csv")
        write_text_atomic(os.path.join(out, fname), _csv(t.columns, t.rows))
    write_text_atomic(os.path.join(out, "per_class.csv"), _csv(pc_cols, per_class_rows))
    write_text_atomic(os.path.join(out, "per_clip.csv"), _csv(clip_cols, clip_rows))
    write_text_atomic(os.path.join(out, "confusion.csv"),
                      _csv(["reference"] + list(LABELS), [[LABELS[i]] + list(conf[i]) for i in range(len(LABELS))]))
    if fold_rows:
        write_text_atomic(os.path.join(out, "folds.csv"), _csv(fold_cols, fold_rows))
    pngs = []
    for name, fig in figures(res, pc_cols, per_class_rows, conf).items():
        _write_png(fig, os.path.join(out, name))
        pngs.append(name)
    write_json_atomic(os.path.join(out, "summary.json"), _finite(summary))
    md, head = _report(summary, start, res, per_class_rows, pc_cols, reports, pngs, oracle)
    write_text_atomic(os.path.join(out, "report.md"), "\n".join(md))

    log("\n".join(md[4:head]))
    for t in res.tables:
        if t.name in ("coordinate", "per_class"):
            acc = [r for r in t.rows if r[5]]
            if acc:
                log(f"{t.name}: accepted\n" + _table(t.columns, acc))
    return summary


def _nanmean(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _report(summary, start, res, per_class_rows, pc_cols, reports, pngs, oracle) -> tuple[list[str], int]:
    """report.md as lines, and where its head (also printed on the console) ends; every figure it states
    is read from `summary` (so the two never disagree)."""
    n = summary["clips"]
    miss = summary["missing_clips"]
    acc = summary["tag_accuracy"]
    names = {"baseline": "baseline (4-ch tagger alone)", "start": "start config", "tuned": "tuned (in-sample)"}

    def acc_cell(k):
        return f"{100 * acc[k]:.1f}" if np.isfinite(acc[k]) else "—"
    top = [[names[k], _dB(summary[k]), acc_cell(k), miss[k]] for k in SYSTEMS]
    if oracle:
        o_ok = np.isfinite(summary["oracle"])
        top.append(["oracle labels (separator A)", _dB(summary["oracle"]), "100.0" if o_ok else "—",
                     summary["oracle_missing_clips"]])
    md = ["# s5jax sweep", "", f"{n} clips; margin {summary['search']['margin']:g} dB; start switches "
          f"`{start.switches()}`.", "",
          _table(["system", "CA-SDRi (dB)", "tag acc. (%)", "clips missing entries"], top), ""]
    unscored = [k for k in SYSTEMS if miss[k]] + (["oracle"] if oracle and summary["oracle_missing_clips"] else [])
    if unscored:
        md += ["Unscored: " + "; ".join(f"{k} misses cache entries on "
                                        f"{miss[k] if k in miss else summary['oracle_missing_clips']} of {n} clips"
                                        for k in unscored)
               + ". The cache lacks them and no models were given to compute them (give --input and the "
               "models); a score over part of the clips would compare with nothing, so none is reported.", ""]
    g = summary["gain_over_baseline"]
    if np.isfinite(g["gain"]):
        lo, hi = g["ci95"]
        md += [f"Gain of the tuned config over the baseline: {g['gain']:+.4f} dB, 95 % bootstrap interval "
               f"[{lo:+.4f}, {hi:+.4f}] ({g['bootstrap']} resamples of the clips)."]
    else:
        md += ["Gain of the tuned config over the baseline: not available ("
               + ("the baseline" if not np.isfinite(summary["baseline"]) else "the tuned config") + " is unscored)."]
    if "folds" in summary:
        md += [f"In-sample: the thresholds were tuned on these clips; the {summary['folds']['k']}-fold held-out "
               "scores below show what they are worth on unseen clips.", ""]
    else:
        md += ["In-sample: the thresholds were tuned on these clips; run with --folds K to see what they are "
               "worth on unseen clips.", ""]
    if "known_optimum" in summary:
        k = summary["known_optimum"]
        verdict = (f"reached (within {REACHED_TOL:g} dB)" if k["reached"] else
                   f"not reached ({k['tuned_minus_optimum']:+.4f} dB)" if np.isfinite(k["tuned_minus_optimum"])
                   else "not reached (the tuned config is unscored)")
        md += [f"Known optimum of this synthetic cache, by construction: {k['score']:.4f} dB (the reference labels "
               f"as queries through separator A). Tuned: {_dB(summary['tuned'])} dB: {verdict}."
               + (" Separator B's stems are up to 0.5 dB better or worse per stem, so a config selecting B "
                  "may pass it." if start.separator_b else ""), ""]
    s = summary["search"]
    if s["unscored_configs"]:
        md += [f"Configs left unscored (the cache lacks their entries; never scored from made-up numbers): "
               f"{s['unscored_configs']} of {sum(v['tried'] for v in s['stages'].values())} tried ("
               + ", ".join(f"{name} {v['unscored']} of {v['tried']}" for name, v in s["stages"].items())
               + "). A config is chosen among the scored ones only.", ""]
    else:
        md += ["Every config tried was scored.", ""]
    md += [f"Entries computed on demand: {s['fill_rounds']} fill round(s), {s['filled_clips']} clip(s).", ""]
    head = len(md)
    if "folds" in summary:
        f = summary["folds"]
        md += [f"## {f['k']}-fold held-out scores", "", _table(f["columns"], f["rows"]), "",
               f"Mean held-out gain over the start config: {_dB(f['mean_held_gain_over_start'], '—')} dB "
               f"(in-sample: {_dB(f['mean_in_sample_gain'], '—')} dB)."
               + (f" {f['unscored_configs']} configs of the folds' searches were unscored." if f["unscored_configs"]
                  else ""), ""]
    for t in res.tables:
        if t.name in ("fusion", "verification", "gates"):
            rows = sorted(t.rows, key=lambda r: -np.nan_to_num(r[-1], nan=-1e9))
            md += [f"## Stage {t.name} ({t.tried} configs"
                   + (f", {t.unscored} unscored" if t.unscored else "") + (", best 10" if len(rows) > 10 else "")
                   + ")", "", _table(t.columns, rows, 10), ""]
        else:
            acc_rows = [r for r in t.rows if r[5]]
            md += [f"## {'Coordinate descent' if t.name == 'coordinate' else 'Per-class search'} "
                   f"({len(t.rows)} steps, {len(acc_rows)} accepted"
                   + (f"; {t.unscored} of {t.tried} configs unscored" if t.unscored else "") + ")", "",
                   "Each step: the best other value tried, its gain over the current score, and the value kept.",
                   ""]
            shown = t.rows if t.name == "coordinate" else acc_rows
            md += ([_table(t.columns, shown), ""] if shown else ["No change accepted.", ""])
    cell_rows = []
    for r in per_class_rows:
        c = CLASSES.index(r[0])
        cells = [_class_cell(r[5 + j], r[2 + j], int(reports[k].references[c])) for j, k in enumerate(SYSTEMS)]
        cell_rows.append([r[0], r[1], r[2], r[3], r[4]] + cells + [r[8], r[9], r[10]])
    md += ["## Per class", "", "CA-SDRi per class (dB) over each system's scored clips; `values_*`: how many values "
           "each system gave the class (matches, misses and false alarms); \"FA only (n)\": the class has no "
           "reference there, its n values are false alarms (0 dB each).", "", _table(pc_cols, cell_rows), "",
           f"False alarms on clips with no reference: baseline {summary['false_alarm_clips']['baseline'][0]} "
           f"of {summary['false_alarm_clips']['baseline'][1]} clips, tuned {summary['false_alarm_clips']['tuned'][0]} "
           f"of {summary['false_alarm_clips']['tuned'][1]}.", "",
           "Per-clip scores of the three systems: per_clip.csv.", "", "Plots: " + ", ".join(pngs), ""]
    return md, head


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


__all__ = ["run_sweep", "check_out_dir", "GRIDS", "figures"]
