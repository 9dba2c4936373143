"""Exact CA-SDRi replay of system configs over the cache (reference/refined_system.md §7-8).

    prep = prepare(cache, sw)                   # once per cache and switches (config-independent work)
    out  = replay(params, prep, sw)             # one config: per-clip labels, CA-SDRi, valid, counts, missing
    out  = replay_configs(params_C, prep, sw)   # C configs (leading axis), vmapped: fields [C, N, ...]
    tot  = totals(params_C, prep, sw, weights)  # per config and clip group: score sums, valid and missing counts
    ShardedReplay(prep, sw)(params_C, weights)  # the same, configs × clips sharded over every device

The decisions are those of `s5jax.system.decisions` (the pipeline's own functions); the replay only
looks the separated stems up in the cache.  What `prepare` computes once per clip is exactly what
depends on no threshold:
  - the taggers' proposals and their class-wise pairing (`decisions.pair`);
  - each entry's confirmation r [3] of its own tuple (`decisions.confirmation`);
  - the clip score (`metric.clip_score_detail`) of every label/stem pattern a config can reach from an
    entry of separator A: its tuple with any subset of slots silenced (gates, 2³) and, with
    separator B, any subset of slots taking B's stem of the same tuple (2³): a table [E, 8] or [E, 64].
So a replay per (config, clip) is the thresholded fusion, two or three key look-ups, the gates and one
table read.  An all-silence tuple needs no entry (nothing is separated or scored from its stems).

A (config, clip) whose decisions reach a (separator, tuple) absent from the cache is `missing`: never
scored (score NaN, valid False), and the keys it needs are returned (`missing_keys`, MISSING_KEY where
none) so a driver can compute them and replay again.  Keys reachable only after a missing entry
(the second-pass tuple depends on the first pass's re-tag) appear in a later round.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..labels import NUM_SLOTS, SILENCE
from ..metric import clip_score_detail, label_counts_padded
from ..system import decisions as D
from ..system.config import Params, Switches
from .arrays import MISSING_KEY, N_LABELS, CacheArrays, entry_key

SEP_B_OFFSET = N_LABELS ** 3      # entry_key(1, q) - entry_key(0, q)
_BITS = np.array([1, 2, 4], np.int32)


def decode_key(key):
    """entry key -> (separator, queries [..., 3]) (inverse of `entry_key`)."""
    q = jnp.stack([(key // N_LABELS ** 2) % N_LABELS, (key // N_LABELS) % N_LABELS, key % N_LABELS], axis=-1)
    return key // SEP_B_OFFSET, q.astype(jnp.int32)


class Prepared(NamedTuple):
    """Config-independent per-clip arrays (leading axis N clips; E entries)."""
    pairs: D.Pairs          # fields [N, 6] / [N, 3]
    keys: jax.Array         # [N, E] int32
    r: jax.Array            # [N, E, 3] confirmation of each entry's stems for its own tuple
    energy: jax.Array       # [N, E, 3] stem energies, dB re mixture channel 0
    table: jax.Array        # [N, E, 8 or 64] clip score (NaN = None) by pattern keep + 8·use_b
    silent: jax.Array       # [N] clip score with every slot silent (0 with references, NaN without)
    ref_labels: jax.Array   # [N, 3]
    S: jax.Array            # [N, E, 3, 3] (kept for the per-slot S rows a replay used)
    M: jax.Array            # [N, 3]


def _patterns(use_b_bits: bool) -> np.ndarray:
    """[K, 2, 3] bool: pattern m -> (keep slot k, use B's stem for slot k); m = keep + 8·use_b."""
    m = np.arange(64 if use_b_bits else 8)
    keep = (m[:, None] & _BITS) > 0
    use_b = ((m[:, None] >> 3) & _BITS) > 0
    return np.stack([keep, use_b], axis=1)


def _lookup(keys: jax.Array, key: jax.Array):
    """(index, found) of key in a clip's key table keys [E] (unsorted use is fine: equality scan)."""
    eq = keys == key
    return jnp.argmax(eq).astype(jnp.int32), jnp.any(eq)


class PrepareSwitches(NamedTuple):
    """The switches the prepared arrays depend on, the prepare program's static argument: configs that
    differ only in the others (order, solo_conf, refine, the gates...) share one compiled program, and
    `_prepare_clip` cannot read a switch it was not keyed on."""
    use_tagger1: bool
    proposal: str
    confirm: str
    separator_b: bool

    @classmethod
    def of(cls, sw: Switches) -> "PrepareSwitches":
        return cls(sw.use_tagger1, sw.proposal, sw.confirm, sw.separator_b)


def _prepare_clip(P1, P4, ref_labels, M, keys, retag, energy, S, sw: PrepareSwitches):
    props = (D.proposals(P1, sw.proposal), D.proposals(P4, sw.proposal))
    pairs = D.pair(*props, sw)
    _, q = decode_key(keys)                                           # [E, 3]
    r = D.confirmation(retag, q, sw.confirm)                          # [E, 3]
    pat = jnp.asarray(_patterns(sw.separator_b))                      # [K, 2, 3]
    if sw.separator_b:
        partner, found = jax.vmap(lambda k: _lookup(keys, k + SEP_B_OFFSET))(keys)
        S_b = jnp.where(found[:, None, None], S[partner], jnp.nan)    # B's S rows of the same tuple
    else:
        S_b = S

    def score(q_e, S_a, S_be, keep, use_b):
        labels = jnp.where(keep, q_e, SILENCE)
        rows = jnp.where(use_b[:, None], S_be, S_a)
        return clip_score_detail(labels, ref_labels, rows, M).score

    per_pattern = jax.vmap(score, in_axes=(None, None, None, 0, 0))
    table = jax.vmap(per_pattern, in_axes=(0, 0, 0, None, None))(q, S, S_b, pat[:, 0], pat[:, 1])
    silent = clip_score_detail(jnp.full((NUM_SLOTS,), SILENCE), ref_labels, S[0], M).score
    return Prepared(pairs, keys, r, energy, table, silent, ref_labels, S, M)


# Clips per call of the prepare program: every cache, whatever its clip count, is prepared in calls of
# exactly this many clips (the last one padded), so one compiled program per switches and entry count
# serves every cache and every re-preparation of a few clips (it was one program per clip count: a
# compile of seconds each); the block also bounds the memory of the score tables' temporaries.
PREPARE_BLOCK = 16


@functools.partial(jax.jit, static_argnames="sw")
def _prepare_block(cache: CacheArrays, sw: PrepareSwitches) -> Prepared:
    """`_prepare_clip` over the clips of `cache` (a block of PREPARE_BLOCK clips), vmapped."""
    c = jax.tree_util.tree_map(jnp.asarray, cache)
    xs = (c.P1, c.P4, c.ref_labels.astype(jnp.int32), c.M, c.keys.astype(jnp.int32), c.retag, c.energy_db, c.S)
    return jax.vmap(lambda *x: _prepare_clip(*x, sw=sw))(*xs)


def _prepare_rows(cache: CacheArrays, sw: Switches, rows: np.ndarray) -> Prepared:
    """The prepared arrays of the clips `rows` of `cache` (entry axis already padded), on the host:
    blocks of PREPARE_BLOCK clips (the last padded with its last clip, dropped after) through one
    program, all dispatched before the first is read back."""
    outs = []
    for lo in range(0, len(rows), PREPARE_BLOCK):
        idx = rows[lo:lo + PREPARE_BLOCK]
        full = np.concatenate([idx, np.repeat(idx[-1:], PREPARE_BLOCK - len(idx))])
        outs.append((len(idx), _prepare_block(CacheArrays(*(np.asarray(a)[full] for a in cache)),
                                              PrepareSwitches.of(sw))))
    parts = [jax.tree_util.tree_map(lambda a, k=k: np.asarray(a)[:k], out) for k, out in outs]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)


