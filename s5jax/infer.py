"""`s5jax infer`: an S5 system over a folder of soundscapes.

For every soundscape: tag, order silence last, separate; write one float wav per non-silent slot as
`<soundscape>_<slot>_<label>.wav`, then a per-clip record. Afterwards: the official probabilities JSON,
a labels CSV, and, with oracle targets, the scores (CA-SDRi, mixture and source accuracy; per clip,
per class, overall).

What the system computes per batch is one callable, `Engine.compute(mixture [b, 4, n]) -> (labels
[b, 3], probs [b, 3], stems [b, 3, n])` (s5jax.system.engine: `baseline_engine` builds the official
baseline from two checkpoints, `system_engine` a refined system; each Engine carries its settings and
checkpoint identities in `Engine.settings`).

Safety (the output folder may hold a user's files and other runs' results):
- Run record: every clip record `<out>/.s5jax/clips/<name>.json` carries `made_by` = the engine's
  settings (checkpoint identities, system, precision). A record made by other settings — complete, or
  left by a killed run — makes the run refuse, naming the difference; nothing is mixed.
- Claims: before writing a clip's stems the record lists them (`claimed`, `complete: false`); only
  files a record of ours claims are ever replaced or deleted. A file in the way that no record claims
  fails that clip. Top-level results (results.json, labels.csv, scores/) are ours when
  `<out>/.s5jax/run.json` exists; otherwise an existing one stops the run before any work.
- The output folder may not be, or lie inside, the input mixtures' folder or the oracle folder.
- Non-finite model outputs fail the clip (nothing written); JSON is strict (no NaN).
- Temporaries are `.part-<pid>-*`: a run removes only those whose process is dead.
- Written files and folders follow the umask.
A clip is done when its record is complete and every stem it lists exists; a re-run skips done clips.
Bad input files are reported one line each, skipped, summarised at the end, and make the exit status
non-zero.

Rates (`resample=True`, `--resample`): a soundscape at another rate than 32 kHz is resampled to 32 kHz on
load (soxr, s5jax.audio); with `out_rate="input"` its stems are resampled back and written at its own
rate and length. Scores are computed at 32 kHz (mixture, references and stems resampled on load). The
resampler and the out rate are part of the recorded settings, so a resume never mixes them.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from .audio import (fit_length, read_audio_rate, resample as resample_audio, resampled_length, resampler_identity,
                    wav_truncation, write_audio)
from .dataset import estimate_name, list_soundscapes, oracle_folder, reference_files, soundscape_folder
from .errors import S5Error, WriteError
from .files import check_writable, clean_stale_parts, part_prefix, write_csv_atomic, write_json_atomic
from .labels import LABELS, SAMPLE_RATE, SILENCE
from .runtime.memory import HeapGuard

if TYPE_CHECKING:
    from .system.engine import Engine

RUN_FILE = "run.json"
TOP_LEVEL = ("results.json", "labels.csv", "scores")


@dataclass
class InferReport:
    processed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # name -> one-line reason
    scores: dict | None = None
    records: list[dict] = field(default_factory=list)   # per-clip records of the done clips, set order


def _record_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, ".s5jax", "clips", f"{name}.json")


def _read_record(out_dir: str, name: str) -> dict | None:
    try:
        with open(_record_path(out_dir, name)) as f:
            rec = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise S5Error(f"{_record_path(out_dir, name)}: unreadable clip record ({e}); "
                      "delete it or use another --out") from None
    return rec if isinstance(rec, dict) else None


def _is_done(out_dir: str, rec: dict | None) -> bool:
    return bool(rec and rec.get("complete") and all(
        os.path.isfile(os.path.join(out_dir, e["filename"])) for e in rec.get("estimate", [])))


def _comparable(settings: dict) -> dict:
    """Settings without checkpoint paths: a moved checkpoint with the same hash is the same model."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "path"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(settings)


def settings_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    """The first difference between two settings dicts, as words ('tagger.sha256: 1a2b.. != 3c4d..'),
    or None when they agree (checkpoint paths ignored)."""
    old, new = _comparable(old), _comparable(new)
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diff = settings_difference(a, b, f"{prefix}{key}.")
            if diff:
                return diff
        elif a != b:
            short = lambda v: v[:12] + ".." if isinstance(v, str) and len(v) > 16 else json.dumps(v)
            return f"{prefix}{key}: {short(a)} then, {short(b)} now"
    return None


