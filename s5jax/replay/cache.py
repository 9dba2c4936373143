"""The inference cache on disk: per clip, everything a system config needs to be scored without audio.

    CACHE/
      manifest.json        {"format": "s5jax-cache", "version": 1, "models": {role: identity},
                            "input": ..., "oracle": ..., "clips": [names] (null until a build ends)}
      clips/<name>.npz     P1 [3,19], P4 [3,19], ref_labels [3], M [3], and the entries met so far:
                           keys [E] (ascending), retag [E,3,3,19], energy_db [E,3], S [E,3,3]

Roles: `tagger-4ch`, `tagger-1ch`, `separator` (A), `separator2` (B, optional). The manifest records
the identity (kind, sha256 of config + weights) of each model that filled the cache; opening it with
any other model is a one-line CacheError, so entries from different weights never mix. Every clip file
is written under a temporary name and renamed into place (an interrupted build leaves only complete
files; re-running resumes). Several builds may fill one cache at once (two `s5jax cache` runs, a
sweep filling entries): a clip file is changed only under the folder's lock (`clips/.lock`), re-read
there, so the entries another process wrote meanwhile are kept. A clip file that cannot be read is
named in a one-line error and left as it is.
What an entry holds and how it is keyed: `s5jax.replay.arrays`. A cache built with `resample`
(soundscapes and targets at another rate resampled to 32 kHz on load) records the resampler in the
manifest (`"resample"`); it is then refused without the flag, and a cache without it refused with the
flag, so resampled and original entries never mix.

    names, arrays = load(cache_dir)           # -> CacheArrays, padded to a common entry count
    builder = CacheBuilder.open(cache_dir, input_dir, models)
    builder.fill({name: [keys]})              # compute only the entries not cached yet, in batches
"""
from __future__ import annotations

import io
import json
import os
from typing import Iterable, Mapping

import numpy as np

from ..errors import S5Error
from ..files import check_writable, locked, write_bytes_atomic, write_json_atomic
from ..labels import NUM_SLOTS
from ..runtime.processes import barrier, share
from ..runtime.memory import HeapGuard
from .arrays import MISSING_KEY, N_LABELS, CacheArrays

FORMAT = "s5jax-cache"
VERSION = 1
ROLES = ("tagger-4ch", "tagger-1ch", "separator", "separator2")

# field -> (shape after the leading entry axis, or without it for per-clip fields, dtype)
CLIP_FIELDS = {"P1": ((3, N_LABELS), np.float32), "P4": ((3, N_LABELS), np.float32),
               "ref_labels": ((NUM_SLOTS,), np.int32), "M": ((NUM_SLOTS,), np.float32)}
ENTRY_FIELDS = {"retag": ((NUM_SLOTS, 3, N_LABELS), np.float32), "energy_db": ((NUM_SLOTS,), np.float32),
                "S": ((NUM_SLOTS, NUM_SLOTS), np.float32)}


class CacheError(S5Error):
    """A cache folder that is not one, was made by other checkpoints, or holds an unreadable file."""


def manifest_path(cache_dir: str) -> str:
    return os.path.join(cache_dir, "manifest.json")


def clip_path(cache_dir: str, name: str) -> str:
    return os.path.join(cache_dir, "clips", f"{name}.npz")


def decode_key(key: int) -> tuple[int, tuple[int, int, int]]:
    """entry key -> (separator 0/1, ordered query tuple)."""
    key = int(key)
    sep, rest = divmod(key, N_LABELS ** 3)
    return sep, (rest // N_LABELS ** 2, rest // N_LABELS % N_LABELS, rest % N_LABELS)


# ---------------------------------------------------------------------------------------- clip files
def empty_entries() -> dict[str, np.ndarray]:
    out = {"keys": np.zeros((0,), np.int32)}
    out.update({k: np.zeros((0,) + shape, dt) for k, (shape, dt) in ENTRY_FIELDS.items()})
    return out


def read_clip(path: str) -> dict[str, np.ndarray]:
    """One clip file -> its arrays, checked field by field (CacheError naming the file otherwise)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            clip = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CacheError(f"{path}: missing cache file") from None
    except Exception as e:   # zipfile / numpy raise many types on a damaged file; the user needs the path
        raise CacheError(f"{path}: corrupted cache file ({type(e).__name__}); delete it to recompute "
                         "that clip") from None
    e = clip.get("keys", np.zeros(0)).shape[:1]
    for fields, lead in ((CLIP_FIELDS, ()), (ENTRY_FIELDS, e)):
        for k, (shape, dt) in fields.items():
            a = clip.get(k)
            if a is None or a.shape != lead + shape or a.dtype != dt:
                raise CacheError(f"{path}: corrupted cache file (field {k!r} missing or of the wrong "
                                 "shape); delete it to recompute that clip")
    keys = clip.get("keys")
    if keys is None or keys.ndim != 1 or keys.dtype != np.int32 or np.any(np.diff(keys) <= 0):
        raise CacheError(f"{path}: corrupted cache file (entry keys not ascending int32); delete it "
                         "to recompute that clip")
    return clip


def write_clip(path: str, clip: Mapping[str, np.ndarray]) -> None:
    """Write one clip file atomically (temporary name in the same folder, then rename)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(clip[k]) for k in ("keys", *CLIP_FIELDS, *ENTRY_FIELDS)})
    write_bytes_atomic(path, buf.getvalue())