def _padded(cache: CacheArrays) -> CacheArrays:
    return pad_entries(cache, bucket(int(cache.keys.shape[1]), 4))


def prepare(cache: CacheArrays, sw: Switches) -> Prepared:
    """The config-independent part of the replay, once per cache and switches (jitted, in blocks of
    PREPARE_BLOCK clips: one compiled program whatever the clip count).

    The entry axis is padded to a power of two (at least 4; `pad_entries`: never-found entries after
    the real ones, so entry indices are unchanged): a cache that grows by a few entries per fill round
    reuses the compiled programs of `prepare` and of the replays instead of compiling them again."""
    cache = _padded(cache)
    host = _prepare_rows(cache, sw, np.arange(int(cache.keys.shape[0])))
    return jax.device_put(host)


def changed_clips(old: CacheArrays, new: CacheArrays) -> np.ndarray | None:
    """Indices of the clips whose arrays differ (bitwise) between two caches of the same shapes, or
    None when the shapes differ (entry axis padded as `prepare` pads it)."""
    old, new = _padded(old), _padded(new)
    if any(np.shape(a) != np.shape(b) for a, b in zip(old, new)):
        return None
    n = int(new.keys.shape[0])
    differ = np.zeros(n, bool)
    for a, b in zip(old, new):
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        if a.dtype != b.dtype:
            return None
        differ |= (a.reshape(n, -1).view(np.uint8) != b.reshape(n, -1).view(np.uint8)).any(axis=1)
    return np.nonzero(differ)[0]


