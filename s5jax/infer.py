"""`s5jax infer`: the baseline S5 system over a folder of soundscapes.

For every soundscape: tag, order silence last, separate; write one float wav per non-silent slot as
`<soundscape>_<slot>_<label>.wav`, then a per-clip record. Afterwards: the official probabilities JSON,
a labels CSV, and, with oracle targets, the scores (CA-SDRi, mixture and source accuracy; per clip,
per class, overall).

Resumable: a clip is done when its record `<out>/.s5jax/clips/<name>.json` exists (written last,
atomically, after its wavs) and every wav it lists exists; re-running skips done clips. Bad input
files are reported one line each, skipped, summarised at the end, and make the exit status non-zero.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .audio import read_audio, write_audio, write_text_atomic
from .dataset import estimate_files, estimate_name, list_soundscapes, oracle_folder
from .errors import S5Error
from .labels import LABELS, SILENCE


@dataclass
class InferReport:
    processed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # name -> one-line reason
    scores: dict | None = None
    records: list[dict] = field(default_factory=list)   # per-clip records of the done clips, set order


def _record_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, ".s5jax", "clips", f"{name}.json")


def _load_record(out_dir: str, name: str) -> dict | None:
    """The clip's record if the clip is complete (record and every listed wav present)."""
    path = _record_path(out_dir, name)
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if all(os.path.isfile(os.path.join(out_dir, e["filename"])) for e in rec.get("estimate", [])):
        return rec
    return None


def _check_writable(out_dir: str) -> None:
    """Create the output folders, prove they are writable, and drop temporary files that a killed
    earlier run left behind (finished files are only ever renamed into place)."""
    try:
        os.makedirs(os.path.join(out_dir, ".s5jax", "clips"), exist_ok=True)
        for folder in (out_dir, os.path.join(out_dir, ".s5jax", "clips")):
            for f in os.listdir(folder):
                if f.startswith(".part-"):
                    os.unlink(os.path.join(folder, f))
        probe = os.path.join(out_dir, ".s5jax", ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise S5Error(f"{out_dir}: output folder is not writable ({e.strerror})") from None


def _write_clip(out_dir: str, name: str, labels, probs, stems) -> dict:
    """Write the stems of one clip, then its record (the record marks the clip complete)."""
    for path, _, _ in estimate_files(out_dir, name):   # leftovers of an interrupted earlier run
        os.unlink(path)
    estimate = []
    for slot, (lab, p) in enumerate(zip(labels, probs)):
        if int(lab) == SILENCE:
            continue
        fname = estimate_name(name, slot, int(lab))
        write_audio(os.path.join(out_dir, fname), stems[slot])
        estimate.append({"filename": fname, "label": LABELS[int(lab)], "probability": float(p)})
    rec = {"soundscape": name, "estimate": estimate,
           "slots": [{"label": LABELS[int(l)], "probability": float(p)} for l, p in zip(labels, probs)]}
    write_text_atomic(_record_path(out_dir, name), json.dumps(rec))
    return rec


def default_batch_size() -> int:
    """Clips per batch when the user gives none: one per device on CPU, four per accelerator.

    On CPU larger batches are slower per clip (bench/bench_pipeline.py: 2.3 s/clip at batch 1 vs
    3.4 s/clip at batch 8 with the 1-ch tagger), as the activations outgrow the caches.
    """
    import jax

    per_device = 1 if jax.default_backend() == "cpu" else 4
    return per_device * jax.local_device_count()


def run_infer(input_dir: str, out_dir: str, tagger_dir: str, separator_dir: str,
              oracle_dir: str | None = None, batch_size: int | None = None, progress: bool = True, log=print) -> InferReport:
    """Run the baseline over `input_dir`, write everything to `out_dir`; returns what happened."""
    from tqdm import tqdm

    from . import Separator, Tagger
    from .pipeline import sharded_baseline

    clips = list_soundscapes(input_dir)
    if oracle_dir is None:
        oracle_dir = oracle_folder(input_dir)
    elif not os.path.isdir(oracle_dir):
        raise S5Error(f"{oracle_dir}: no such oracle folder")
    _check_writable(out_dir)
    tagger = Tagger.from_checkpoint(tagger_dir)
    separator = Separator.from_checkpoint(separator_dir)
    system = sharded_baseline(tagger.apply_fn, tagger.variables, separator.apply_fn, separator.variables)
    if batch_size is None:
        batch_size = default_batch_size()
    min_samples = max(tagger.min_samples, separator.min_samples)

    report = InferReport()
    done: dict[str, dict] = {}   # name -> record of every complete clip (resumed or written now)
    todo = []
    for name, path in clips:
        if (rec := _load_record(out_dir, name)) is not None:
            done[name] = rec
            report.resumed.append(name)
        else:
            todo.append((name, path))
    if report.resumed:
        log(f"resuming: {len(report.resumed)} clip(s) already done, {len(todo)} to go")

    bar = tqdm(total=len(todo), desc="infer", unit="clip", disable=not progress, file=sys.stderr)

    def run(group: list[tuple[str, np.ndarray]]):
        out = system(np.stack([w for _, w in group]), pad_to=batch_size)
        for k, (name, _) in enumerate(group):
            done[name] = _write_clip(out_dir, name, out.labels[k], out.probs[k], out.stems[k])
            report.processed.append(name)
        bar.update(len(group))
        group.clear()

    pending: dict[int, list] = {}   # clip length -> clips waiting (one jit shape per length)
    for name, path in todo:
        try:
            wav = read_audio(path, channels=4)
            if wav.shape[-1] < min_samples:
                raise S5Error(f"{path}: {wav.shape[-1]} samples is too short for the models "
                              f"(at least {min_samples})")
        except S5Error as e:
            report.skipped[name] = str(e)
            log(f"skipped: {e}")
            bar.update(1)
            continue
        group = pending.setdefault(wav.shape[-1], [])
        group.append((name, wav))
        if len(group) == batch_size:
            run(group)
    for group in pending.values():
        if group:
            run(group)
    bar.close()

    records = report.records = [done[name] for name, _ in clips if name in done]
    nparams = int(tagger.num_params + separator.num_params)
    results = {"nparams": nparams,
               "probabilities": [{"soundscape": r["soundscape"], "estimate": r["estimate"]} for r in records]}
    write_text_atomic(os.path.join(out_dir, "results.json"), json.dumps(results, indent=1))
    rows = ["soundscape,slot,label,probability"]
    rows += [f"{r['soundscape']},{i},{s['label']},{s['probability']:.6f}"
             for r in records for i, s in enumerate(r["slots"])]
    write_text_atomic(os.path.join(out_dir, "labels.csv"), "\n".join(rows) + "\n")

    if oracle_dir is not None:
        from .evaluate import evaluate_folder, format_summary

        paths = dict(clips)
        report.scores = evaluate_folder(out_dir, oracle_dir,
                                        [(r["soundscape"], paths[r["soundscape"]]) for r in records],
                                        out_dir, log=log)
        log(format_summary(report.scores))
    if report.skipped:
        log(f"{len(report.skipped)} clip(s) skipped:")
        for name, why in report.skipped.items():
            log(f"  {why}")
    return report