def _lock(cache_dir: str):
    return locked(os.path.join(cache_dir, "clips", ".lock"))


def write_base(cache_dir: str, name: str, clip: Mapping[str, np.ndarray]) -> bool:
    """Write a clip's first file unless another process wrote one meanwhile (which may already hold
    entries: never replaced). True if written."""
    path = clip_path(cache_dir, name)
    with _lock(cache_dir):
        if os.path.exists(path):
            return False
        write_clip(path, clip)
    return True


def merge_entries(cache_dir: str, name: str, keys, retag, energy_db, S) -> dict[str, np.ndarray]:
    """Add entries to a clip's file: read, merge (`add_entries`), write, under the folder's lock, so
    two processes adding entries to one clip both keep theirs.  Returns the clip as written."""
    path = clip_path(cache_dir, name)
    with _lock(cache_dir):
        clip = add_entries(read_clip(path), keys, retag, energy_db, S)
        write_clip(path, clip)
    return clip


def add_entries(clip: Mapping[str, np.ndarray], keys, retag, energy_db, S) -> dict[str, np.ndarray]:
    """The clip with new entries merged in, keys kept ascending (a key already present is kept as is)."""
    keys = np.asarray(keys, np.int32)
    new = ~np.isin(keys, clip["keys"])
    merged = {"keys": np.concatenate([clip["keys"], keys[new]])}
    for k, v in (("retag", retag), ("energy_db", energy_db), ("S", S)):
        merged[k] = np.concatenate([clip[k], np.asarray(v, np.float32)[new]])
    order = np.argsort(merged["keys"], kind="stable")
    out = dict(clip)
    out.update({k: v[order] for k, v in merged.items()})
    return out


# ---------------------------------------------------------------------------------------- manifest
def read_manifest(cache_dir: str) -> dict | None:
    """The manifest, None when the folder has none (a new cache); CacheError when unreadable."""
    path = manifest_path(cache_dir)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            man = json.load(f)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: unreadable cache manifest ({type(e).__name__})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT or not isinstance(man.get("models"), dict):
        raise CacheError(f"{path}: not an s5jax cache manifest")
    return man


def check_models(man: dict, models: Mapping[str, dict | None], cache_dir: str) -> None:
    """Refuse a cache made by other checkpoints: every role given must match the recorded one (a role
    the cache has not seen yet, e.g. a first separator B, is accepted and recorded by the caller)."""
    for role, ident in models.items():
        rec = man["models"].get(role)
        if ident is None or rec is None:
            continue
        if rec.get("sha256") != ident.get("sha256"):
            raise CacheError(f"{cache_dir}: cache made with another {role} ({rec.get('path')}, sha256 "
                             f"{str(rec.get('sha256'))[:12]}); {ident.get('path')} has sha256 "
                             f"{str(ident.get('sha256'))[:12]}: use a new cache folder")


def write_manifest(cache_dir: str, models: Mapping[str, dict | None], input_dir: str,
                   oracle_dir: str, clips: list[str] | None, resample: dict | None = None) -> dict:
    man = {"format": FORMAT, "version": VERSION, "models": {r: models.get(r) for r in ROLES},
           "input": os.path.abspath(input_dir), "oracle": os.path.abspath(oracle_dir), "clips": clips}
    if resample is not None:        # (absent: the cache read its audio at 32 kHz as it was)
        man["resample"] = resample
    write_json_atomic(manifest_path(cache_dir), man)
    return man


