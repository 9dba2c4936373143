"""`s5jax submit`: the DCASE 2026 Task 4 submission package, laid out and checked as the official
writer (the baseline's `generate_waveform.sh`) does.

    D/A_F_task4_K/
      eval_out/<soundscape>_<slot>_<label>.wav   one mono 32 kHz 16-bit PCM stem per non-silent slot
      eval_results.json           {nparams, probabilities: [{soundscape, estimate: [{filename, label,
                                   probability}]}], config}
      dev_set_test_results.json   {"CAPI-SDRi": {"mean"}, "label_metrics": {accuracy_mix, accuracy_src},
                                   nparams, details: [{soundscape, ref_labels, est_labels, probabilities,
                                   metrics: [{metric, value}]}], config}
    D/A_F_task4_K.zip             that folder at the zip's root

Built on `s5jax.infer.run_infer`: the dev-test set is inferred and scored in a work folder
`D/.s5jax-submit/A_F_task4_K/dev` (float stems, so the scores are those of the unquantised stems, as
the official evaluator computes them), the evaluation set in `.../eval`; both resume like `s5jax infer`.
The package is then assembled in `.../stage`, checked, and renamed into place; the zip is written in
the work folder, checked, and renamed into place last. A killed run picks up where it stopped.

`check_package(path)` runs the official writer's checks (and a few more that its readers rely on) on
a package folder or zip made by any tool; each failure is one line naming the file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import struct
import sys
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import soundfile as sf

from .. import __version__
from ..dataset import list_soundscapes, oracle_folder, soundscape_folder
from ..errors import S5Error
from ..files import atomic_writer, check_writable, write_json_atomic, write_text_atomic
from ..infer import run_infer, settings_difference
from ..labels import CLASSES, LABELS, SAMPLE_RATE

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
# Reading a package: a folder or a zip, behind one small interface
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WavHeader:
    channels: int
    sample_rate: int
    bits: int
    frames: int


def _wav_header(f, size: int, where: str) -> WavHeader:
    """Parse the RIFF/WAVE header of an open file of `size` bytes, chunk by chunk (seeking over the
    chunks it does not need; no sample is read)."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise PackageError(f"{where}: not a RIFF/WAVE file")
    pos, fmt = 12, None
    while pos + 8 <= size:
        f.seek(pos)
        cid, clen = struct.unpack("<4sI", f.read(8))
        if cid == b"fmt ":
            raw = f.read(16)
            if len(raw) < 16:
                break
            _, channels, rate, _, block, bits = struct.unpack("<HHIIHH", raw)
            fmt = (channels, rate, bits, block)
        elif cid == b"data":
            if fmt is None:
                raise PackageError(f"{where}: wav data chunk before its fmt chunk")
            channels, rate, bits, block = fmt
            if pos + 8 + clen > size:
                raise PackageError(f"{where}: truncated wav: data chunk declares {clen} bytes, "
                                   f"file holds {size - pos - 8}")
            return WavHeader(channels, rate, bits, clen // max(block, 1))
        pos += 8 + clen + (clen & 1)
    raise PackageError(f"{where}: truncated wav: no complete fmt and data chunks")


class _Folder:
    """A package folder `.../A_F_task4_K`."""

    def __init__(self, path: str):
        self.path, self.name = path, os.path.basename(os.path.normpath(path))

    def entries(self) -> list[str]:
        return sorted(os.listdir(self.path))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(os.path.join(self.path, rel))

    def listdir(self, rel: str) -> list[str]:
        return sorted(os.listdir(os.path.join(self.path, rel)))

    def read(self, rel: str) -> bytes:
        with open(os.path.join(self.path, rel), "rb") as f:
            return f.read()

    def header(self, rel: str) -> WavHeader:
        path = os.path.join(self.path, rel)
        with open(path, "rb") as f:
            return _wav_header(f, os.fstat(f.fileno()).st_size, self.where(rel))

    def where(self, rel: str) -> str:
        return os.path.join(self.path, rel)


class _Zip:
    """A package zip `.../A_F_task4_K.zip` holding `A_F_task4_K/` at its root."""

    def __init__(self, path: str, z: zipfile.ZipFile):
        self.path, self.z = path, z
        names = z.namelist()
        roots = sorted({n.split("/", 1)[0] for n in names})
        stem = os.path.basename(path)[:-4]
        if roots != [stem] or any("/" not in n for n in names):
            raise PackageError(f"{path}: the zip must hold exactly one folder {stem}/ at its root "
                               f"(found {', '.join(roots[:3]) or 'nothing'})")
        self.name = stem
        self.files = {n[len(stem) + 1:]: z.getinfo(n) for n in names if not n.endswith("/")}
        self.dirs = {n[len(stem) + 1:].rstrip("/") for n in names if n.endswith("/")}
        self.dirs |= {os.path.dirname(r) for r in self.files} - {""}

    def _children(self, rel: str) -> list[str]:
        pre = rel + "/" if rel else ""
        return sorted({p[len(pre):].split("/", 1)[0] for p in list(self.files) + list(self.dirs)
                       if p.startswith(pre) and p != rel and p[len(pre):]})

    def entries(self) -> list[str]:
        return self._children("")

    def is_dir(self, rel: str) -> bool:
        return rel in self.dirs

    def listdir(self, rel: str) -> list[str]:
        return self._children(rel)

    def read(self, rel: str) -> bytes:
        return self.z.read(self.files[rel])

    def header(self, rel: str) -> WavHeader:
        info = self.files[rel]
        with self.z.open(info) as f:
            return _wav_header(f, info.file_size, self.where(rel))

    def where(self, rel: str) -> str:
        return f"{self.path}:{self.name}/{rel}"


# ----------------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageSummary:
    name: str
    soundscapes: int        # evaluation soundscapes listed
    stems: int              # wavs in eval_out
    dev_clips: int          # dev-test clips in the details
    capi_sdri: float | None

    def describe(self) -> str:
        """One line, the same for `submit` and `submit --check`."""
        capi = "n/a" if self.capi_sdri is None else f"{self.capi_sdri:.3f} dB"
        return (f"{self.name}: {self.soundscapes} evaluation soundscapes, {self.stems} stems, "
                f"{self.dev_clips} dev-test clips, CAPI-SDRi {capi}")

    def warning(self) -> str | None:
        """A package the official checker accepts but that is surely not what was meant."""
        if self.stems == 0 and self.soundscapes:
            return (f"warning: {self.name} holds no stem: the system found no source in any of the "
                    f"{self.soundscapes} evaluation soundscapes (a tagger that says silence everywhere?); "
                    "the package is valid but every evaluation clip scores as missed")
        return None


def _set_names(set_dir: str) -> dict[str, str]:
    """{soundscape name: mixture path} of a set (its `soundscape/` folder, or the folder itself)."""
    return dict(list_soundscapes(set_dir))


def _json(pkg, rel: str) -> dict:
    try:
        obj = json.loads(pkg.read(rel), parse_constant=lambda c: _raise(
            PackageError(f"{pkg.where(rel)}: {c} is not valid JSON")))
    except (ValueError, UnicodeDecodeError) as e:
        raise PackageError(f"{pkg.where(rel)}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise PackageError(f"{pkg.where(rel)}: expected a JSON object at the top")
    return obj


def _raise(e: Exception):
    raise e


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise PackageError(f"{where}: {what}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_soundscape_names(names: list[str], where: str) -> None:
    """Unique, and none a prefix of another (stems are matched to soundscapes by prefix)."""
    seen = set()
    for n in names:
        _need(n not in seen, where, f"soundscape {n!r} listed twice")
        seen.add(n)
    ordered = sorted(names)
    for a, b in zip(ordered, ordered[1:]):     # a prefix of some name is a prefix of its successor
        _need(not b.startswith(a), where, f"soundscape {a!r} is a prefix of {b!r}: their stems "
                                          "cannot be told apart")


def stem_soundscape(stem: str, names: set[str], lengths: list[int], where: str) -> tuple[str, str]:
    """The one soundscape `stem` belongs to and its label; a PackageError otherwise."""
    owners = [stem[:n] for n in lengths if stem[:n] in names]
    _need(len(owners) == 1, where, "belongs to no listed soundscape" if not owners else
          f"belongs to {len(owners)} soundscapes ({', '.join(owners)})")
    m = _STEM_TAIL.fullmatch(stem[len(owners[0]):])
    _need(m is not None, where, f"name does not match {owners[0]}_<slot>_<label>.wav")
    _need(m.group(2) in CLASSES, where, f"label {m.group(2)!r} is not one of the 18 classes")
    return owners[0], m.group(2)


def _check_eval(pkg, eval_names: dict[str, str] | None) -> tuple[int, int]:
    where = pkg.where(EVAL_JSON)
    res = _json(pkg, EVAL_JSON)
    _need(isinstance(res.get("nparams"), int), where, "\"nparams\" must be an integer")
    probs = res.get("probabilities")
    _need(isinstance(probs, list), where, "\"probabilities\" must be a list")
    listed: dict[str, tuple[str, str]] = {}     # filename -> (soundscape, label)
    names = []
    for k, clip in enumerate(probs):
        _need(isinstance(clip, dict) and isinstance(clip.get("soundscape"), str)
              and isinstance(clip.get("estimate"), list), where,
              f"probabilities[{k}] must be {{\"soundscape\": str, \"estimate\": list}}")
        names.append(clip["soundscape"])
        for e in clip["estimate"]:
            ok = isinstance(e, dict) and isinstance(e.get("filename"), str) and \
                 isinstance(e.get("label"), str) and _is_number(e.get("probability"))
            _need(ok, where, f"an estimate of {clip['soundscape']} must be {{filename, label, probability}}")
            _need(e["filename"] not in listed, where, f"{e['filename']} listed twice")
            _need(0.0 <= e["probability"] <= 1.0, where, f"{e['filename']}: probability "
                                                        f"{e['probability']} outside [0, 1]")
            listed[e["filename"]] = (clip["soundscape"], e["label"])
    check_soundscape_names(names, where)
    if eval_names is not None:
        _match_sets(names, eval_names, where, "evaluation set")
    _need(pkg.is_dir(EVAL_OUT), pkg.where(EVAL_OUT), "missing (the stems folder)")
    name_set, lengths = set(names), sorted({len(n) for n in names})
    wavs = pkg.listdir(EVAL_OUT)
    frames: dict[str, int] = {}          # mixture length per soundscape (header only)
    for f in wavs:
        rel = f"{EVAL_OUT}/{f}"
        _need(f.endswith(".wav") and not pkg.is_dir(rel), pkg.where(rel), "unexpected entry (eval_out "
                                                                          "holds only the .wav stems)")
        owner, label = stem_soundscape(f, name_set, lengths, pkg.where(rel))
        _need(f in listed, pkg.where(rel), f"not listed in {EVAL_JSON}")
        _need(listed[f] == (owner, label), pkg.where(rel), f"listed in {EVAL_JSON} as "
              f"{listed[f][1]} of {listed[f][0]}, the name says {label} of {owner}")
        h = pkg.header(rel)
        _need(h.channels == 1 and h.sample_rate == SAMPLE_RATE, pkg.where(rel),
              f"{h.channels} channel(s) at {h.sample_rate} Hz, expected mono {SAMPLE_RATE} Hz")
        if eval_names is not None:
            if owner not in frames:
                frames[owner] = sf.info(eval_names[owner]).frames
            n = frames[owner]
            _need(h.frames == n, pkg.where(rel), f"{h.frames} samples, the mixture has {n}")
    missing = sorted(set(listed) - set(wavs))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PackageError(f"{where}: lists {missing[0]}, which is not in {EVAL_OUT}/{more}")
    return len(names), len(wavs)


def _match_sets(names: list[str], expected: dict[str, str], where: str, what: str) -> None:
    extra, missing = sorted(set(names) - set(expected)), sorted(set(expected) - set(names))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PackageError(f"{where}: soundscape {missing[0]} of the {what} is not listed{more}")
    if extra:
        raise PackageError(f"{where}: soundscape {extra[0]} is not in the {what}")


def _check_dev(pkg, dev_names: dict[str, str] | None) -> tuple[int, float | None]:
    where = pkg.where(DEV_JSON)
    res = _json(pkg, DEV_JSON)
    capi, lab = res.get(CAPI), res.get(LABEL_METRICS)
    _need(isinstance(capi, dict) and "mean" in capi and (capi["mean"] is None or _is_number(capi["mean"])),
          where, f"\"{CAPI}\" must be {{\"mean\": number or null}}")
    _need(isinstance(lab, dict) and _is_number(lab.get("accuracy_mix"))
          and (lab.get("accuracy_src") is None or _is_number(lab["accuracy_src"])), where,
          f"\"{LABEL_METRICS}\" must be {{\"accuracy_mix\": number, \"accuracy_src\": number or null}}")
    _need(isinstance(res.get("nparams"), int), where, "\"nparams\" must be an integer")
    details = res.get("details")
    _need(isinstance(details, list), where, "\"details\" must be a list")
    names, values = [], []
    for k, d in enumerate(details):
        ok = isinstance(d, dict) and isinstance(d.get("soundscape"), str) and all(
            isinstance(d.get(f), list) and all(x in LABELS for x in d[f]) for f in ("ref_labels", "est_labels"))
        _need(ok, where, f"details[{k}] must hold soundscape and ref_labels/est_labels among the 19 labels")
        metrics = {m.get("metric"): m.get("value") for m in d.get("metrics", []) if isinstance(m, dict)}
        _need(CAPI in metrics and (metrics[CAPI] is None or _is_number(metrics[CAPI])), where,
              f"{d['soundscape']}: no {CAPI} value (number or null) in its metrics")
        names.append(d["soundscape"])
        values.append(metrics[CAPI])
    check_soundscape_names(names, where)
    if dev_names is not None:
        _match_sets(names, dev_names, where, "dev-test set")
    scored = [v for v in values if v is not None]
    mean = sum(scored) / len(scored) if scored else None
    _need((mean is None) == (capi["mean"] is None) and (mean is None or abs(mean - capi["mean"]) <= 1e-6),
          where, f"\"{CAPI}\" mean {capi['mean']} is not the mean of the per-clip values ({mean})")
    return len(names), capi["mean"]


def _check_open(pkg, dev_dir: str | None, eval_dir: str | None) -> PackageSummary:
    _need(_PACKAGE.fullmatch(pkg.name) is not None, pkg.where(""),
          "the package folder must be named <Author>_<Affiliation>_task4_<number>")
    expected = {EVAL_OUT, EVAL_JSON, DEV_JSON}
    entries = pkg.entries()
    for e in entries:
        _need(e in expected or _AUDIO_URL.fullmatch(e), pkg.where(e), "unexpected entry in the package")
    for e in (EVAL_JSON, DEV_JSON):
        _need(e in entries, pkg.where(e), "missing")
    soundscapes, stems = _check_eval(pkg, None if eval_dir is None else _set_names(eval_dir))
    dev_clips, capi = _check_dev(pkg, None if dev_dir is None else _set_names(dev_dir))
    return PackageSummary(pkg.name, soundscapes, stems, dev_clips, capi)


def check_package(path: str, dev_dir: str | None = None, eval_dir: str | None = None) -> PackageSummary:
    """Check a package folder `.../A_F_task4_K` or zip `.../A_F_task4_K.zip`; optionally against the
    dev-test and evaluation sets it was made from. Reads the two JSONs and the wav headers only.
    Raises PackageError (one line naming the file) on the first failed check."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _check_open(_Folder(path), dev_dir, eval_dir)
    if not os.path.isfile(path):
        raise PackageError(f"{path}: no such package folder or zip")
    if not path.endswith(".zip"):
        raise PackageError(f"{path}: expected a package folder or a .zip file")
    try:
        with zipfile.ZipFile(path) as z:
            return _check_open(_Zip(path, z), dev_dir, eval_dir)
    except zipfile.BadZipFile as e:
        raise PackageError(f"{path}: not a readable zip ({e})") from None


# ----------------------------------------------------------------------------------------------------
# Writing a package
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


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def _only_empty_dirs(path: str) -> bool:
    """True if `path` is a folder holding nothing but (possibly) an empty `eval_out/`."""
    entries = os.listdir(path)
    return all(e == EVAL_OUT and os.path.isdir(os.path.join(path, e)) and not os.listdir(os.path.join(path, e))
               for e in entries)


def _check_target(final: str, ours: bool) -> None:
    """Refuse a package folder that this tool did not make and that is not empty (never delete it)."""
    if ours or not os.path.lexists(final):
        return
    if not os.path.isdir(final) or os.path.islink(final):
        raise PackageError(f"{final}: exists and is not a folder; choose another --number or --out")
    eval_out = os.path.join(final, EVAL_OUT)
    if os.path.isdir(eval_out) and os.listdir(eval_out):
        raise PackageError(f"{eval_out}: exists and is not empty; remove it or choose another --number "
                           "(nothing was deleted)")
    if not _only_empty_dirs(final):
        raise PackageError(f"{final}: exists and holds files this run did not make; remove them or choose "
                           "another --number (nothing was deleted)")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def run_submit(dev_dir: str, eval_dir: str, out_dir: str, tagger_dir: str, separator_dir: str,
               author: str, affiliation: str, number: int | str, batch_size: int | None = None,
               progress: bool = True, log: Callable = print, dev_resample: bool = False, **infer_options) -> str:
    """Make `out_dir/A_F_task4_K/` and `out_dir/A_F_task4_K.zip`; returns the zip's path.

    infer_options go to `run_infer` unchanged (e.g. `engine=`: a refined system, a precision); what they
    decide is recorded in `config` through infer's run record. `dev_resample`: the dev-test set (only)
    may be at another rate, resampled to 32 kHz on load (`s5jax infer --resample`; recorded in `config`
    as `dev_test_resample`).
    Refuses (PackageError, nothing deleted) a non-empty eval_out or a package folder or zip it did not
    make, an out folder inside a set, a dev-test set without oracle targets, any clip that could not be
    processed or scored (a package must cover every soundscape).
    """
    name = package_name(author, affiliation, number)
    check_writable(out_dir)                   # a read-only --out fails before any work
    for d, what in ((dev_dir, "--dev-test"), (eval_dir, "--eval")):
        if not os.path.isdir(d):
            raise PackageError(f"{d}: no such folder ({what})")
        if _inside(out_dir, d):
            raise PackageError(f"{out_dir}: --out is inside the {what} set {d}; choose a folder outside it")
        # the package's stems are told apart by name prefix: refuse such a set before any inference
        check_soundscape_names([n for n, _ in list_soundscapes(d)], soundscape_folder(d))
    oracle = oracle_folder(dev_dir)
    if oracle is None:
        raise PackageError(f"{dev_dir}: no oracle_target folder; --dev-test needs the dev-test set with "
                           "its oracle targets")
    final, final_zip = os.path.join(out_dir, name), os.path.join(out_dir, name + ".zip")
    work = os.path.join(out_dir, WORK, name)
    made = [d for d in (out_dir, os.path.join(out_dir, WORK), work) if not os.path.isdir(d)]
    try:
        os.makedirs(work, exist_ok=True)
    except OSError as e:
        raise PackageError(f"{out_dir}: cannot write here ({e.strerror})") from None
    lock_path = os.path.join(work, "lock")
    lock = open(lock_path, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise PackageError(f"{work}: another s5jax submit is writing this package") from None
    try:
        marker_path = os.path.join(work, "published.json")
        marker = _read_marker(marker_path)
        folder_ours = marker.get("folder") is not None and _inode(final) == marker["folder"]
        zip_ours = marker.get("zip") is not None and _inode(final_zip) == marker["zip"]
        _check_target(final, folder_ours)
        if os.path.lexists(final_zip) and not zip_ours:
            raise PackageError(f"{final_zip}: exists and was not made by this submission; remove it or "
                               "choose another --number (nothing was deleted)")
        # infer resumes (finished clips are kept) and refuses records made with other settings, so
        # a re-run never mixes models; for a package already in place only the comparison is left
        runs = {key: _infer_set(set_dir, os.path.join(work, key), oracle_dir, tagger_dir, separator_dir,
                                batch_size, progress, log, {**infer_options, **extra})
                for key, set_dir, oracle_dir, extra in (("dev", dev_dir, oracle, {"resample": dev_resample}),
                                                        ("eval", eval_dir, None, {}))}
        # what made the results: infer's run record (checkpoint identities with their sha256, system,
        # precision), the same for both sets (infer refuses mixed records)
        config = {"s5jax_version": __version__, **runs["eval"][0][0]["made_by"],
                  "dev_test": os.path.abspath(dev_dir), "eval": os.path.abspath(eval_dir)}
        if dev_resample:
            config["dev_test_resample"] = runs["dev"][0][0]["made_by"]["resample"]
        if folder_ours:
            _same_config(final, config)
        else:
            pkg = _stage(work, name, runs, config, dev_dir, eval_dir, log)
            marker = {"folder": _inode(pkg)}
            _write_marker(marker_path, marker)      # before the rename: a kill after it still knows
            _make_room(final)
            os.rename(pkg, final)
        if zip_ours and folder_ours:
            log(f"{final_zip}: already complete")
        else:
            tmp_zip = os.path.join(work, name + ".zip")
            write_zip(final, tmp_zip)
            check_package(tmp_zip, dev_dir, eval_dir)
            marker["zip"] = _inode(tmp_zip)
            _write_marker(marker_path, marker)
            os.replace(tmp_zip, final_zip)
            log(f"wrote {final_zip}")
        summary = check_package(final_zip, dev_dir, eval_dir)
        if summary.warning():
            print(f"s5jax: {summary.warning()}", file=sys.stderr)
        log(f"checked {final} and {final_zip}: {summary.describe()}")
        return final_zip
    except BaseException:
        # a refusal before any work leaves nothing behind: the lock and the folders this call made
        if made and sorted(os.listdir(work)) == ["lock"]:
            os.unlink(lock_path)
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        raise
    finally:
        lock.close()


def _infer_set(set_dir, out, oracle_dir, tagger_dir, separator_dir, batch_size, progress, log,
               infer_options) -> tuple[list[dict], int]:
    """`s5jax infer` of one set into the work folder -> (per-clip records, nparams); every clip must
    be processed (and, with oracle targets, scored)."""
    log(f"s5jax infer {set_dir} -> {out}")
    report = run_infer(set_dir, out, tagger_dir, separator_dir, oracle_dir=oracle_dir, batch_size=batch_size,
                       progress=progress, log=log, **infer_options)
    failed = {**report.skipped, **((report.scores or {}).get("skipped", {}) if oracle_dir else {})}
    if failed:
        raise PackageError(f"{set_dir}: {len(failed)} clip(s) could not be processed or scored, a package "
                           f"needs every soundscape; first: {next(iter(failed.values()))}")
    with open(os.path.join(out, "results.json")) as f:
        return report.records, json.load(f)["nparams"]


def _same_config(final: str, config: dict) -> None:
    """Refuse to complete a package this submission made earlier with other settings."""
    path = os.path.join(final, EVAL_JSON)
    try:
        with open(path) as f:
            old = json.load(f).get("config", {})
    except (OSError, ValueError, AttributeError):
        raise PackageError(f"{path}: unreadable; remove {final} to rebuild the package") from None
    diff = settings_difference(old, config)
    if diff:
        raise PackageError(f"{final}: made with other settings ({diff}); choose another --number")


def _stage(work, name, runs, config, dev_dir, eval_dir, log) -> str:
    """Assemble and check the package in `work/stage/<name>`; returns that folder."""
    stage = os.path.join(work, "stage")
    if os.path.lexists(stage):             # a killed earlier run's staging (we hold the lock)
        shutil.rmtree(stage)
    pkg = os.path.join(stage, name)
    os.makedirs(os.path.join(pkg, EVAL_OUT))
    records, nparams = runs["eval"]
    write_stems_pcm16(os.path.join(work, "eval"), os.path.join(pkg, EVAL_OUT), records)
    probabilities = [{"soundscape": r["soundscape"], "estimate": r["estimate"]} for r in records]
    write_text_atomic(os.path.join(pkg, EVAL_JSON),
                      _dump({"nparams": nparams, "probabilities": probabilities, "config": config}))
    records, nparams = runs["dev"]
    write_text_atomic(os.path.join(pkg, DEV_JSON),
                      _dump(dev_results(os.path.join(work, "dev", "scores"), records, nparams, config)))
    check_package(pkg, dev_dir, eval_dir)
    return pkg


def _make_room(final: str) -> None:
    """Remove the empty folders (only those: checked again) the user had at the package's place."""
    if os.path.lexists(final):
        _check_target(final, False)
        if os.path.isdir(os.path.join(final, EVAL_OUT)):
            os.rmdir(os.path.join(final, EVAL_OUT))
        os.rmdir(final)


def _read_marker(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_marker(path: str, marker: dict) -> None:
    write_json_atomic(path, marker)