def reprepare(prep: Prepared, cache: CacheArrays, sw: Switches, rows: np.ndarray) -> Prepared:
    """`prepare(cache, sw)` when `prep` is the prepared form of a cache that differs from `cache` only
    on the clips `rows` (same shapes, see `changed_clips`): only those clips are prepared again (a
    fill round adds entries to a few clips; the score tables of the others are unchanged). The result
    equals `prepare(cache, sw)` exactly: each clip goes through the same program."""
    rows = np.asarray(rows, np.int64)
    host = jax.tree_util.tree_map(lambda a: np.array(a), prep)
    if len(rows):
        fresh = _prepare_rows(_padded(cache), sw, rows)
        for h, f in zip(jax.tree_util.tree_leaves(host), jax.tree_util.tree_leaves(fresh)):
            h[rows] = f
    return jax.device_put(host)


class ClipReplay(NamedTuple):
    """One config on one clip (batched: leading axes)."""
    labels: jax.Array        # [3] int32 final slot labels (18 = silence), slot k = stem k
    score: jax.Array         # [] float32 CA-SDRi (NaN when None or missing)
    valid: jax.Array         # [] bool scored and not None
    missing: jax.Array       # [] bool decisions need an entry the cache lacks
    missing_keys: jax.Array  # [3] int32 keys needed: first pass A, second pass A, separator B (MISSING_KEY = not needed)
    entry: jax.Array         # [3] int32 entry index (into keys) of the stem kept for each slot
    use_b: jax.Array         # [3] bool slot's stem from separator B