# ---------------------------------------------------------------------------------------- loading
def stack_clips(clips: list[Mapping[str, np.ndarray]]) -> CacheArrays:
    """Per-clip dicts -> CacheArrays, entries padded to the largest count with MISSING_KEY."""
    n = len(clips)
    e = max([len(c["keys"]) for c in clips] + [1])
    keys = np.full((n, e), MISSING_KEY, np.int32)
    entry = {k: np.zeros((n, e) + shape, dt) for k, (shape, dt) in ENTRY_FIELDS.items()}
    for i, c in enumerate(clips):
        m = len(c["keys"])
        keys[i, :m] = c["keys"]
        for k in ENTRY_FIELDS:
            entry[k][i, :m] = c[k]
    per_clip = {k: np.stack([c[k] for c in clips]) if clips else np.zeros((0,) + shape, dt)
                for k, (shape, dt) in CLIP_FIELDS.items()}
    return CacheArrays(keys=keys, **per_clip, **entry)


def load(cache_dir: str, names: Iterable[str] | None = None) -> tuple[list[str], CacheArrays]:
    """-> (clip names, CacheArrays) of a cache folder: `names`, or the manifest's clip list, or (for a
    build still running) every clip file present."""
    man = read_manifest(cache_dir)
    if man is None:
        raise CacheError(f"{cache_dir}: not an s5jax cache (no manifest.json)")
    if names is None:
        names = man.get("clips")
        if names is None:
            folder = os.path.join(cache_dir, "clips")
            names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz") and not f.startswith("."))
    names = list(names)
    return names, stack_clips([read_clip(clip_path(cache_dir, n)) for n in names])