def _check_folders(input_dir: str, out_dir: str, oracle_dir: str | None) -> None:
    """Refuse an output folder that is, or is inside, the mixtures' folder or the oracle folder, or is
    the set folder itself (a sibling such as SET/infer_out is fine)."""
    out = os.path.realpath(out_dir)
    guarded = [("input", os.path.realpath(soundscape_folder(input_dir)))]
    if oracle_dir is not None:
        guarded.insert(0, ("oracle", os.path.realpath(oracle_dir)))
    guarded.append(("input", os.path.realpath(input_dir)))
    for k, (what, folder) in enumerate(guarded):
        inside = out.startswith(folder + os.sep) and k < len(guarded) - 1
        if out == folder or inside:
            raise S5Error(f"{out_dir}: the output folder is {'inside the' if inside else 'the'} {what} "
                          f"folder {folder}; choose a separate --out (infer never writes among its inputs)")


def _check_top_level(out_dir: str) -> None:
    """Make sure the top-level results in `out_dir` (if any) are ours to replace: checked before any
    model is loaded, and again when the folder is prepared."""
    ours = os.path.isfile(os.path.join(out_dir, ".s5jax", RUN_FILE))
    if not ours and os.path.isdir(out_dir):
        foreign = [f for f in TOP_LEVEL if os.path.lexists(os.path.join(out_dir, f))]
        if foreign:
            raise S5Error(f"{out_dir}: holds {foreign[0]} not written by s5jax infer; refusing to "
                          "overwrite it (choose another --out)")


def _prepare_out(out_dir: str, settings: dict) -> None:
    """Create the output folders, prove they are writable (a probe of this process), drop temporaries
    of dead processes, and make sure the top-level results there are ours to replace."""
    clips = os.path.join(out_dir, ".s5jax", "clips")
    try:
        if os.path.isfile(out_dir):
            raise S5Error(f"{out_dir}: is a file, not an output folder")
        _check_top_level(out_dir)
        os.makedirs(clips, exist_ok=True)
        for folder in (out_dir, clips, os.path.join(out_dir, "scores")):
            clean_stale_parts(folder)
        probe = os.path.join(out_dir, ".s5jax", part_prefix() + "probe")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise S5Error(f"{out_dir}: output folder is not writable ({e.strerror})") from None
    write_json_atomic(os.path.join(out_dir, ".s5jax", RUN_FILE), {"made_by": settings})


def _check_records(out_dir: str, clips: list[tuple[str, str]], settings: dict) -> dict[str, dict]:
    """Every existing clip record, after checking it was made by these settings (else S5Error)."""
    records = {}
    for name, _ in clips:
        rec = _read_record(out_dir, name)
        if rec is None:
            continue
        diff = settings_difference(rec.get("made_by") or {}, settings)
        if diff:
            state = "results" if rec.get("complete") else "an unfinished clip"
            raise S5Error(f"{out_dir}: holds {state} for {name} made with other settings ({diff}); "
                          "use another --out, or delete that folder to start over")
        records[name] = rec
    return records


def _write_clip(out_dir: str, name: str, labels, probs, stems, settings: dict, old: dict | None,
                rate: int = SAMPLE_RATE) -> dict:
    """Claim, then write the stems of one clip, then mark its record complete. Only files claimed by a
    record of ours are replaced or removed; anything else in the way fails the clip."""
    estimate, files = [], []
    for slot, (lab, p) in enumerate(zip(labels, probs)):
        if int(lab) == SILENCE:
            continue
        fname = estimate_name(name, slot, int(lab))
        estimate.append({"filename": fname, "label": LABELS[int(lab)], "probability": float(p)})
        files.append((fname, stems[slot]))
    claimed_before = set((old or {}).get("claimed", []))
    for fname, _ in files:
        if os.path.lexists(os.path.join(out_dir, fname)) and fname not in claimed_before:
            raise S5Error(f"{os.path.join(out_dir, fname)}: exists and was not written by s5jax infer; "
                          "not overwriting it (move it away or use another --out)")
    rec = {"soundscape": name, "made_by": settings, "complete": False,
           "claimed": sorted(claimed_before | {f for f, _ in files})}
    write_json_atomic(_record_path(out_dir, name), rec, indent=None)
    for fname, wav in files:
        write_audio(os.path.join(out_dir, fname), wav, rate)
    for stale in claimed_before - {f for f, _ in files}:     # ours, from an interrupted earlier run
        if os.path.lexists(os.path.join(out_dir, stale)):
            os.unlink(os.path.join(out_dir, stale))
    rec.update(complete=True, claimed=[f for f, _ in files], estimate=estimate,
               slots=[{"label": LABELS[int(l)], "probability": float(p)} for l, p in zip(labels, probs)])
    write_json_atomic(_record_path(out_dir, name), rec, indent=None)
    return rec