def _replay_clip(params: Params, pc: Prepared, sw: Switches) -> ClipReplay:
    q, conf = D.fuse_pairs(pc.pairs, params, sw)
    silent1 = jnp.all(q == SILENCE)
    k1 = entry_key(0, q)
    i1, f1 = _lookup(pc.keys, k1)
    f1 = f1 | silent1
    if sw.refine:
        (q2, conf2), _ = D.refine(q, conf, pc.r[i1], params)
        changed = jnp.any(q2 != q)
        k2 = entry_key(0, q2)
        i2, f2 = _lookup(pc.keys, k2)
        i2 = jnp.where(changed, i2, i1)
        f2 = f1 & (~changed | f2 | jnp.all(q2 == SILENCE))
        need2 = f1 & ~f2
    else:
        q2, conf2, i2, f2, k2, need2 = q, conf, i1, f1, k1, jnp.array(False)
    silent2 = jnp.all(q2 == SILENCE)
    if sw.separator_b:
        kb = entry_key(1, q2)
        ib, fb = _lookup(pc.keys, kb)
        fb = fb | silent2
        final = D.finalize(q2, conf2, pc.r[i2], pc.r[ib], pc.energy[i2], pc.energy[ib], params, sw)
        needb = f2 & ~fb
    else:
        ib, fb, kb, needb = i2, jnp.array(True), k1, jnp.array(False)
        final = D.finalize(q2, conf2, pc.r[i2], None, pc.energy[i2], None, params, sw)
    found = f2 & fb
    keep = final.labels != SILENCE
    m = jnp.sum(jnp.where(keep, _BITS, 0)) + 8 * jnp.sum(jnp.where(final.use_b, _BITS, 0))
    score = jnp.where(jnp.any(keep), pc.table[i2, m], pc.silent)
    score = jnp.where(found, score, jnp.nan)
    missing_keys = jnp.stack([jnp.where(f1, MISSING_KEY, k1), jnp.where(need2, k2, MISSING_KEY),
                              jnp.where(f2 & needb, kb, MISSING_KEY)]).astype(jnp.int32)
    entry = jnp.where(final.use_b, ib, i2)
    return ClipReplay(final.labels, score, ~jnp.isnan(score), ~found, missing_keys, entry, final.use_b)


class Replay(NamedTuple):
    """Per-clip results of one config ([N, ...]) or of C configs ([C, N, ...])."""
    clips: ClipReplay
    tp: jax.Array            # label counts per clip (metric.label_counts_padded)
    fp: jax.Array
    fn: jax.Array
    correct: jax.Array


def _replay_one(params: Params, prep: Prepared, sw: Switches) -> Replay:
    clips = jax.vmap(_replay_clip, in_axes=(None, 0, None))(params, prep, sw)
    counts = label_counts_padded(clips.labels, prep.ref_labels)
    return Replay(clips, *counts)


@functools.partial(jax.jit, static_argnames="sw")
def replay(params: Params, prep: Prepared, sw: Switches) -> Replay:
    """One config (unbatched Params) over every clip: fields [N, ...]."""
    return _replay_one(params, prep, sw)


@functools.partial(jax.jit, static_argnames="sw")
def replay_configs(params: Params, prep: Prepared, sw: Switches) -> Replay:
    """C configs (Params with a leading axis C): fields [C, N, ...]."""
    return jax.vmap(_replay_one, in_axes=(0, None, None))(params, prep, sw)


class Totals(NamedTuple):
    """Per config and clip group [C, G]: Σ clip CA-SDRi over scored clips, number scored, number missing."""
    score_sum: jax.Array
    scored: jax.Array
    missing: jax.Array


# Configs replayed together: a loop over blocks of this many bounds the [block, N, ...] temporaries
# (tens of MB at 1,500 clips) while each block is wide enough for XLA to vectorise and split over the
# cores.  bench/bench_replay.py, 2,048 configs × 1,500 clips, system1 / system3, M evals/s:
# block 4: 7.3 / 6.4; 16: 9.1 / 8.0; 64: 11.1 / 10.1; 128: 12.1 / 10.6; 256: 12.5 / 10.9.
CONFIG_BLOCK = 128
# Config counts above this are replayed in calls of this many (the last one padded), so a grid of any
# size reuses one compiled program and pads at most one call.
CONFIG_CHUNK = 1024


def _totals(params: Params, prep: Prepared, weights: jax.Array, sw: Switches, block: int = CONFIG_BLOCK) -> Totals:
    w = weights.T                                       # [N, G]
    hi = jax.lax.Precision.HIGHEST

    def one(p):
        c = jax.vmap(_replay_clip, in_axes=(None, 0, None))(p, prep, sw)
        s = jnp.where(c.valid, c.score, 0.0)
        per_clip = jnp.stack([s, c.valid.astype(jnp.float32), c.missing.astype(jnp.float32)])   # [3, N]
        return jnp.matmul(per_clip, w, precision=hi)     # [3, G]

    c = params.w1.shape[0]
    if c > block:                    # a multiple of the block: lax.map compiles a remainder block twice
        params = pad_rows(params, round_up(c, block), jnp)
    out = jax.lax.map(one, params, batch_size=block)[:c]   # [C, 3, G]
    return Totals(out[:, 0], out[:, 1], out[:, 2])