# ---------------------------------------------------------------------------------------- building
class CacheBuilder:
    """Fills a cache folder from the models: the per-clip base (taggers, M) and, on demand, entries.

    Under jax.distributed each process handles `clips[process_index::process_count]` (`mine`) and
    writes only those files; `finish` (process 0, after a barrier) records the full clip list.
    """

    def __init__(self, cache_dir: str, input_dir: str, oracle_dir: str, clips: list[tuple[str, str]],
                 tagger4, tagger1, separators: list, identities: dict, batch_size: int,
                 process: tuple[int, int] = (0, 1), resample: bool = False):
        from ..system.stages import Stages

        self.cache_dir, self.input_dir, self.oracle_dir = cache_dir, input_dir, oracle_dir
        self.clips = clips
        self.paths = dict(clips)
        self.mine = [name for name, _ in share(clips, process)]
        self.identities = identities
        self.batch_size = batch_size
        self.resample = resample
        self.min_samples = max(tagger4.min_samples, tagger1.min_samples, *(s.min_samples for s in separators))
        # the system's own stage programs (infer --system compiles the same ones for the same batch size)
        self._stages = Stages(tagger4, tagger1, separators)
        self._prepared: set[tuple[str, int]] = set()     # (stage program, clip length) prepared
        self._audio: dict[str, tuple] = {}        # a few clips' (mixture, refs, ref_labels), read once per use
        self.computed = 0                         # entries computed by this builder (tests check no repeats)
        self.bad: dict[str, str] = {}             # clip -> one-line reason: its files cannot be used (skipped)

    @classmethod
    def open(cls, cache_dir: str, input_dir: str, tagger4, tagger1, separator, separator2=None,
             oracle_dir: str | None = None, batch_size: int | None = None,
             process: tuple[int, int] = (0, 1), resample: bool = False) -> "CacheBuilder":
        """Check (or start) the cache folder for these models; the models are loaded Tagger/Separator
        objects (`tagger4`/`tagger1` by kind). CacheError if the folder belongs to other checkpoints."""
        from ..dataset import list_soundscapes, oracle_folder
        from ..infer import default_batch_size

        clips = list_soundscapes(input_dir)
        oracle_dir = oracle_dir or oracle_folder(input_dir)
        if oracle_dir is None or not os.path.isdir(oracle_dir):
            raise CacheError(f"{input_dir}: no oracle_target folder; the cache scores every entry, give --oracle")
        models = {"tagger-4ch": tagger4.identity, "tagger-1ch": tagger1.identity,
                  "separator": separator.identity,
                  "separator2": None if separator2 is None else separator2.identity}
        if process[0] == 0:          # process 0 checks or starts the folder; the others then check its manifest
            models = _open_folder(cache_dir, models, input_dir, oracle_dir, _resampler(resample))
        barrier("s5jax-cache-open", process)
        if process[0] != 0:
            man = read_manifest(cache_dir)
            if man is None:
                raise CacheError(f"{cache_dir}: no manifest.json after process 0 opened the cache")
            check_models(man, models, cache_dir)
            _check_resample(man, _resampler(resample), cache_dir)
            models = {r: models[r] or man["models"].get(r) for r in ROLES}
        separators = [separator] + ([separator2] if separator2 is not None else [])
        return cls(cache_dir, input_dir, oracle_dir, clips, tagger4, tagger1, separators, models,
                   batch_size or default_batch_size(), process, resample)

    # ---------------------------------------------------------------- audio of a clip
    def _read(self, name: str):
        """(mixture [4, n], refs [3, n] zero-padded, ref_labels [3]) of a clip; kept for a few clips."""
        if name not in self._audio:
            from ..audio import read_audio
            from ..evaluate import read_references

            mixture = read_audio(self.paths[name], channels=4, resample=self.resample)
            n = mixture.shape[1]
            if n < self.min_samples:
                raise S5Error(f"{self.paths[name]}: {n} samples is too short for the models "
                              f"(at least {self.min_samples})")
            refs, ref_labels = read_references(self.oracle_dir, name, n, resample=self.resample)
            if len(self._audio) >= 4 * self.batch_size:
                self._audio.pop(next(iter(self._audio)))
            self._audio[name] = (mixture, refs, ref_labels)
        return self._audio[name]

    def _batches(self, items: list, length_of) -> Iterable[list]:
        """items grouped by clip length (one compiled shape each), cut into batches."""
        groups: dict[int, list] = {}
        for it in items:
            groups.setdefault(length_of(it), []).append(it)
        for group in groups.values():
            for i in range(0, len(group), self.batch_size):
                yield group[i:i + self.batch_size]

    # ---------------------------------------------------------------- the base of each clip
    def base(self, names: Iterable[str] | None = None, progress=None) -> list[str]:
        """Write the base (P1, P4, ref_labels, M, no entries) of every clip of `names` (default: mine)
        that has no file yet; returns the names written. A clip file present is resumed, not redone."""
        todo = [n for n in (self.mine if names is None else names)
                if n not in self.bad and not os.path.exists(clip_path(self.cache_dir, n))]
        length = {n: _wav_frames(self.paths[n], self.resample) for n in todo}
        heap = HeapGuard()
        for batch in self._batches(todo, length.get):
            batch = [n for n in batch if self._usable(n)]     # a bad clip is named in `bad`, the rest go on
            if not batch:
                continue
            audio = [self._read(n) for n in batch]
            P1, P4, M = self._run("base", (np.stack([a[0] for a in audio]), np.stack([a[1] for a in audio])))
            for i, (name, a) in enumerate(zip(batch, audio)):
                clip = {"P1": P1[i], "P4": P4[i], "M": M[i], "ref_labels": a[2], **empty_entries()}
                write_base(self.cache_dir, name, clip)
            heap.after_call()
            if progress is not None:
                progress(len(batch))
        return [n for n in todo if n not in self.bad]

    def _run(self, stage: str, batch: tuple, **kw):
        """s5jax.system.pipeline's `base` or `entry` on a host batch (padded to the batch size, so
        every call runs the one compiled shape) -> its outputs for the batch's rows, on the host."""
        from ..system import pipeline

        n, samples = len(batch[0]), batch[0].shape[-1]
        # the model programs as infer prepares them (the same kept exports and compiled programs: a
        # cache after an infer run of these models at this clip length compiles no model again)
        names = ["tag1", "tag4"] if stage == "base" else [f"separate{kw.get('separator', 0)}", "retag"]
        todo = [name for name in names if (name, samples) not in self._prepared]
        if todo:
            self._stages.prepare_programs(self.batch_size, samples, todo)
            self._prepared.update((name, samples) for name in todo)
        out = getattr(pipeline, stage)(self._stages, *self._stages.place(batch, pad_to=self.batch_size), **kw)
        return [np.asarray(a)[:n] for a in out]

    def _usable(self, name: str) -> bool:
        """Read a clip's audio (kept for the batch); False, with the reason in `bad`, if it cannot be used."""
        try:
            self._read(name)
        except S5Error as e:
            self.bad[name] = str(e)
            return False
        return True

    def good(self, names: Iterable[str] | None = None) -> list[str]:
        """`names` (default: this process's clips) without the bad ones."""
        return [n for n in (self.mine if names is None else names) if n not in self.bad]

    # ---------------------------------------------------------------- entries on demand
    def fill(self, missing: Mapping[str, Iterable[int]], progress=None) -> int:
        """Compute and write the entries `missing` names ({clip: [entry keys]}) that the cache does not
        hold yet, batched over clips of one length and one separator; returns how many were computed.
        An entry already cached (or asked twice) is never computed again."""
        clips, tasks = {}, []
        for name in sorted(missing):
            keys = sorted({int(k) for k in missing[name]})
            if not keys:
                continue
            if name not in self.paths:
                raise CacheError(f"{self.cache_dir}: no clip {name!r} in {self.input_dir}")
            path = clip_path(self.cache_dir, name)
            if not os.path.exists(path):
                self.base([name])
                if name in self.bad:
                    continue
            clips[name] = read_clip(path)
            for k in keys:
                if k in clips[name]["keys"] or k == MISSING_KEY:
                    continue
                sep, q = decode_key(k)
                if sep >= len(self._stages.separate):
                    raise CacheError(f"{self.cache_dir}: entry {k} of {name} needs separator B; give --separator2")
                tasks.append((name, k, sep, q))
        if not tasks:
            return 0
        length = {n: _wav_frames(self.paths[n]) for n in clips}
        heap = HeapGuard()
        for batch in self._batches(sorted(tasks, key=lambda t: (t[2], t[0])), lambda t: (t[2], length[t[0]])):
            audio = [self._read(t[0]) for t in batch]
            retag, energy, S = self._run("entry", (np.stack([a[0] for a in audio]),
                                                   np.asarray([t[3] for t in batch], np.int32),
                                                   np.stack([a[1] for a in audio])), separator=batch[0][2])
            touched = {}
            for i, t in enumerate(batch):
                touched.setdefault(t[0], []).append(i)
            for name, rows in touched.items():
                clips[name] = merge_entries(self.cache_dir, name, [batch[i][1] for i in rows], retag[rows],
                                            energy[rows], S[rows])
            self.computed += len(batch)
            heap.after_call()
            if progress is not None:
                progress(len(batch))
        return len(tasks)

    def load(self, names: Iterable[str] | None = None) -> tuple[list[str], CacheArrays]:
        """CacheArrays of `names` (default: this process's clips but the bad ones)."""
        names = self.good() if names is None else list(names)
        return names, stack_clips([read_clip(clip_path(self.cache_dir, n)) for n in names])

    def finish(self) -> dict:
        """Record the complete clip list in the manifest (call on process 0 once every clip is in)."""
        names = [n for n, _ in self.clips]
        for n in names:
            read_clip(clip_path(self.cache_dir, n))      # every file present and readable
        return write_manifest(self.cache_dir, self.identities, self.input_dir, self.oracle_dir, names,
                              _resampler(self.resample))


