"""`check_package`: the official writer's checks (and a few more its readers rely on) on a package
folder or zip made by any tool, reading the two JSONs and the wav headers only (s5jax.audio's header
reader); each failure is one line naming the file.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass

import soundfile as sf

from ..audio import wav_chunks
from ..dataset import list_soundscapes
from ..labels import CLASSES, LABELS, SAMPLE_RATE
from .writer import (CAPI, DEV_JSON, EVAL_JSON, EVAL_OUT, LABEL_METRICS, PackageError, _AUDIO_URL, _PACKAGE,
                     _STEM_TAIL)


# ------------------------------------------------------------------------------------------------------
# Reading a package: a folder or a zip, behind one small interface
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WavHeader:
    channels: int
    sample_rate: int
    bits: int
    frames: int


def _wav_header(f, size: int, where: str) -> WavHeader:
    """The header of an open wav of `size` bytes (s5jax.audio.wav_chunks; no sample is read)."""
    chunks = wav_chunks(f, size)
    if chunks is None:
        raise PackageError(f"{where}: not a RIFF/WAVE file")
    if chunks.fmt_cut or chunks.data_bytes is None:
        raise PackageError(f"{where}: truncated wav: no complete fmt and data chunks")
    if chunks.fmt is None:
        raise PackageError(f"{where}: wav data chunk before its fmt chunk")
    channels, rate, bits, block = chunks.fmt
    if chunks.data_bytes > chunks.data_room:
        raise PackageError(f"{where}: truncated wav: data chunk declares {chunks.data_bytes} bytes, "
                           f"file holds {chunks.data_room}")
    return WavHeader(channels, rate, bits, chunks.data_bytes // max(block, 1))


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
