"""`s5jax demo`: the report's Table 1 in miniature, on the bundled world with the bundled models.

    s5jax demo [--out runs/demo] [--clips N] [--folds K] [--grid small]

1. the bundled world (`s5jax world make`, s5jax/synth/world.py) with its held-out test split;
2. two trivial references scored by the official metric: every slot silent, and the mixture's
   channel 0 as the stem of every true label (SDRi 0 by definition, tags all right);
3. the baseline (4-ch tagger -> separator A), System 1 (fusion + verify-and-refine + gates, global
   thresholds) and System 3 (+ separator B), each a real `s5jax infer` run of the bundled models
   (s5jax/bundled.py, trained by `s5jax train` on the world's train split);
4. `s5jax cache` and `s5jax sweep --folds K --oracle` (tuned thresholds by exact replay, held-out
   folds, the oracle-label bound), then `s5jax infer --system best.json`;
5. one table (CA-SDRi, mixture and source label accuracy, each system's gain over the baseline with a
   paired bootstrap 95 % interval over clips), written to OUT/table.md and OUT/table.json, and the
   commands to go on from here.

Every step is the command a user would type, run as its own process (so what is printed is what
ran); every step resumes: a re-run skips what is complete.
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from .errors import S5Error

BOOTSTRAP = 2000


def run_process(argv: list[str]) -> int:
    """Run `s5jax ARGV` as its own process, exactly as typed (its output goes to the terminal) -> status."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "s5jax.cli", *argv]).returncode


def _cli(argv: list[str], runner=run_process) -> None:
    """One demo step: `runner(argv)` -> exit status; any status but 0 stops the demo (one line)."""
    code = runner(argv)
    if code != 0:
        raise S5Error(f"demo step `s5jax {' '.join(argv)}` ended with status {code}")


MARKER = "demo.json"


def _claim(out: str, settings: dict) -> None:
    """Make `out` the demo's folder, or check it already is one of this run's settings: a folder
    holding anything else (a user's files, another command's output) or a demo made with other
    settings (its sweep and runs would be kept and mixed into this table) is refused in one line,
    before any work."""
    from .files import check_writable, read_record, write_json_atomic

    check_writable(out)
    marker = os.path.join(out, MARKER)
    record = read_record(marker, "demo record")
    if record is not None:
        old = record.get("settings")
        if not isinstance(old, dict):
            raise S5Error(f"{marker}: unreadable demo record (no settings); choose another --out")
        if old != settings:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
            raise S5Error(f"{out}: a demo made with other settings ({diff}); choose another --out "
                          "(its results would be mixed with this run's)")
        return
    if os.path.isdir(out) and any(not n.startswith(".") for n in os.listdir(out)):
        raise S5Error(f"{out}: not empty and not a demo folder (no {MARKER}); choose a new or empty --out "
                      "(the demo never writes among files it did not make)")
    os.makedirs(out, exist_ok=True)
    write_json_atomic(marker, {"command": "s5jax demo", "settings": settings})


def _subset(src: str, dst: str, clips: int, start: int = 0) -> str:
    """`clips` soundscapes of set `src` from its `start`-th on (in name order) and their oracle
    targets, as hard links (copies where links are not possible) in `dst`."""
    import shutil

    from .dataset import list_soundscapes, reference_files
    from .files import atomic_writer

    names = list_soundscapes(src)[start:start + clips]
    oracle = os.path.join(src, "oracle_target")
    listing = sorted(os.listdir(oracle))
    for sub in ("soundscape", "oracle_target"):
        os.makedirs(os.path.join(dst, sub), exist_ok=True)
    for name, path in names:
        files = [(p, os.path.join(dst, "oracle_target", os.path.basename(p)))
                 for p, _ in reference_files(oracle, name, listing)]
        files.append((path, os.path.join(dst, "soundscape", os.path.basename(path))))   # last: complete
        for a, b in files:
            if not os.path.exists(b):
                try:
                    os.link(a, b)
                except OSError:                  # another file system: copied, atomically
                    with open(a, "rb") as src, atomic_writer(b) as f:
                        shutil.copyfileobj(src, f)
    return dst