def _resampler(resample: bool) -> dict | None:
    from ..audio import resampler_identity

    return resampler_identity() if resample else None


def _check_resample(man: dict, resample: dict | None, cache_dir: str) -> None:
    if man.get("resample") != resample:
        made = "with" if man.get("resample") else "without"
        raise CacheError(f"{cache_dir}: cache made {made} --resample ({man.get('resample')}), now "
                         f"{resample}: use a new cache folder")


def _open_folder(cache_dir: str, models: dict, input_dir: str, oracle_dir: str,
                 resample: dict | None = None) -> dict:
    """Check an existing cache folder against `models` or start a new one; -> the models recorded."""
    if os.path.isfile(cache_dir):
        raise CacheError(f"{cache_dir}: is a file, not a cache folder")
    man = read_manifest(cache_dir) if os.path.isdir(cache_dir) else None
    if man is None and os.path.isdir(cache_dir) and os.listdir(cache_dir):
        raise CacheError(f"{cache_dir}: folder is not empty and not an s5jax cache; choose a new folder")
    if man is not None:
        check_models(man, models, cache_dir)
        _check_resample(man, resample, cache_dir)
        models = {r: models[r] or man["models"].get(r) for r in ROLES}
    os.makedirs(os.path.join(cache_dir, "clips"), exist_ok=True)
    if man is None or man["models"] != models:
        write_manifest(cache_dir, models, input_dir, oracle_dir, man and man.get("clips"), resample)
    return models


