"""The refined system's decision rules as pure, batched jnp functions (reference/refined_system.md §1-4).

Shared by the pipeline over the models (`infer --system`) and the cache replay, so both take the same
decisions bit for bit.  Every function works on any leading batch axes `...`; thresholds come as a
`Params` whose leaves broadcast against them (scalars [] and per-class [18] for one config; the
replay vmaps over a leading config axis).  Switches are static Python values.

Class ids 0..17, 18 = silence.  A clip's flow:

    p1 = proposals(P1, sw.proposal); p4 = proposals(P4, sw.proposal)     # config-independent
    q, conf = fuse(p1, p4, params, sw)                                     # ordered queries, silence last
    stems¹ = Sep_A(x, q)
    q2, conf2, dropped = refine(q, conf, confirmation(Retag(stems¹), q, sw.confirm), params)   # if sw.refine
    stems² = stems¹ if all(q2 == q) else Sep_A(x, q2)      (and stems^B = Sep_B(x, q2) if sw.separator_b)
    labels, use_b = finalize(q2, conf2, rA, rB, energyA, energyB, params, sw)
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..labels import NUM_CLASSES, NUM_SLOTS, SILENCE
from .config import Params, Switches


class Proposals(NamedTuple):
    """One tagger's per-track proposals: classes [..., 3] int32, probabilities [..., 3] float32,
    ok [..., 3] bool (False = the track proposes nothing)."""
    classes: jax.Array
    probs: jax.Array
    ok: jax.Array


class Fused(NamedTuple):
    """Ordered query tuple [..., 3] int32 (silence last) and the fused confidence of each slot
    [..., 3] float32 (0 for silent slots)."""
    queries: jax.Array
    conf: jax.Array


def proposals(P: jax.Array, mode: str) -> Proposals:
    """Per-track proposal of a tagger from its softmax P [..., 3, 19].

    mode "argmax": the argmax over all 19 (first maximum); a silence argmax proposes nothing.
    mode "best_nonsilence": the argmax over the 18 classes; every track proposes.
    Does not depend on any threshold: the replay computes it once per clip."""
    P = jnp.asarray(P, jnp.float32)
    if mode == "argmax":
        c = jnp.argmax(P, axis=-1).astype(jnp.int32)
        ok = c != SILENCE
    elif mode == "best_nonsilence":
        c = jnp.argmax(P[..., :NUM_CLASSES], axis=-1).astype(jnp.int32)
        ok = jnp.ones(c.shape, bool)
    else:
        raise ValueError(f"unknown proposal mode {mode!r}")
    p = jnp.take_along_axis(P, c[..., None], axis=-1)[..., 0]
    return Proposals(c, p, ok)


def _compact(selected: jax.Array, pos: jax.Array, classes: jax.Array, conf: jax.Array) -> Fused:
    """Put candidate a (selected[..., a]) into slot pos[..., a]; empty slots are silence with conf 0.
    selected, pos, classes, conf [..., A] -> Fused [..., 3]."""
    k = jnp.arange(NUM_SLOTS, dtype=jnp.int32)
    hit = selected[..., :, None] & (pos[..., :, None] == k)                       # [..., A, 3]
    q = jnp.where(jnp.any(hit, axis=-2), jnp.sum(jnp.where(hit, classes[..., :, None], 0), axis=-2), SILENCE)
    c = jnp.sum(jnp.where(hit, conf[..., :, None], 0.0), axis=-2)
    return Fused(q.astype(jnp.int32), c.astype(jnp.float32))


class Pairs(NamedTuple):
    """Both taggers' proposals side by side (4-ch tracks first, then 1-ch) with the class-wise pairing,
    which depends on no threshold: classes, probs, ok [..., 6]; paired4 / paired1 [..., 3] (the
    4-ch / 1-ch proposal has a partner); partner_p [..., 3] (the 1-ch partner's probability of each
    4-ch proposal, 0 if none); tie [..., 6, 6] bool (tie[i, j]: candidate j ranks before candidate i
    when their confidences are equal: lower class id, then lower index, i.e. the 4-ch tagger's first)."""
    classes: jax.Array
    probs: jax.Array
    ok: jax.Array
    paired4: jax.Array
    paired1: jax.Array
    partner_p: jax.Array
    tie: jax.Array


def pair(p1: Proposals, p4: Proposals, sw: Switches) -> Pairs:
    """Merge the two taggers' proposals by class as multisets: within a class, each tagger's proposals
    sorted by probability (descending; ties: lower track first) are paired rank by rank.  With
    use_tagger1 off the 1-ch tagger proposes nothing.  Threshold-free: the replay computes it once."""
    ok1 = p1.ok if sw.use_tagger1 else jnp.zeros_like(p1.ok)
    cls = jnp.concatenate([p4.classes, p1.classes], axis=-1)                      # [..., 6]: 4-ch first
    p = jnp.concatenate([p4.probs, p1.probs], axis=-1).astype(jnp.float32)
    ok = jnp.concatenate([p4.ok, ok1], axis=-1)
    idx = jnp.arange(2 * NUM_SLOTS)
    tagger4 = idx < NUM_SLOTS
    # rank of each proposal among its own tagger's proposals of the same class
    same = (cls[..., :, None] == cls[..., None, :]) & (tagger4[:, None] == tagger4[None, :])
    ahead = (p[..., None, :] > p[..., :, None]) | ((p[..., None, :] == p[..., :, None]) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(same & ok[..., None, :] & ahead, axis=-1)                      # [..., 6]
    # pair a 4-ch proposal with the 1-ch proposal of the same class and rank
    match = ((cls[..., :NUM_SLOTS, None] == cls[..., None, NUM_SLOTS:])
             & (rank[..., :NUM_SLOTS, None] == rank[..., None, NUM_SLOTS:])
             & ok[..., :NUM_SLOTS, None] & ok[..., None, NUM_SLOTS:])            # [..., 3 (4-ch), 3 (1-ch)]
    partner_p = jnp.sum(jnp.where(match, p[..., None, NUM_SLOTS:], 0.0), axis=-1)
    tie = (cls[..., None, :] < cls[..., :, None]) | ((cls[..., None, :] == cls[..., :, None]) & (idx[None, :] < idx[:, None]))
    return Pairs(cls, p, ok, jnp.any(match, axis=-1), jnp.any(match, axis=-2), partner_p, tie)


def fuse_pairs(pairs: Pairs, params: Params, sw: Switches) -> Fused:
    """The thresholded half of the fusion: candidates, confidences, ranking, slot order (see `fuse`)."""
    cls, p, ok = pairs.classes, pairs.probs, pairs.ok
    idx = jnp.arange(2 * NUM_SLOTS)
    w1 = jnp.asarray(params.w1, jnp.float32)
    w4 = jnp.asarray(params.w4, jnp.float32)
    p4_, p1_ = p[..., :NUM_SLOTS], p[..., NUM_SLOTS:]
    solo4 = p4_ * w4 if sw.solo_conf == "weighted" else p4_
    solo1 = p1_ * w1 if sw.solo_conf == "weighted" else p1_
    conf = jnp.concatenate([jnp.where(pairs.paired4, w1 * pairs.partner_p + w4 * p4_, solo4), solo1], axis=-1)
    valid = jnp.concatenate([ok[..., :NUM_SLOTS] & (pairs.paired4 | (p4_ >= params.solo4)),
                             ok[..., NUM_SLOTS:] & ~pairs.paired1 & (p1_ >= params.solo1)], axis=-1)

    # the tie order is threshold-free (computed once in `pair`)
    before = valid[..., None, :] & ((conf[..., None, :] > conf[..., :, None])
                                    | ((conf[..., None, :] == conf[..., :, None]) & pairs.tie))
    crank = jnp.sum(before, axis=-1)
    selected = valid & (crank < NUM_SLOTS)
    if sw.order == "confidence":
        pos = crank
    elif sw.order == "track":
        pos = jnp.sum(selected[..., None, :] & (idx[None, :] < idx[:, None]), axis=-1)
    else:
        raise ValueError(f"unknown order {sw.order!r}")
    return _compact(selected, pos, cls, conf)


def fuse(p1: Proposals, p4: Proposals, params: Params, sw: Switches) -> Fused:
    """Dual-tagger fusion (spec §1) -> the ordered query tuple and slot confidences.

    Proposals are merged by class as multisets: within a class, each tagger's proposals sorted by
    probability (descending; ties: lower track first) and paired rank by rank; a pair's confidence is
    w1·p1 + w4·p4; an unpaired proposal of tagger t is kept iff p >= solo_t, with confidence p
    (solo_conf "prob") or w_t·p ("weighted").  Candidates are ranked by confidence descending, ties:
    lower class id, then the 4-ch tagger's (a pair counts as the 4-ch tagger's), then lower track;
    the first three are kept.  order "confidence": slots in that rank; "track": the kept candidates
    in the 4-ch tagger's track order, then the 1-ch-only ones in the 1-ch track order.  Silence last.
    With use_tagger1 off the 1-ch tagger proposes nothing (4-ch alone: the baseline).
    """
    return fuse_pairs(pair(p1, p4, sw), params, sw)


def _per_class(thr: jax.Array, queries: jax.Array) -> jax.Array:
    """thr [18] (or [..., 18] broadcasting) gathered at the slot classes [..., 3]; silence reads class 17
    (callers mask silent slots)."""
    thr = jnp.asarray(thr, jnp.float32)
    q = jnp.minimum(queries, NUM_CLASSES - 1)
    if thr.ndim == 1:
        return thr[q]
    return jnp.take_along_axis(thr, q, axis=-1)


def confirmation(retag: jax.Array, queries: jax.Array, mode: str) -> jax.Array:
    """How the re-tag of each stem confirms its slot's class.

    retag [..., 3 slots, 3 tracks, 19] (1-ch tagger softmax of stem k), queries [..., 3] -> r [..., 3]
    float32.  mode "max_prob": max over tracks of retag[k, j, q_k]; "argmax": 1.0 if some track's argmax
    (first maximum over 19) is q_k, else 0.0.  Silent slots get 0."""
    retag = jnp.asarray(retag, jnp.float32)
    q = jnp.asarray(queries, jnp.int32)
    if mode == "max_prob":
        idx = jnp.broadcast_to(q[..., :, None, None], retag.shape[:-1] + (1,))
        r = jnp.max(jnp.take_along_axis(retag, idx, axis=-1)[..., 0], axis=-1)
    elif mode == "argmax":
        r = jnp.any(jnp.argmax(retag, axis=-1) == q[..., :, None], axis=-1).astype(jnp.float32)
    else:
        raise ValueError(f"unknown confirm mode {mode!r}")
    return jnp.where(q == SILENCE, 0.0, r)


def refine(queries: jax.Array, conf: jax.Array, r: jax.Array, params: Params):
    """Verify and refine (spec §2): slot k is dropped iff r_k < verify[c_k] and conf_k < drop[c_k];
    the kept slots move up in order, silence last.

    queries, conf, r [..., 3] -> (Fused [..., 3], dropped [..., 3] bool, in the input's slot order)."""
    live = queries != SILENCE
    dropped = live & (r < _per_class(params.verify, queries)) & (conf < _per_class(params.drop, queries))
    keep = live & ~dropped
    pos = jnp.cumsum(keep, axis=-1) - 1
    return _compact(keep, pos, queries, conf), dropped


def select_b(r_a: jax.Array, r_b: jax.Array, queries: jax.Array) -> jax.Array:
    """Dual-separator selection (spec §3): use B's stem for slot k iff r^B_k > r^A_k (ties keep A).
    [..., 3] -> bool [..., 3] (False for silent slots)."""
    return (queries != SILENCE) & (r_b > r_a)


def gates(queries: jax.Array, conf: jax.Array, energy_db: jax.Array, params: Params, sw: Switches) -> jax.Array:
    """Gates (spec §4) -> gated [..., 3] bool: energy (energy_db [..., 3] of the kept stem, dB re
    mixture channel 0, below params.energy_db) and probability (conf below gate[c]); each only when
    its switch is on.  A gated slot becomes silence in place; nothing is re-separated."""
    live = queries != SILENCE
    g = jnp.zeros(queries.shape, bool)
    if sw.energy_gate:
        g = g | (energy_db < params.energy_db)
    if sw.prob_gate:
        g = g | (conf < _per_class(params.gate, queries))
    return live & g


class Final(NamedTuple):
    """The system's output labels [..., 3] int32 (gated slots silence, in place: slot k's stem is the
    stem of query slot k) and use_b [..., 3] bool (slot k's stem comes from separator B)."""
    labels: jax.Array
    use_b: jax.Array


def finalize(queries: jax.Array, conf: jax.Array, r_a: jax.Array, r_b: jax.Array | None,
             energy_a: jax.Array, energy_b: jax.Array | None, params: Params, sw: Switches) -> Final:
    """Selection and gates in the configured order, on the final query tuple (after refine).

    queries, conf [..., 3]; r_a, r_b [..., 3] confirmations of A's and B's stems for these queries
    (r_b, energy_b unused, may be None, when sw.separator_b is off); energy_a, energy_b [..., 3]."""
    if sw.separator_b:
        use_b = select_b(r_a, r_b, queries)
        if sw.gate_before_select:
            gated = gates(queries, conf, energy_a, params, sw)
            use_b = use_b & ~gated
        else:
            gated = gates(queries, conf, jnp.where(use_b, energy_b, energy_a), params, sw)
    else:
        use_b = jnp.zeros(queries.shape, bool)
        gated = gates(queries, conf, energy_a, params, sw)
    labels = jnp.where(gated, SILENCE, queries).astype(jnp.int32)
    return Final(labels, use_b & (labels != SILENCE))


__all__ = ["Proposals", "Pairs", "Fused", "Final", "proposals", "pair", "fuse_pairs", "fuse", "confirmation", "refine", "select_b",
           "gates", "finalize"]