totals = jax.jit(_totals, static_argnames=("sw", "block"))
totals.__doc__ = """C configs × clip groups: params [C], weights [G, N] (clip membership of each group,
0/1) -> Totals [C, G].  Dataset CA-SDRi of group g = score_sum / scored (the official mean over
non-None clips); a config with missing > 0 is not scored there."""


def mean_score(t: Totals) -> np.ndarray:
    """Dataset CA-SDRi [C, G] from Totals (NaN where nothing scored or something is missing)."""
    s, n, m = (np.asarray(x, np.float64) for x in t)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n > 0) & (m == 0), s / n, np.nan)


def bucket(n: int, least: int = 8) -> int:
    """A padded size for n (the next power of two, at least `least`): calls with nearby sizes share
    one compiled program instead of compiling per size."""
    return max(least, 1 << max(0, int(n) - 1).bit_length())


def config_bucket(n: int) -> int:
    """The padded config count of one replay call (n <= CONFIG_CHUNK): a power of two up to a config
    block, then a multiple of the block, so padding wastes little and few programs are compiled."""
    if n <= CONFIG_BLOCK:
        return bucket(n, least=1)
    return round_up(n, CONFIG_BLOCK)


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def pad_rows(rows: tuple, size: int, xp=np) -> tuple:
    """A named tuple of arrays padded along axis 0 to `size` rows by repeating each array's last row
    (unchanged when it has them already). `xp`: numpy, or jax.numpy inside a jitted function."""
    n = int(xp.asarray(rows[0]).shape[0])
    if size == n:
        return rows
    return type(rows)(*(xp.concatenate([a, xp.repeat(a[-1:], size - n, 0)])
                        for a in (xp.asarray(a) for a in rows)))


def pad_configs(params: Params, size: int) -> Params:
    """Pad the config axis to `size` by repeating the last config."""
    return pad_rows(params, size)


def pad_entries(cache: CacheArrays, size: int) -> CacheArrays:
    """Pad the entry axis E of a cache to `size` with MISSING_KEY entries (never found)."""
    e = int(cache.keys.shape[1])
    if size <= e:
        return cache
    def pad(a, value):
        a = np.asarray(a)
        width = [(0, 0), (0, size - e)] + [(0, 0)] * (a.ndim - 2)
        return np.pad(a, width, constant_values=value)
    return cache._replace(keys=pad(cache.keys, MISSING_KEY), retag=pad(cache.retag, 0),
                          energy_db=pad(cache.energy_db, -np.inf), S=pad(cache.S, 0))


def missing_by_clip(clips: ClipReplay) -> dict[int, set[int]]:
    """{clip index: keys needed} from replay results with any leading config axes ([..., N, 3])."""
    keys = np.asarray(clips.missing_keys)
    keys = keys.reshape(-1, keys.shape[-2], keys.shape[-1])
    out: dict[int, set[int]] = {}
    cfg, clip, slot = np.nonzero(keys != MISSING_KEY)
    for n, k in zip(clip.tolist(), keys[cfg, clip, slot].tolist()):
        out.setdefault(n, set()).add(k)
    return out