def _trivial(testset: str, out: str, kind: str) -> dict:
    """Score a trivial system: 'silence' (no stems) or 'mixture' (channel 0 as the stem of every
    true label). Returns the evaluation summary (written under out/scores)."""
    from .audio import read_audio, write_audio
    from .dataset import estimate_name, list_soundscapes, reference_files
    from .evaluate import evaluate_folder

    clips = list_soundscapes(testset)
    oracle = os.path.join(testset, "oracle_target")
    summary_path = os.path.join(out, "scores", "summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            return json.load(f)
    stems = os.path.join(out, "stems")
    os.makedirs(stems, exist_ok=True)
    if kind == "mixture":
        listing = sorted(os.listdir(oracle))
        for name, path in clips:
            mix0 = None
            for slot, (_, label) in enumerate(reference_files(oracle, name, listing)):
                target = os.path.join(stems, estimate_name(name, slot, label))
                if not os.path.exists(target):
                    mix0 = read_audio(path, channels=4)[0] if mix0 is None else mix0
                    write_audio(target, mix0)
    return evaluate_folder(stems, oracle, clips, out, log=lambda m: None)


def _per_clip(run: str) -> dict[str, float | None]:
    with open(os.path.join(run, "scores", "per_clip.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["soundscape"]: (float(r["ca_sdri"]) if r["ca_sdri"] not in ("", None) else None) for r in rows}


def paired_gain(system: dict, base: dict, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """Gain of a system's dataset CA-SDRi over the baseline's and its 95 % bootstrap interval: clips
    are resampled with replacement (the same draw for both), each side's CA-SDRi taken as the official
    mean over its own scored clips of the draw."""
    names = sorted(base)
    s = np.array([np.nan if system.get(n) is None else system[n] for n in names])
    b = np.array([np.nan if base[n] is None else base[n] for n in names])

    def mean(x, idx):
        v = x[idx]
        ok = np.isfinite(v)
        return np.where(ok, v, 0.0).sum(-1) / np.maximum(ok.sum(-1), 1)

    full = np.arange(len(names))
    gain = float(mean(s, full) - mean(b, full))
    idx = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    g = mean(s, idx) - mean(b, idx)
    return gain, float(np.percentile(g, 2.5)), float(np.percentile(g, 97.5))


def _row(name: str, summary: dict | None, per_clip=None, base=None, note: str = "") -> dict:
    row = {"system": name, "ca_sdri": summary.get("ca_sdri") if summary else None,
           "accuracy_mixture": summary.get("accuracy_mixture") if summary else None,
           "accuracy_source": summary.get("accuracy_source") if summary else None, "note": note}
    if per_clip is not None and base is not None:
        g, lo, hi = paired_gain(per_clip, base)
        row.update(gain=g, gain_ci95=[lo, hi])
    return row


def format_table(rows: list[dict]) -> str:
    def f(v, d=2):
        return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{d}f}"

    lines = ["| system | CA-SDRi (dB) | mixture acc. (%) | source acc. (%) | gain over baseline (dB, 95 % CI) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        gain = ""
        if r.get("gain") is not None:
            lo, hi = r["gain_ci95"]
            gain = f"{r['gain']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        elif r.get("gain_text"):
            gain = r["gain_text"]
        lines.append(f"| {r['system']} | {f(r['ca_sdri'])} | {f(r['accuracy_mixture'], 1)} | "
                     f"{f(r['accuracy_source'], 1)} | {gain} |")
    return "\n".join(lines)


def run_demo(out: str = "runs/demo", clips: int | None = None, world: str | None = None, folds: int = 5,
             grid: str = "default", batch_size: int | None = None, quiet: bool = False, log=print,
             runner=run_process) -> dict:
    """Steps 1-5 in `out`; returns {"rows": the table rows, "commands": what ran}. Each `s5jax` step
    is `runner(argv)` -> exit status: its own process by default, as a user would type it (a caller
    that runs many demos, like the tests, can pass `s5jax.cli.main` to keep one process)."""
    from . import bundled, checkpoint
    from .files import write_json_atomic, write_text_atomic
    from .synth.world import WorldConfig, make_world, testset_dir

    total = WorldConfig().test_clips
    if clips is not None and not 1 <= clips <= total:
        raise S5Error(f"--clips {clips}: give 1 to {total} (the world's test split)")
    if folds and clips is not None and folds > clips:
        raise S5Error(f"--folds {folds}: more folds than the {clips} clip(s)")
    models = {k: bundled.path(k) for k in bundled.NAMES}        # missing models fail before any work
    out = os.path.abspath(out)
    world = os.path.abspath(world or os.path.join(out, "world"))
    _claim(out, {"clips": clips, "world": world, "folds": folds, "grid": grid,
                 "models": {k: checkpoint.stored_hash(checkpoint.read_meta(v)) for k, v in models.items()}})
    log(f"[1/5] the bundled world in {world}")
    make_world(world, render=clips, log=log, progress=not quiet)
    testset = testset_dir(world)
    if clips is not None and clips < total:
        testset = _subset(testset, os.path.join(out, f"testset_{clips}"), clips)
    n = len([f for f in os.listdir(os.path.join(testset, "soundscape")) if f.endswith(".wav")])
    T4, T1, A, B = (f"world:{k}" for k in bundled.NAMES)
    q = ["--quiet"] if quiet else []
    runs = {k: os.path.join(out, k) for k in ("baseline", "system1", "system3", "tuned")}
    cache, sweep = os.path.join(out, "cache"), os.path.join(out, "sweep")
    bs = ["--batch-size", str(batch_size)] if batch_size else []
    commands = {
        "baseline": ["infer", testset, "--tagger", T4, "--separator", A, "--out", runs["baseline"], *bs],
        "system1": ["infer", testset, "--system", "system1", "--tagger", T4, "--tagger2", T1, "--separator", A,
                    "--out", runs["system1"], *bs],
        "system3": ["infer", testset, "--system", "system3", "--tagger", T4, "--tagger2", T1, "--separator", A,
                    "--separator2", B, "--out", runs["system3"], *bs],
        "cache": ["cache", testset, "--tagger", T4, "--tagger2", T1, "--separator", A, "--separator2", B,
                  "--out", cache, *bs],
        "sweep": ["sweep", cache, "--out", sweep, "--oracle", "--grid", grid, *(["--folds", str(folds)] if folds else []),
                  "--input", testset, "--tagger", T4, "--tagger2", T1, "--separator", A, "--separator2", B],
        "tuned": ["infer", testset, "--system", os.path.join(sweep, "best.json"), "--tagger", T4, "--tagger2", T1,
                  "--separator", A, "--separator2", B, "--out", runs["tuned"], *bs],
    }
    log(f"[2/5] trivial references on {n} clips")
    trivial = {k: _trivial(testset, os.path.join(out, f"trivial_{k}"), k) for k in ("silence", "mixture")}
    log("[3/5] baseline, System 1, System 3 (s5jax infer)")
    for k in ("baseline", "system1", "system3"):
        log(f"$ s5jax {' '.join(commands[k])}")
        _cli(commands[k] + q, runner)
    log("[4/5] cache, sweep (folds, oracle), the tuned system")
    for k in ("cache", "sweep", "tuned"):
        if k == "sweep" and os.path.isfile(os.path.join(sweep, "summary.json")):
            log(f"{sweep}: the sweep is done (kept)")
            continue
        log(f"$ s5jax {' '.join(commands[k])}")
        _cli(commands[k] + q, runner)

    log("[5/5] the table")
    scores = {}
    for k, v in runs.items():
        with open(os.path.join(v, "scores", "summary.json")) as f:
            scores[k] = json.load(f)
    per_clip = {k: _per_clip(v) for k, v in runs.items()}
    base = per_clip["baseline"]
    with open(os.path.join(sweep, "summary.json")) as f:
        sw = json.load(f)
    rows = [_row("all slots silent", trivial["silence"], note="trivial"),
            _row("mixture as every true-label stem", trivial["mixture"], note="trivial (SDRi 0 by definition)"),
            _row("Baseline (4-ch tagger + separator A)", scores["baseline"]),
            _row("System 1: fusion + verify-and-refine, global thr.", scores["system1"], per_clip["system1"], base),
            _row("System 3: + dual-separator selection", scores["system3"], per_clip["system3"], base),
            _row("Tuned by the sweep (in-sample)", scores["tuned"], per_clip["tuned"], base,
                 note="thresholds tuned on these same clips")]
    if sw.get("folds"):
        cols = sw["folds"]["columns"]
        held = [r[cols.index("held_gain_over_baseline")] for r in sw["folds"]["rows"]]
        held = [h for h in held if h is not None]
        rows.append({"system": f"Tuned, held out ({sw['folds']['k']} folds)", "ca_sdri": None,
                     "accuracy_mixture": None, "accuracy_source": None, "note": "per-fold gains",
                     "gain_text": (f"{np.mean(held):+.2f} (folds {min(held):+.2f} … {max(held):+.2f})"
                                   if held else "n/a"), "held_gains": held})
    oracle = sw.get("oracle")
    rows.append({"system": "Oracle labels (separator A)", "ca_sdri": oracle,
                 "accuracy_mixture": 100.0 if oracle is not None else None, "accuracy_source": None,
                 "note": "the labelling bound",
                 "gain_text": f"{oracle - scores['baseline']['ca_sdri']:+.2f}"
                 if oracle is not None and scores["baseline"]["ca_sdri"] is not None else ""})
    table = format_table(rows)
    head = (f"Bundled world, held-out test split: {n} clips of 10 s; bundled models trained by `s5jax train` "
            f"(train/configs/world/). Intervals: paired bootstrap over clips ({BOOTSTRAP} resamples).")
    write_text_atomic(os.path.join(out, "table.md"), head + "\n\n" + table + "\n")
    write_json_atomic(os.path.join(out, "table.json"), {"clips": n, "rows": rows,
                                                          "commands": [["s5jax", *c] for c in commands.values()]})
    log("")
    log(head)
    log(table)
    log("")
    log(f"The table is in {out}/table.md, the sweep's report and plots in {sweep}/.")
    log("Go on from here (the same commands, your paths):")
    log(f"  s5jax infer {testset} --tagger {T4} --separator {A} --out runs/my_infer")
    log(f"  s5jax cache {testset} --tagger {T4} --tagger2 {T1} --separator {A} --separator2 {B} --out runs/my_cache")
    log(f"  s5jax sweep runs/my_cache --out runs/my_sweep --folds 5 --oracle")
    log(f"  s5jax submit --dev-test {testset} --eval {testset}/soundscape --tagger {T4} --separator {A} "
        f"--system {sweep}/best.json --tagger2 {T1} --separator2 {B} --author Me --affiliation Lab --number 1 "
        f"--out runs/my_submission")
    log(f"  s5jax world make runs/world && s5jax train tagger train/configs/world/quick_tagger.json")
    return {"rows": rows, "commands": commands}