def default_batch_size() -> int:
    """Clips per batch when the user gives none: one per device on CPU, four per accelerator.

    On CPU larger batches are slower per clip (bench/bench_pipeline.py: 2.3 s/clip at batch 1 vs
    3.4 s/clip at batch 8 with the 1-ch tagger), as the activations outgrow the caches.
    """
    import jax

    per_device = 1 if jax.default_backend() == "cpu" else 4
    return per_device * jax.local_device_count()


def _first_length(clips: list[tuple[str, str]], min_samples: int, resample: bool = False) -> int | None:
    """Samples in the first soundscape whose header says it will run (4 channels, 32 kHz or resampled,
    long enough, not a truncated wav): the length `Engine.prepare` compiles for. None when no header
    says so."""
    import soundfile as sf

    for _, path in clips:
        try:
            info = sf.info(path)
            if wav_truncation(path):   # libsndfile reports the frames it holds: a length no clip has
                continue
        except Exception:        # unreadable: it is reported when its turn comes
            continue
        frames = resampled_length(info.frames, info.samplerate) if resample else info.frames
        if info.channels == 4 and (resample or info.samplerate == SAMPLE_RATE) and frames >= min_samples:
            return int(frames)
    return None


def run_infer(input_dir: str, out_dir: str, tagger_dir: str | None = None, separator_dir: str | None = None,
              oracle_dir: str | None = None, batch_size: int | None = None,
              progress: bool = True, log=print,
              engine: Callable[[int], Engine] | None = None,
              process: tuple[int, int] = (0, 1), resample: bool = False,
              out_rate: str = "model") -> InferReport:
    """Run a system over `input_dir`, write everything to `out_dir`; returns what happened.

    The system is the baseline from `tagger_dir` + `separator_dir`, or `engine(batch_size) -> Engine`
    (called once the folders are checked, so a bad folder fails before any model is loaded).
    `process` = (index, count) of a jax.distributed job: this process computes every count-th clip;
    after a barrier, process 0 alone writes results, labels and scores over all clips.
    `resample`: soundscapes at another rate are resampled to 32 kHz on load; `out_rate` "input" writes
    their stems at their own rate (needs `resample`)."""
    from tqdm import tqdm

    if batch_size is not None and batch_size < 1:
        raise S5Error(f"--batch-size must be at least 1, got {batch_size}")
    if out_rate not in ("model", "input"):
        raise S5Error(f"--out-rate must be 'model' or 'input', got {out_rate!r}")
    if out_rate == "input" and not resample:
        raise S5Error("--out-rate input writes stems at a resampled input's rate: give --resample too")
    clips = list_soundscapes(input_dir)
    if oracle_dir is None:
        oracle_dir = oracle_folder(input_dir)
    elif not os.path.isdir(oracle_dir):
        raise S5Error(f"{oracle_dir}: no such oracle folder")
    _check_folders(input_dir, out_dir, oracle_dir)
    check_writable(out_dir)              # a read-only --out fails before any model is loaded
    _check_top_level(out_dir)            # so does a foreign results.json, labels.csv or scores
    if oracle_dir is not None:
        listing = sorted(os.listdir(oracle_dir))
        if not any(reference_files(oracle_dir, name, listing) for name, _ in clips):
            raise S5Error(f"{oracle_dir}: no oracle target matches any of the {len(clips)} soundscapes "
                          "(expected <soundscape>[_<n>]_<label>.wav); wrong --oracle folder?")
    if batch_size is None:
        batch_size = default_batch_size()
    if engine is None:
        if not (tagger_dir and separator_dir):
            raise S5Error("give --tagger and --separator checkpoint folders")
        from .system.engine import baseline_engine

        eng = baseline_engine(tagger_dir, separator_dir, batch_size)
    else:
        eng = engine(batch_size)
    if resample:       # recorded with every clip: a resume never mixes resampled and other outputs
        eng.settings = {**eng.settings, "resample": {**resampler_identity(), "out_rate": out_rate}}
    existing = _check_records(out_dir, clips, eng.settings) if os.path.isdir(out_dir) else {}
    if eng.prepare is not None:       # before any output is touched: a bad checkpoint fails here
        eng.prepare(_first_length([c for c in clips if not _is_done(out_dir, existing.get(c[0]))],
                                  eng.min_samples, resample))
    _prepare_out(out_dir, eng.settings)

    report = InferReport()
    done: dict[str, dict] = {}   # name -> record of every complete clip (resumed or written now)
    todo = []
    for name, path in clips:
        if _is_done(out_dir, existing.get(name)):
            done[name] = existing[name]
            report.resumed.append(name)
        else:
            todo.append((name, path))
    if process[1] > 1:
        from .runtime.processes import share

        mine = set(share([name for name, _ in clips], process))   # from the full list: same split everywhere
        todo = [t for t in todo if t[0] in mine]
    if report.resumed:
        log(f"resuming: {len(report.resumed)} clip(s) already done, {len(todo)} to go")

    bar = tqdm(total=len(todo), desc="infer", unit="clip", disable=not progress, file=sys.stderr)
    heap = HeapGuard()                  # a kept heap must not grow with fragmentation (runtime/memory.py)

    def fail(name: str, why: str) -> None:
        report.skipped[name] = why
        log(f"skipped: {why}")

    def run(group: list[tuple[str, np.ndarray]]):
        labels, probs, stems = (np.asarray(a) for a in eng.compute(np.stack([w for _, w in group])))
        for k, (name, _) in enumerate(group):
            if not (np.isfinite(stems[k]).all() and np.isfinite(probs[k]).all()):
                fail(name, f"{dict(clips)[name]}: the model output is not finite (NaN/Inf; input level "
                           "out of range?); nothing written for this clip")
                continue
            try:
                # read again: a concurrent run with the same settings may have claimed it meanwhile
                current = _read_record(out_dir, name)
                diff = settings_difference((current or {}).get("made_by") or eng.settings, eng.settings)
                if diff:
                    raise S5Error(f"{out_dir}: another run with other settings wrote {name} meanwhile "
                                  f"({diff}); not touching it")
                rate, frames = rates[name]
                clip_stems = stems[k]
                if out_rate == "input" and rate != SAMPLE_RATE:
                    clip_stems = fit_length(resample_audio(clip_stems, SAMPLE_RATE, rate), frames)
                else:
                    rate = SAMPLE_RATE
                done[name] = _write_clip(out_dir, name, labels[k], probs[k], clip_stems, eng.settings, current,
                                         rate)
                report.processed.append(name)
            except WriteError:
                raise                    # a full disk is no clip's fault: stop, one line
            except S5Error as e:
                fail(name, str(e))
        bar.update(len(group))
        group.clear()
        heap.after_call()

    pending: dict[int, list] = {}   # clip length -> clips waiting (one jit shape per length)
    rates: dict[str, tuple[int, int]] = {}   # name -> the file's own (rate, frames)
    for name, path in todo:
        try:
            wav, rate, frames = read_audio_rate(path, channels=4, resample=resample)
            rates[name] = (rate, frames)
            if wav.shape[-1] < eng.min_samples:
                raise S5Error(f"{path}: {wav.shape[-1]} samples is too short for the models "
                              f"(at least {eng.min_samples})")
        except S5Error as e:
            fail(name, str(e))
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
    if process[1] > 1:
        from .runtime.processes import barrier

        barrier("s5jax-infer-clips", process)
        if process[0] != 0:
            return report                  # process 0 writes what covers every clip
        for name, path in clips:           # the other processes' clips, from their records
            if name not in done and name not in report.skipped:
                rec = _read_record(out_dir, name)
                if _is_done(out_dir, rec):
                    done[name] = rec
                else:
                    report.skipped[name] = f"{path}: not completed by the process that had it (see its log)"

    records = report.records = [done[name] for name, _ in clips if name in done]
    results = {"nparams": eng.nparams,
               "probabilities": [{"soundscape": r["soundscape"], "estimate": r["estimate"]} for r in records]}
    write_json_atomic(os.path.join(out_dir, "results.json"), results)
    write_csv_atomic(os.path.join(out_dir, "labels.csv"), ["soundscape", "slot", "label", "probability"],
                     [[r["soundscape"], i, s["label"], f"{s['probability']:.6f}"]
                      for r in records for i, s in enumerate(r["slots"])])

    if oracle_dir is not None:
        from .evaluate import evaluate_folder, format_summary

        paths = dict(clips)
        report.scores = evaluate_folder(out_dir, oracle_dir,
                                        [(r["soundscape"], paths[r["soundscape"]]) for r in records],
                                        out_dir, log=log, resample=resample)
        log(format_summary(report.scores))
    if report.skipped:
        log(f"{len(report.skipped)} clip(s) skipped:")
        for name, why in report.skipped.items():
            log(f"  {why}")
    return report

