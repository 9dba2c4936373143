"""Score written estimates against oracle targets: CA-SDRi and label metrics, per clip/class/overall.

Scores are computed from the files on disk (what a submission would be judged on), through the
per-clip matrices S[i, j] = SNR(stem_i, ref_j) and M[j] = SNR(mix0, ref_j), which are saved too
(`scores/matrices.npz`) so that any relabelling of the slots can later be rescored without audio.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from . import metric
from .audio import read_audio
from .dataset import estimate_files, reference_files
from .errors import S5Error
from .files import atomic_writer, write_csv_atomic, write_json_atomic
from .labels import LABELS, NUM_SLOTS, SILENCE


@jax.jit
def _clip_matrices(stems, refs, mix0):
    """stems [3, n], refs [3, n] (absent refs zero), mix0 [n] -> (S [3, 3], M [3])."""
    return metric.snr_matrix(stems, refs), metric.mixture_snr(mix0, refs)


_score = jax.jit(metric.clip_score_detail)


def clip_inputs(est_dir: str, oracle_dir: str, name: str, mixture_path: str,
                est_listing=None, ref_listing=None, resample: bool = False):
    """Read one clip's estimates, references and mixture channel 0 ->
    (est_labels [3], stems [3, n], ref_labels [3], refs [3, n], mix0 [n]); absent entries are silence/zero.
    `resample`: files at another rate are resampled to 32 kHz on load (scores are computed at 32 kHz)."""
    mix0 = read_audio(mixture_path, resample=resample)[0]
    n = mix0.shape[0]
    stems = np.zeros((NUM_SLOTS, n), np.float32)
    est_labels = np.full(NUM_SLOTS, SILENCE, np.int32)
    for path, slot, label in estimate_files(est_dir, name, est_listing):
        if slot >= NUM_SLOTS:
            raise S5Error(f"{path}: slot {slot} out of range 0..{NUM_SLOTS - 1}")
        wav = read_audio(path, channels=1, resample=resample)[0]
        if wav.shape[0] != n:
            raise S5Error(f"{path}: {wav.shape[0]} samples, the mixture has {n}")
        stems[slot], est_labels[slot] = wav, label
    refs, ref_labels = read_references(oracle_dir, name, n, ref_listing, resample)
    return est_labels, stems, ref_labels, refs, mix0


def read_references(oracle_dir: str, name: str, n: int, listing=None, resample: bool = False):
    """The oracle targets of clip `name` -> (refs [3, n] float32, zero where absent; ref_labels [3],
    silence where absent), each checked to be mono and `n` samples long (the mixture's length).
    `listing`: the oracle folder's sorted listing, when the caller has it already."""
    refs = np.zeros((NUM_SLOTS, n), np.float32)
    ref_labels = np.full(NUM_SLOTS, SILENCE, np.int32)
    found = reference_files(oracle_dir, name, listing)
    if len(found) > NUM_SLOTS:
        raise S5Error(f"{oracle_dir}: {len(found)} oracle targets for {name}, at most {NUM_SLOTS} supported")
    for j, (path, label) in enumerate(found):
        wav = read_audio(path, channels=1, resample=resample)[0]
        if wav.shape[0] != n:
            raise S5Error(f"{path}: {wav.shape[0]} samples, the mixture has {n}")
        refs[j], ref_labels[j] = wav, label
    return refs, ref_labels


def _label_names(labels) -> str:
    return " ".join(LABELS[int(x)] for x in labels if int(x) != SILENCE)


def evaluate_folder(est_dir: str, oracle_dir: str, clips: list[tuple[str, str]], out_dir: str,
                    log=print, resample: bool = False) -> dict:
    """Score the estimates in `est_dir` of `clips` [(name, mixture path)] against `oracle_dir`.

    Writes `out_dir/scores/{summary.json, per_clip.csv, matrices.npz}` and returns the summary
    (`metric.summarize` plus `skipped`). A clip whose files cannot be read is reported and skipped.
    """
    est_listing = sorted(os.listdir(est_dir))
    ref_listing = sorted(os.listdir(oracle_dir))
    total = metric.empty_totals()
    rows = []
    mats = {"names": [], "S": [], "M": [], "est_labels": [], "ref_labels": []}
    skipped = {}
    for name, mixture_path in clips:
        try:
            est_labels, stems, ref_labels, refs, mix0 = clip_inputs(
                est_dir, oracle_dir, name, mixture_path, est_listing, ref_listing, resample)
        except S5Error as e:
            skipped[name] = str(e)
            log(f"not scored: {e}")
            continue
        S, M = _clip_matrices(stems, refs, mix0)
        detail = _score(jnp.asarray(est_labels), jnp.asarray(ref_labels), S, M)
        counts = metric.label_counts(est_labels, ref_labels)
        total = metric.merge_totals(total, metric.totals(detail, counts))
        score = float(detail.score) if bool(detail.valid) else None
        rows.append([name, "" if score is None else f"{score:.6f}", _label_names(est_labels),
                     _label_names(ref_labels), counts.tp, counts.fp, counts.fn, int(counts.correct)])
        for k, v in (("names", name), ("S", S), ("M", M), ("est_labels", est_labels),
                     ("ref_labels", ref_labels)):
            mats[k].append(np.asarray(v))
    summary = metric.summarize(total)
    summary["skipped"] = skipped
    folder = os.path.join(out_dir, "scores")
    os.makedirs(folder, exist_ok=True)
    write_json_atomic(os.path.join(folder, "summary.json"), summary)
    write_csv_atomic(os.path.join(folder, "per_clip.csv"),
                     ["soundscape", "ca_sdri", "est_labels", "ref_labels", "tp", "fp", "fn", "mixture_correct"], rows)
    with atomic_writer(os.path.join(folder, "matrices.npz"), suffix=".npz") as f:
        np.savez(f, **{k: np.stack(v) if v else np.zeros((0,)) for k, v in mats.items()})
    return summary


def format_summary(s: dict) -> str:
    """A printed table of the dataset scores."""
    fmt = lambda v, unit="": "n/a" if v is None else f"{v:.3f}{unit}"
    lines = [f"CA-SDRi            {fmt(s['ca_sdri'], ' dB')}  ({s['clips_scored']} clips scored, "
             f"{s['clips_excluded']} excluded: silence on both sides)",
             f"Accuracy (mixture) {fmt(s['accuracy_mixture'], ' %')}",
             f"Accuracy (source)  {fmt(s['accuracy_source'], ' %')}  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})",
             "per class CA-SDRi:"]
    lines += [f"  {c:<18} {fmt(v, ' dB')}" for c, v in s["ca_sdri_per_class"].items() if v is not None]
    return "\n".join(lines)