# Configs per replay call of a sweep: every call (one config, coordinate-descent and per-class steps of
# 2-11 values, grid stages of hundreds in several calls, the missing-entry replays and the final
# per-clip replays; `s5jax cache`'s reach too) is padded to exactly this many, so one compiled program
# per switches and cache shape serves them all (each new config count was a compile of seconds;
# replaying 16 configs instead of 1 costs milliseconds, and a grid in calls of 16 runs at ~3/4 of the
# speed of calls of 128, bench/bench_replay.py: far below one compile).
LEAST_CONFIGS = 16
# The entry axis of a swept cache (and of the sharded runner's clip groups) is padded to at least this
# many: a cache that fills entries round by round (4 -> 8 -> 16 per clip in a synthetic sweep) keeps
# one shape instead of compiling `prepare` and the replays once per size.
LEAST_ENTRIES = 16


def sweep_shaped(cache: CacheArrays) -> CacheArrays:
    """The cache with its entry axis padded as a sweep pads it (a power of two, >= LEAST_ENTRIES)."""
    return pad_entries(cache, bucket(cache.keys.shape[1], LEAST_ENTRIES))


def missing_entries(params: Params, prep: Prepared, sw: Switches) -> dict[int, set[int]]:
    """{clip index: keys} the configs `params` [C] reach and `prep` lacks, replayed LEAST_CONFIGS
    configs per call (the last call padded): one compiled program whatever C."""
    c = int(np.asarray(params.w1).shape[0])
    miss: dict[int, set[int]] = {}
    for lo in range(0, c, LEAST_CONFIGS):
        part = pad_configs(Params(*(np.asarray(a)[lo:lo + LEAST_CONFIGS] for a in params)), LEAST_CONFIGS)
        for i, keys in missing_by_clip(replay_configs(part, prep, sw).clips).items():
            miss.setdefault(i, set()).update(keys)
    return miss


def entry_groups(keys: np.ndarray, least_clips: int = 128, least_entries: int = 2) -> list[tuple[np.ndarray, int]]:
    """Clips grouped by how many entries they hold -> [(clip indices, E of the group)].

    A look-up scans a clip's E entries and a few clips reach many tuples, so replaying every clip at
    the largest E would waste most of the work; each group is padded only to its own largest count
    (a power of two, at least `least_entries`), and groups under `least_clips` clips join the next
    larger one."""
    count = np.sum(np.asarray(keys) != MISSING_KEY, axis=1)
    size = np.array([bucket(int(c), least=least_entries) for c in count])
    groups, pending = [], np.zeros(0, np.int64)
    for e in sorted(set(size.tolist())):
        pending = np.concatenate([pending, np.nonzero(size == e)[0]])
        if len(pending) >= least_clips or e == size.max():
            groups.append((np.sort(pending), int(e)))
            pending = np.zeros(0, np.int64)
    return groups


def _grouped_totals(params: Params, groups: tuple, weights: tuple, sw: Switches) -> Totals:
    """`_totals` over several clip groups (each its own Prepared and weights), summed: one program."""
    parts = [_totals(params, prep, w, sw) for prep, w in zip(groups, weights)]
    return Totals(*(sum(x) for x in zip(*parts)))


@functools.lru_cache(maxsize=32)
def _sharded_totals(mesh: Mesh, sw: Switches):
    """The jitted `_grouped_totals` of one mesh and switches, made once per process: every ShardedReplay
    over them (a search's Evaluator makes a new one after each fill round, a sweep one per cache)
    shares its compiled programs, so same-shaped groups are not compiled again."""
    # params and weights go in as numpy: the jitted call places them itself (cheaper than a
    # device_put per call, which is most of the cost of replaying a single config)
    return jax.jit(functools.partial(_grouped_totals, sw=sw),
                   in_shardings=(NamedSharding(mesh, P("config")), NamedSharding(mesh, P("clip")),
                                 NamedSharding(mesh, P(None, "clip"))),
                   out_shardings=NamedSharding(mesh, P("config")))


