"""The threshold search of `s5jax sweep` over the exact replay (reference/refined_system.md §9).

    ev = Evaluator(cache, fill)                          # replay with on-demand filling of missing entries
    res = search(start_config, ev, grids, margin=0.01)   # staged grids -> coordinate descent -> per class
    report = sweep(cache, start_config, out_dir, fill=..., folds=K, oracle=True)   # everything + files

Stages, each one vmapped grid over the replay (the switches of the start config stay fixed; a stage
whose switches are off is skipped): fusion (w1, w4, solo1, solo4) -> verification (verify, drop, one
value for every class) -> gates (energy_db, gate) -> coordinate descent over the global values
(1-D grids, accepted on a gain > eps, until nothing moves) -> per class: for each class and each of
verify / drop / gate, a 1-D grid on that class alone, accepted only when the dataset CA-SDRi gains
more than `margin`.  The objective is the dataset CA-SDRi (mean over non-None clips, as the official
evaluation).  A config that needs an entry the cache lacks is never scored from made-up numbers: the
driver asks `fill(missing_by_clip) -> CacheArrays` for those entries and replays again; without a
fill, such configs score NaN and are counted.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..labels import CLASSES, NUM_CLASSES, SILENCE
from ..metric import clip_score_detail
from ..system.config import PER_CLASS, Params, SystemConfig, stack_params
from .arrays import CacheArrays, entry_key
from . import replay as R

Fill = Callable[[dict], CacheArrays]

# clip scores of a batch of clips [N, ...] as one compiled program (op by op, each of the metric's
# ~100 primitives would be dispatched and compiled on its own: seconds per new clip count)
_clip_scores = jax.jit(jax.vmap(clip_score_detail))


@dataclasses.dataclass(frozen=True)
class Grids:
    """Values tried per threshold (stages and per class); coordinate descent adds midpoints."""
    w1: tuple = (0.2, 0.35, 0.5, 0.65, 0.8)
    w4: tuple = (0.2, 0.35, 0.5, 0.65, 0.8)
    solo1: tuple = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)       # > 1: never keep a 1-ch-only proposal
    solo4: tuple = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    verify: tuple = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    drop: tuple = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    energy_db: tuple = (-60.0, -50.0, -45.0, -40.0, -35.0, -30.0, -25.0, -20.0)
    gate: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


SMALL_GRIDS = Grids(w1=(0.3, 0.5, 0.7), w4=(0.3, 0.5, 0.7), solo1=(0.5, 0.7, 0.9, 1.01),
                    solo4=(0.2, 0.35, 0.5, 0.65), verify=(0.05, 0.2, 0.4), drop=(0.3, 0.6, 0.9),
                    energy_db=(-70.0, -50.0, -30.0, -10.0), gate=(0.0, 0.2, 0.4, 0.6))


def active_params(cfg: SystemConfig) -> dict[str, tuple[str, ...]]:
    """Stage -> the thresholds that matter under cfg's switches."""
    fusion = ("w1", "w4", "solo1", "solo4") if cfg.use_tagger1 else (
        ("w4", "solo4") if cfg.solo_conf == "weighted" else ("solo4",))
    verification = ("verify", "drop") if cfg.refine else ()
    gates = (("energy_db",) if cfg.energy_gate else ()) + (("gate",) if cfg.prob_gate else ())
    return {"fusion": fusion, "verification": verification, "gates": gates}


def _set(cfg: SystemConfig, name: str, value, cls: int | None = None) -> dict:
    """Field values of cfg with `name` set (for every class, or for class `cls` only)."""
    if name in PER_CLASS:
        v = list(getattr(cfg, name))
        if cls is None:
            v = [float(value)] * NUM_CLASSES
        else:
            v[cls] = float(value)
        return {name: tuple(v)}
    return {name: float(value)}


def params_of(cfgs: Sequence[SystemConfig]) -> Params:
    return stack_params([c.params() for c in cfgs])


# ----------------------------------------------------------------------------------------------------
# Evaluation with on-demand filling
# ----------------------------------------------------------------------------------------------------