def reach(builder: CacheBuilder, configs: list, names: list[str] | None = None, progress=None,
          max_rounds: int = 4, found=None) -> int:
    """Fill every entry the system `configs` (SystemConfigs) reach on `names` (default: the builder's
    clips): replay them over the cache, compute what is missing, replay again (a second-pass tuple is
    known only once the first pass's re-tag is cached, B's only after the refine). Returns the number
    of entries computed. `found(n)` is told how many entries a round is about to compute (a progress
    bar's total grows by it; the next round's are known only once this one is done)."""
    from ..system.config import stack_params
    from .replay import missing_entries, prepare, sweep_shaped

    by_switches: dict = {}
    for cfg in configs:
        by_switches.setdefault(cfg.switches(), []).append(cfg.params())
    computed = 0
    for _ in range(max_rounds):
        names_, arrays = builder.load(names)
        # the sweep's shapes (its Evaluator pads entries and configs so): a sweep over this cache in the
        # same process, or reading the persistent compile cache, reuses these compiled programs
        arrays = sweep_shaped(arrays)
        missing: dict[str, set[int]] = {}
        for sw, params in by_switches.items():
            for i, keys in missing_entries(stack_params(params), prepare(arrays, sw), sw).items():
                missing.setdefault(names_[i], set()).update(keys)
        if not missing:
            return computed
        if found is not None:
            found(sum(len(keys) for keys in missing.values()))
        computed += builder.fill(missing, progress=progress)
    raise CacheError(f"{builder.cache_dir}: entries still missing after {max_rounds} rounds")


def run_cache(input_dir: str, cache_dir: str, tagger_dirs, separator_dir: str, separator2_dir: str | None = None,
              systems: list[str] | None = None, oracle_dir: str | None = None, batch_size: int | None = None,
              progress: bool = True, process: tuple[int, int] = (0, 1), log=print,
              resample: bool = False) -> CacheBuilder:
    """`s5jax cache`: the base of every clip, then every entry the `systems` (presets or config JSON
    paths; default system1, and system3 with a separator B) reach. Under jax.distributed each process
    does its share of the clips; process 0 records the clip list once all are in. `resample`: audio at
    another rate is resampled to 32 kHz on load (recorded in the manifest)."""
    from tqdm import tqdm

    from ..system.config import load_system
    from ..system.engine import load_models

    check_writable(cache_dir)                            # a read-only --out fails before any work
    if systems is None:
        systems = ["system1"] + (["system3"] if separator2_dir else [])
    configs = [load_system(s) for s in systems]          # a bad config fails before any model is loaded
    t4, t1, sep_a, sep_b = load_models(tagger_dirs, separator_dir, separator2_dir)
    if t4 is None or t1 is None:
        raise CacheError("the cache needs both taggers: one 4-ch and one 1-ch (--tagger, --tagger2)")
    for name, cfg in zip(systems, configs):
        if cfg.switches().separator_b and sep_b is None:
            raise CacheError(f"system {name} selects between two separators: give --separator2")
    builder = CacheBuilder.open(cache_dir, input_dir, t4, t1, sep_a, sep_b, oracle_dir, batch_size, process,
                                resample)
    with tqdm(total=len(builder.mine), desc="cache: taggers", unit="clip", disable=not progress) as bar:
        done = builder.base(progress=bar.update)
    with tqdm(desc="cache: entries", total=0, unit=" entries", disable=not progress) as bar:
        def found(k: int) -> None:           # each round's entries are known when it starts
            bar.total += k
            bar.refresh()

        n = reach(builder, configs, progress=bar.update, found=found)
    log(f"process {process[0]}: {len(done)} clip(s) tagged, {n} entries computed "
        f"({len(builder.mine) - len(done) - len(builder.bad)} clip(s) resumed)")
    barrier("s5jax-cache-done", process)
    if builder.bad:          # every bad clip in one run, as `infer` does; the cache stays unfinished
        log(f"{len(builder.bad)} clip(s) skipped (fix or remove them and run again to finish the cache):")
        for why in builder.bad.values():
            log(f"  {why}")
    elif process[0] == 0:
        builder.finish()
        log(f"cache of {len(builder.clips)} clip(s) in {cache_dir}")
    return builder


def _wav_frames(path: str, resample: bool = False) -> int:
    """Sample count of a wav from its header, at 32 kHz once resampled (grouping by length without
    reading the audio)."""
    import soundfile as sf

    from ..audio import resampled_length

    try:
        info = sf.info(path)
        return resampled_length(info.frames, info.samplerate) if resample else info.frames
    except Exception:   # unreadable: read_audio names the file and the problem when the clip is read
        return -1


__all__ = ["CacheBuilder", "CacheError", "reach", "run_cache", "ROLES", "load", "read_clip", "write_clip", "add_entries", "stack_clips",
           "read_manifest", "write_manifest", "check_models", "clip_path", "decode_key", "empty_entries"]