class ShardedReplay:
    """`totals` with configs × clips sharded over a 2-D device mesh ("config", "clip").

    Clips are split into groups by entry count (`entry_groups`); each group's prepared arrays are
    trimmed to its entry count, padded with weight-0 clips to the mesh, placed once split over the
    "clip" axis and replicated over "config".  A call replays every group in one jitted program (one
    dispatch: a single config costs little more than its arithmetic), the config axis padded to
    `config_bucket` (and to at least `least_configs`, a power of two: a caller replaying a few configs
    at a time, e.g. one then five then nine, compiles one program for them all instead of one per
    size) and split over "config"; more than `chunk` (default CONFIG_CHUNK) configs go in chunks of
    that many.  With least_configs = chunk every call runs one program of exactly `chunk` configs,
    whatever the count; `least_entries` is the smallest entry count a group is padded to (a cache
    that grows by a few entries per fill round then keeps its groups' shapes).  XLA inserts the sum
    over clip shards."""

    def __init__(self, prep: Prepared, sw: Switches, devices=None, config_axis: int | None = None,
                 least_clips: int = 128, least_configs: int = 1, chunk: int = CONFIG_CHUNK,
                 least_entries: int = 2):
        devices = list(devices if devices is not None else jax.devices())
        n_dev = len(devices)
        n_cfg = config_axis if config_axis is not None else n_dev
        if n_dev % n_cfg:
            raise ValueError(f"config axis {n_cfg} does not divide {n_dev} devices")
        self.mesh = Mesh(np.array(devices).reshape(n_cfg, n_dev // n_cfg), ("config", "clip"))
        self.sw = sw
        self.least_configs = least_configs
        self.chunk = chunk
        n_clip_shards = n_dev // n_cfg
        self.n_clips = int(prep.keys.shape[0])
        prep = jax.tree_util.tree_map(lambda a: np.asarray(a), prep)
        entry_fields = {"keys", "r", "energy", "table", "S"}
        self.groups, subs = [], []
        for idx, e in entry_groups(prep.keys, least_clips, least_entries):
            pad = (-len(idx)) % n_clip_shards
            rows = np.concatenate([idx, np.repeat(idx[:1], pad)])
            subs.append(Prepared(**{f: (jax.tree_util.tree_map(lambda a: a[rows], v) if f not in entry_fields
                                        else v[rows][:, :e]) for f, v in prep._asdict().items()}))
            self.groups.append((idx, pad))
        self._subs = jax.device_put(tuple(subs), NamedSharding(self.mesh, P("clip")))
        self._fn = _sharded_totals(self.mesh, sw)
        self._last_weights = (None, None)

    def _weights(self, weights: np.ndarray) -> tuple:
        """weights [G, N] -> per group [G, n_group + pad] (the last result is kept: a search replays
        many calls with the same weights)."""
        weights = np.asarray(weights, np.float32)
        if self._last_weights[0] is not None and np.array_equal(self._last_weights[0], weights):
            return self._last_weights[1]
        ws = tuple(np.concatenate([weights[:, idx], np.zeros((weights.shape[0], pad), np.float32)], axis=1)
                   for idx, pad in self.groups)
        self._last_weights = (weights.copy(), ws)
        return ws

    def __call__(self, params: Params, weights: np.ndarray) -> Totals:
        """params [C] (numpy), weights [G, N] -> Totals [C, G] (numpy)."""
        c = int(np.asarray(params.w1).shape[0])
        n_cfg = self.mesh.shape["config"]
        ws = self._weights(weights)
        out = []
        for lo in range(0, c, self.chunk):
            part = Params(*(np.asarray(a, np.float32)[lo:lo + self.chunk] for a in params))
            n = int(part.w1.shape[0])
            size = max(config_bucket(n), self.least_configs)
            out.append((n, self._fn(pad_configs(part, size + (-size) % n_cfg), self._subs, ws)))
        return Totals(*(np.concatenate([np.asarray(t[i], np.float64)[:n] for n, t in out]) for i in range(3)))


__all__ = ["prepare", "reprepare", "changed_clips", "replay", "replay_configs", "totals", "mean_score", "missing_by_clip", "decode_key", "bucket", "config_bucket", "entry_groups",
           "pad_configs", "pad_entries",
           "Prepared", "ClipReplay", "Replay", "Totals", "ShardedReplay"]