class Evaluator:
    """Replays configs over a cache, asking `fill` for missing entries between rounds.

    cache: CacheArrays; fill(missing: {clip index: set of keys}) -> the whole updated CacheArrays (or
    None: missing configs then score NaN).  Sharded over `devices` (default all)."""

    def __init__(self, cache: CacheArrays, fill: Fill | None = None, devices=None, max_rounds: int = 8,
                 log=None):
        self.cache = R.sweep_shaped(cache)
        self.fill = fill
        self.log = log            # log(line) before and after each fill (computing entries can take minutes)
        self.devices = devices
        self.max_rounds = max_rounds
        self._sharded: dict = {}
        self._prep: dict = {}
        self.fill_rounds = 0
        self.filled_clips = 0
        self.unscored = 0         # configs left unscored because entries were missing and could not be filled

    @property
    def n_clips(self) -> int:
        return int(self.cache.keys.shape[0])

    def prepared(self, sw) -> R.Prepared:
        if sw not in self._prep:
            self._prep[sw] = R.prepare(self.cache, sw)
        return self._prep[sw]

    def _runner(self, sw) -> R.ShardedReplay:
        if sw not in self._sharded:
            self._sharded[sw] = R.ShardedReplay(self.prepared(sw), sw, devices=self.devices,
                                                least_configs=R.LEAST_CONFIGS, chunk=R.LEAST_CONFIGS,
                                                least_entries=R.LEAST_ENTRIES)
        return self._sharded[sw]

    def _refill(self, miss: dict) -> bool:
        if not miss or self.fill is None:
            return False
        t0 = time.monotonic()
        if self.log is not None:
            self.log(f"computing {sum(len(k) for k in miss.values())} missing entries of {len(miss)} clip(s) "
                     f"(fill round {self.fill_rounds + 1}) ...")
        cache = self.fill(miss)
        if self.log is not None:
            self.log(f"... fill round {self.fill_rounds + 1} done in {time.monotonic() - t0:.0f} s")
        new = R.sweep_shaped(cache)
        rows = R.changed_clips(self.cache, new)
        self.cache = new
        self._sharded.clear()
        if rows is None:             # the entry axis grew (or another cache): prepare it afresh
            self._prep.clear()
        else:                        # only the clips that got entries: their score tables again
            self._prep = {sw: R.reprepare(p, new, sw, rows) for sw, p in self._prep.items()}
        self.fill_rounds += 1
        self.filled_clips += len(miss)
        return True

    def missing_of(self, params: Params, sw) -> dict:
        """{clip: keys} the given configs need and the cache lacks (replayed in chunks)."""
        return R.missing_entries(params, self.prepared(sw), sw)

    def _replay_one(self, cfg: SystemConfig) -> R.Replay:
        """`replay.replay` of one config, as the first of R.LEAST_CONFIGS copies through `replay_configs`:
        the program `missing_of` compiled (the same per-clip computation, vmapped) instead of another."""
        sw = cfg.switches()
        out = R.replay_configs(R.pad_configs(params_of([cfg]), R.LEAST_CONFIGS), self.prepared(sw), sw)
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[0], out)     # numpy: no op-by-op slicing programs

    def totals(self, params: Params, sw, weights: np.ndarray) -> R.Totals:
        """params [C] -> Totals [C, G] over clip groups weights [G, N], after filling what is missing."""
        for _ in range(self.max_rounds):
            t = self._runner(sw)(params, weights)
            bad = np.nonzero(np.asarray(t.missing).sum(axis=1) > 0)[0]
            if bad.size == 0 or self.fill is None:
                break
            sub = Params(*(np.asarray(a)[bad] for a in params))
            if not self._refill(self.missing_of(sub, sw)):
                break
        self.unscored += int(np.sum(np.asarray(t.missing).sum(axis=1) > 0))
        return t

    def scores(self, params: Params, sw, weights: np.ndarray) -> np.ndarray:
        """Dataset CA-SDRi [C, G] (NaN where a config is missing entries)."""
        return R.mean_score(self.totals(params, sw, weights))

    def replay(self, cfg: SystemConfig) -> R.Replay:
        """Full per-clip replay of one config (fills what it needs first)."""
        sw = cfg.switches()
        for _ in range(self.max_rounds):
            out = self._replay_one(cfg)
            if not self._refill(R.missing_by_clip(out.clips)):
                return out
        return self._replay_one(cfg)

    def oracle(self) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth labels as queries through separator A (the labelling bound): per-clip score [N]
        (NaN = None or missing) and missing [N] bool."""
        refs = np.asarray(self.cache.ref_labels, np.int32)
        keys = entry_key(0, refs).astype(np.int32)
        silent = (refs == SILENCE).all(axis=1)
        for _ in range(self.max_rounds):
            found = (np.asarray(self.cache.keys) == keys[:, None]).any(axis=1) | silent
            if not self._refill({int(n): {int(keys[n])} for n in np.nonzero(~found)[0]}):
                break
        have = np.asarray(self.cache.keys) == keys[:, None]
        found = have.any(axis=1) | silent
        idx = np.argmax(have, axis=1)
        S = np.asarray(self.cache.S)[np.arange(len(refs)), idx]
        d = _clip_scores(jnp.asarray(refs), jnp.asarray(refs), jnp.asarray(S), jnp.asarray(self.cache.M))
        score = np.where(found, np.asarray(d.score), np.nan)
        return score, ~found


# ----------------------------------------------------------------------------------------------------
# The staged search
# ----------------------------------------------------------------------------------------------------

class StageTable(NamedTuple):
    name: str
    columns: list[str]
    rows: list[list]            # one row per config tried (or per decision, for per-class)
    unscored: int = 0           # configs tried that could not be scored (the cache lacks their entries)
    tried: int = 0              # configs tried


class SearchResult(NamedTuple):
    best: SystemConfig
    score: float                # in-sample dataset CA-SDRi of best
    start_score: float
    tables: list[StageTable]
    progress: list[tuple[str, float]]   # (step, score after it)


def _grid_configs(cur: SystemConfig, names: Sequence[str], values: Sequence[Sequence[float]]):
    combos = list(itertools.product(*values))
    cfgs = []
    for combo in combos:
        upd = {}
        for n, v in zip(names, combo):
            upd.update(_set(cur, n, v))
        cfgs.append(dataclasses.replace(cur, **upd))
    return combos, cfgs


def _value(cfg: SystemConfig, name: str, cls: int | None = None) -> float:
    v = getattr(cfg, name)
    return float(v[0 if cls is None else cls]) if name in PER_CLASS else float(v)


def _around(grid: Sequence[float], cur: float) -> list[float]:
    """The grid plus the midpoints next to the current value (coordinate descent refines locally)."""
    g = sorted(set(float(x) for x in grid) | {cur})
    i = g.index(cur)
    extra = []
    if i > 0:
        extra.append((g[i - 1] + cur) / 2)
    if i + 1 < len(g):
        extra.append((g[i + 1] + cur) / 2)
    return sorted(set(g) | set(round(x, 6) for x in extra))


STEPS = ("fusion", "verification", "gates", "coordinate", "per_class")


def _fmt(cfg: SystemConfig, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={_value(cfg, n):g}" for n in names)


# configs per replay call of a grid stage (a progress step; a multiple of the replay's config block)
GRID_CHUNK = 256


def _decide(cur: SystemConfig, name: str, vals: list[float], s: np.ndarray, cur_score: float, threshold: float,
            cls: int | None = None):
    """One coordinate step: the best of the values other than the current one (s: their scores, the
    current value included), its gain over cur_score, and whether it is accepted (gain > threshold).
    -> (row [old, best_other, gain, accepted, new], index accepted or None, unscored count)."""
    old = _value(cur, name, cls)
    others = [i for i, v in enumerate(vals) if v != old and np.isfinite(s[i])]
    unscored = int(np.sum(~np.isfinite(s)))
    if not others:
        return [old, float("nan"), float("nan"), False, old], None, unscored
    b = max(others, key=lambda i: (s[i], -i))
    gain = float(s[b]) - cur_score
    accepted = bool(gain > threshold) or not np.isfinite(cur_score)    # anything scored beats unscored
    return [old, vals[b], gain, accepted, vals[b] if accepted else old], (b if accepted else None), unscored


def search(start: SystemConfig, ev: Evaluator, weights: np.ndarray | None = None, grids: Grids = Grids(),
           margin: float = 0.01, eps: float = 1e-4, max_cd_rounds: int = 4,
           steps: Sequence[str] = STEPS, progress: bool = True, log=print) -> SearchResult:
    """Tune start's thresholds on the clips weighted by `weights` [N] (0/1; default all), running the
    `steps` (a subset of STEPS, always in that order).

    Tables: a grid stage lists every config it tried with its score (NaN: unscored); coordinate
    descent and per class list each step as (old value, best other value tried, its gain over the
    current score, accepted, value kept)."""
    from tqdm.auto import tqdm

    w = np.ones((1, ev.n_clips), np.float32) if weights is None else np.asarray(weights, np.float32)[None]
    sw = start.switches()
    act = active_params(start)

    def score(cfgs):
        return ev.scores(params_of(cfgs), sw, w)[:, 0]

    cur = start
    cur_score = float(score([cur])[0])
    start_score = cur_score
    tables, prog = [], [("start", cur_score)]
    for stage in ("fusion", "verification", "gates"):
        names = act[stage]
        if not names or stage not in steps:
            continue
        combos, cfgs = _grid_configs(cur, names, [getattr(grids, n) for n in names])
        parts = []
        # mininterval 0: every chunk is shown (a step is one replay call: few, and fast once compiled)
        with tqdm(total=len(cfgs), desc=f"stage {stage}", unit="config", disable=not progress, leave=False,
                  mininterval=0) as bar:
            for i in range(0, len(cfgs), GRID_CHUNK):
                parts.append(score(cfgs[i:i + GRID_CHUNK]))
                bar.update(len(parts[-1]))
        s = np.concatenate(parts)
        unscored = int(np.sum(~np.isfinite(s)))
        tables.append(StageTable(stage, list(names) + ["ca_sdri"], [list(c) + [float(x)] for c, x in zip(combos, s)],
                                 unscored, len(cfgs)))
        line = f"stage {stage}: {len(cfgs)} configs"
        if unscored:
            line += f", {unscored} unscored (the cache lacks their entries)"
        if np.isfinite(s).any():
            b = int(np.nanargmax(s))
            line += f"; best tried {float(s[b]):.4f} dB at {_fmt(cfgs[b], names)}"
            if s[b] > cur_score or not np.isfinite(cur_score):     # anything scored beats unscored
                cur, cur_score = cfgs[b], float(s[b])
                line += ": kept"
            else:
                line += f"; kept the current config ({_fmt(cur, names)}, {cur_score:.4f} dB)"
        else:
            line += f"; none scored: kept the current config ({_fmt(cur, names)})"
        prog.append((stage, cur_score))
        log(line)

    globals_ = [n for st in ("fusion", "verification", "gates") for n in act[st]]
    rows, unscored, tried = [], 0, 0
    for rnd in range(max_cd_rounds if "coordinate" in steps else 0):
        moved = False
        for name in tqdm(globals_, desc=f"coordinate descent {rnd + 1}", disable=not progress, leave=False):
            vals = _around(getattr(grids, name), _value(cur, name))
            cfgs = [dataclasses.replace(cur, **_set(cur, name, v)) for v in vals]
            s = score(cfgs)
            row, b, u = _decide(cur, name, vals, s, cur_score, eps)
            unscored, tried = unscored + u, tried + len(cfgs)
            rows.append([rnd + 1, name] + row)
            if b is not None:
                cur, cur_score, moved = cfgs[b], float(s[b]), True
        prog.append((f"coordinate {rnd + 1}", cur_score))
        if not moved:
            break
    if rows:
        tables.append(StageTable("coordinate", ["round", "param", "old", "best_other", "gain", "accepted", "new"],
                                 rows, unscored, tried))
        log(f"coordinate descent: {sum(r[-2] for r in rows)} of {len(rows)} steps accepted, {cur_score:.4f} dB"
            + (f" ({unscored} of {tried} configs unscored)" if unscored else ""))

    per = [n for n in ("verify", "drop", "gate") if n in globals_]
    if "per_class" in steps and per:
        rows, unscored, tried = [], 0, 0
        todo = [(c, n) for c in range(NUM_CLASSES) for n in per]
        for c, name in tqdm(todo, desc="per class", disable=not progress, leave=False):
            vals = sorted(set(getattr(grids, name)) | {_value(cur, name, c)})
            cfgs = [dataclasses.replace(cur, **_set(cur, name, v, c)) for v in vals]
            s = score(cfgs)
            row, b, u = _decide(cur, name, vals, s, cur_score, margin, c)
            unscored, tried = unscored + u, tried + len(cfgs)
            rows.append([CLASSES[c], name] + row)
            if b is not None:
                cur, cur_score = cfgs[b], float(s[b])
        tables.append(StageTable("per_class", ["class", "param", "old", "best_other", "gain", "accepted", "new"],
                                 rows, unscored, tried))
        prog.append(("per class", cur_score))
        log(f"per class (margin {margin:g} dB): {sum(r[-2] for r in rows)} changes accepted, {cur_score:.4f} dB"
            + (f" ({unscored} of {tried} configs unscored)" if unscored else ""))
    return SearchResult(cur, cur_score, start_score, tables, prog)


# ----------------------------------------------------------------------------------------------------
# Evaluation of a result: bootstrap, folds, per-class report
# ----------------------------------------------------------------------------------------------------

def bootstrap_gain(tuned: np.ndarray, base: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Gain of the dataset CA-SDRi (tuned − base; per-clip scores [N], NaN = None) with a 95 % bootstrap
    interval over clips resampled with replacement -> (gain, low, high); all NaN when either side is
    unscored on every clip (nothing to compare)."""
    tuned, base = np.asarray(tuned, np.float64), np.asarray(base, np.float64)
    if not (np.isfinite(tuned).any() and np.isfinite(base).any()):
        return float("nan"), float("nan"), float("nan")      # one side unscored on every clip: no gain
    gain = float(np.nanmean(tuned) - np.nanmean(base))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(tuned), size=(n, len(tuned)))

    def means(x):
        v = np.isfinite(x)[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(v, np.nan_to_num(x)[idx], 0.0).sum(1) / v.sum(1)
    d = means(tuned) - means(base)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return gain, float("nan"), float("nan")
    return gain, float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def fold_ids(n: int, k: int, seed: int = 0) -> np.ndarray:
    """[n] fold of each clip: a seeded shuffle cut into k near-equal folds."""
    f = np.empty(n, np.int64)
    f[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return f


class ClassReport(NamedTuple):
    class_sum: np.ndarray       # [18] Σ recorded values per class (SDRi of matches, 0 for misses / false alarms)
    class_count: np.ndarray     # [18]
    confusion: np.ndarray       # [19, 19] reference class (rows) × estimated class (cols), 18 = none
    false_alarms: np.ndarray    # [18] estimates of each class on clips with no reference at all
    silent_clips: int
    silent_clips_alarmed: int
    references: np.ndarray      # [18] reference sources of each class on the scored clips (0 with a
                                # count > 0: every value of the class is a false alarm)


def class_report(out: R.Replay, cache: CacheArrays) -> ClassReport:
    """Per-class CA-SDRi parts, label confusion and false alarms on silent clips of one replay."""
    labels = np.asarray(out.clips.labels)
    entry = np.asarray(out.clips.entry)
    n = labels.shape[0]
    S = np.asarray(cache.S)[np.arange(n)[:, None], entry, np.arange(3)[None, :]]     # [N, 3 slots, 3 refs]
    d = _clip_scores(jnp.asarray(labels), jnp.asarray(cache.ref_labels), jnp.asarray(S),
                                    jnp.asarray(cache.M))
    ok = ~np.asarray(out.clips.missing)
    conf = np.zeros((SILENCE + 1, SILENCE + 1), np.int64)
    fa = np.zeros(NUM_CLASSES, np.int64)
    refs = np.asarray(cache.ref_labels)
    alarmed = 0
    silent = 0
    nref = np.zeros(NUM_CLASSES, np.int64)
    for i in np.nonzero(ok)[0]:
        est = sorted(int(c) for c in labels[i] if c != SILENCE)
        ref = sorted(int(c) for c in refs[i] if c != SILENCE)
        for c in ref:
            nref[c] += 1
        if not ref:
            silent += 1
            alarmed += bool(est)
            for c in est:
                fa[c] += 1
        # matches on the diagonal; the rest paired in class order (a multiset has no finer pairing); unpaired -> none
        rest_e, rest_r = list(est), []
        for c in ref:
            if c in rest_e:
                rest_e.remove(c)
                conf[c, c] += 1
            else:
                rest_r.append(c)
        for a, b in itertools.zip_longest(rest_r, rest_e, fillvalue=SILENCE):
            conf[a, b] += 1
    return ClassReport(np.asarray(d.class_sum)[ok].sum(0), np.asarray(d.class_count)[ok].sum(0), conf, fa,
                       silent, alarmed, nref)


__all__ = ["STEPS", "Grids", "SMALL_GRIDS", "Evaluator", "search", "SearchResult", "StageTable", "bootstrap_gain",
           "fold_ids", "class_report", "ClassReport", "active_params"]
