"""The submission package's names and its writer: the folder and file names of the official layout,
`package_name`, `dev_set_test_results.json` from infer's scores, the 16-bit PCM stems, the zip.
"""
from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np

from ..errors import S5Error
from ..files import atomic_writer
from ..labels import LABELS, SAMPLE_RATE


EVAL_OUT = "eval_out"
EVAL_JSON = "eval_results.json"
DEV_JSON = "dev_set_test_results.json"
CAPI = "CAPI-SDRi"              # the official metric names (keys of the dev-test JSON)
LABEL_METRICS = "label_metrics"
WORK = ".s5jax-submit"          # D/.s5jax-submit/<package>/: the resumable work of one package

_PART = r"[A-Za-z0-9][A-Za-z0-9-]*"     # author / affiliation: no "_" (it separates the name's fields)
_NUMBER = r"[1-9][0-9]*"
_PACKAGE = re.compile(rf"({_PART})_({_PART})_task4_({_NUMBER})")
_STEM_TAIL = re.compile(r"(?:_(\d+))?_(.+)\.wav")     # after the soundscape id, as the official checker
_AUDIO_URL = re.compile(rf"{_PART}_{_PART}_task4\.audio_url\.txt")


class PackageError(S5Error):
    """A submission package (or the request to make one) that breaks the official layout."""


def package_name(author: str, affiliation: str, number: int | str) -> str:
    """`A_F_task4_K`; author and affiliation are letters, digits and '-', K a positive integer."""
    for what, value, pattern in (("--author", author, _PART), ("--affiliation", affiliation, _PART),
                                 ("--number", str(number), _NUMBER)):
        if not re.fullmatch(pattern, value):
            raise PackageError(f"{what} {value!r}: use letters, digits and '-' only"
                               if pattern == _PART else f"{what} {value!r}: must be a positive integer")
    return f"{author}_{affiliation}_task4_{number}"


# ----------------------------------------------------------------------------------------------------
def _dump(obj) -> str:
    """The official writer's JSON layout (indent 4); NaN/Inf refused (strict readers reject them)."""
    return json.dumps(obj, indent=4, allow_nan=False)


def dev_results(scores_dir: str, records: list[dict], nparams: int, config: dict) -> dict:
    """`dev_set_test_results.json` from infer's scoring of the dev-test set.

    scores_dir: infer's `scores/` (its `matrices.npz`: per clip S [3, 3], M [3], est/ref labels, as the
    scores were computed from the written float stems); records: infer's per-clip records (clip order).
    Per-clip values are recomputed from those matrices with the same metric code, so they equal infer's.
    Where the official code gives None (a clip with no class on either side) or would divide by zero
    (no clip scored; no label on any side for accuracy_src), the value is None (JSON null).
    """
    import jax

    from .. import metric

    with np.load(os.path.join(scores_dir, "matrices.npz")) as m:
        mats = {k: m[k] for k in m.files}
    index = {str(n): i for i, n in enumerate(mats["names"])}
    missing = [r["soundscape"] for r in records if r["soundscape"] not in index]
    if missing:
        raise PackageError(f"{scores_dir}: {missing[0]} was not scored")
    rows = np.array([index[r["soundscape"]] for r in records], np.int64)
    est, ref = mats["est_labels"][rows], mats["ref_labels"][rows]
    # all clips in one batched call of the metric infer scored with (same per-clip arithmetic)
    scores = jax.jit(jax.vmap(metric.clip_score_detail))(est, ref, mats["S"][rows], mats["M"][rows])
    score, valid = np.asarray(scores.score), np.asarray(scores.valid)
    details, values, counts = [], [], []
    for k, rec in enumerate(records):
        value = float(score[k]) if valid[k] else None
        c = metric.label_counts(est[k], ref[k])
        values.append(value)
        counts.append(c)
        details.append({
            "soundscape": rec["soundscape"],
            "ref_labels": [LABELS[int(x)] for x in ref[k]],
            "est_labels": [s["label"] for s in rec["slots"]],
            "probabilities": [s["probability"] for s in rec["slots"]],
            "metrics": [{"metric": CAPI, "value": value},
                        {"metric": LABEL_METRICS, "value": {"acc": bool(c.correct), "tp": int(c.tp),
                                                             "fp": int(c.fp), "fn": int(c.fn)}}]})
    scored = [v for v in values if v is not None]
    tp, fp, fn = (sum(int(getattr(c, k)) for c in counts) for k in ("tp", "fp", "fn"))
    return {CAPI: {"mean": sum(scored) / len(scored) if scored else None},
            LABEL_METRICS: {"accuracy_mix": sum(bool(c.correct) for c in counts) * 100 / len(counts),
                            "accuracy_src": tp * 100 / (tp + fp + fn) if tp + fp + fn else None},
            "nparams": nparams, "details": details, "config": config}


def write_stems_pcm16(src_dir: str, dst_dir: str, records: list[dict]) -> int:
    """Copy each listed float stem of `src_dir` into `dst_dir` as 16-bit PCM (soundfile's default for
    float data, as the official writer: values beyond ±1 are clipped). Returns the count."""
    from ..audio import read_audio, write_audio

    n = 0
    for rec in records:
        for e in rec["estimate"]:
            wav = read_audio(os.path.join(src_dir, e["filename"]), channels=1)[0]
            write_audio(os.path.join(dst_dir, e["filename"]), wav, SAMPLE_RATE, subtype="PCM_16")
            n += 1
    return n


def write_zip(folder: str, zip_path: str) -> None:
    """`zip -r`: the folder (entries `<name>/...`, directories included) at the zip's root; written
    atomically (a full disk: one WriteError line, no partial zip)."""
    base = os.path.dirname(os.path.abspath(folder))
    with atomic_writer(zip_path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            z.write(root, os.path.relpath(root, base))
            for f in sorted(files):
                z.write(os.path.join(root, f), os.path.relpath(os.path.join(root, f), base))
