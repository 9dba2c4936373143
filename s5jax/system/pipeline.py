"""The refined system over the models: pure, jitted, batched functions of (weights, mixture).

    P4 = tag(4-ch tagger, mixture); P1 = tag(1-ch tagger, mixture channel 0)
    Q, conf = fuse(P1, P4)                            (s5jax.system.decisions)
    stems¹ = Sep_A(x, Q); Retag = 1-ch tagger on each stem
    Q' = refine(Q, conf, confirm(Retag, Q))           second pass Sep_A(x, Q') only where Q' != Q
    [separator B on Q', per-slot selection by the re-tag confirmation]
    gates on the kept stems -> labels, probabilities, stems (like the baseline's output)

The model-side pieces (`tag`, `retag`, `energy_db`, `entry`) are shared with the cache builder
(s5jax.replay.cache), so a cached entry is what the pipeline computes for the same clip and tuple.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from .. import metric
from ..labels import NUM_SLOTS, SILENCE
from ..separator import query_vector
from . import decisions as D
from .config import Params


def tag(tagger_apply: Callable, variables, mixture: jax.Array) -> jax.Array:
    """Tagger softmax [b, 3, 19] of mixture [b, C, n] (a 1-ch tagger reads channel 0)."""
    return jax.nn.softmax(tagger_apply(variables, mixture), axis=-1)


def retag(tagger1_apply: Callable, variables, stems: jax.Array) -> jax.Array:
    """1-ch tagger softmax of every stem: stems [b, 3, n] -> [b, slot 3, track 3, 19]."""
    b, k, n = stems.shape
    return tag(tagger1_apply, variables, stems.reshape(b * k, 1, n)).reshape(b, k, NUM_SLOTS, -1)


def energy_db(stems: jax.Array, mix0: jax.Array) -> jax.Array:
    """Stem power relative to the mixture's channel 0, in dB: stems [b, 3, n], mix0 [b, n] -> [b, 3]
    (−inf for a zero stem)."""
    p = jnp.mean(jnp.square(stems), axis=-1)
    p0 = jnp.mean(jnp.square(mix0), axis=-1, keepdims=True)
    return 10.0 * jnp.log10(p / p0)


class Entry(NamedTuple):
    """What the system computes for one (clip, separator, ordered query tuple)."""
    stems: jax.Array       # [b, 3, n]
    retag: jax.Array       # [b, 3, 3, 19]
    energy_db: jax.Array   # [b, 3]


def entry(separator_apply: Callable, separator_vars, tagger1_apply: Callable, tagger1_vars,
          mixture: jax.Array, queries: jax.Array) -> Entry:
    """Separate mixture [b, 4, n] with queries [b, 3] (class ids, 18 = silence), re-tag each stem."""
    stems = separator_apply(separator_vars, mixture, query_vector(queries))
    return Entry(stems, retag(tagger1_apply, tagger1_vars, stems), energy_db(stems, mixture[:, 0]))


def make_base_fn(tagger4_apply: Callable, tagger1_apply: Callable) -> Callable:
    """Pure ((t4 vars, t1 vars), (mixture [b,4,n], refs [b,3,n])) -> (P1, P4, M [b,3]): a clip's
    config-independent part of the cache."""
    def base(weights, batch):
        mixture, refs = batch
        return (tag(tagger1_apply, weights[1], mixture[:, :1]), tag(tagger4_apply, weights[0], mixture),
                metric.mixture_snr(mixture[:, 0], refs))
    return base


def make_entry_fn(separator_apply: Callable, tagger1_apply: Callable) -> Callable:
    """Pure ((separator vars, t1 vars), (mixture, queries [b,3], refs [b,3,n])) ->
    (retag [b,3,3,19], energy_db [b,3], S [b,3,3]): one cache entry per clip of the batch."""
    def fn(weights, batch):
        mixture, queries, refs = batch
        e = entry(separator_apply, weights[0], tagger1_apply, weights[1], mixture, queries)
        return e.retag, e.energy_db, metric.snr_matrix(e.stems, refs)
    return fn


class SystemOutput(NamedTuple):
    """The system's output for a batch, like the baseline's, plus what it decided on the way."""
    labels: jax.Array     # [b, 3] int32 final class per slot (18 = silence; gated slots in place)
    probs: jax.Array      # [b, 3] float32 fused confidence (silent slots: see `silent_probs`)
    stems: jax.Array      # [b, 3, n] the kept stem of each slot; silent slots are zero
    queries: jax.Array    # [b, 3] the fused query tuple Q
    refined: jax.Array    # [b, 3] the tuple Q' after verify-and-refine (= Q when refine is off)
    use_b: jax.Array      # [b, 3] bool: slot's stem from separator B


# so an exported system program (DataParallel.prepare with a key) can be kept on disk: its output and
# its traced config values (an input beside the weights) are named tuples export must know by name
for _type, _name in ((SystemOutput, "s5jax.system.SystemOutput"), (Params, "s5jax.system.Params")):
    try:
        jax.export.register_namedtuple_serialization(_type, serialized_name=_name)
    except ValueError:     # registered already (module reloaded)
        pass


def silence_last(labels: jax.Array, *per_slot: jax.Array):
    """Stable reorder of the slot axis (axis 1) so that silence slots come last.

    labels [batch, 3]; every array in per_slot has the slot axis at position 1 and moves with it.
    """
    slots = labels.shape[1]
    key = jnp.where(labels == SILENCE, slots, 0) + jnp.arange(slots)   # stable: ties keep slot order
    order = jnp.argsort(key, axis=1)
    out = [jnp.take_along_axis(labels, order, axis=1)]
    for a in per_slot:
        idx = order.reshape(order.shape + (1,) * (a.ndim - 2))
        out.append(jnp.take_along_axis(a, idx, axis=1))
    return tuple(out)


def silent_probs(P4: jax.Array, labels: jax.Array) -> jax.Array:
    """Probability reported for silent slots: the 4-ch tagger's silence probabilities of its silent
    tracks, in track order, given to the silent slots in slot order (0 when there are fewer).

    P4 [b, 3, 19], labels [b, 3] -> [b, 3]. With the baseline preset the silent slots are exactly the
    4-ch tagger's silence tracks moved last, so this is what plain `s5jax infer` reports for them."""
    tl = jnp.argmax(P4, axis=-1)                        # the baseline's per-track class
    tp = jnp.where(tl == SILENCE, P4[..., SILENCE], 0.0)
    _, tp = silence_last(jnp.where(tl == SILENCE, SILENCE, 0), tp)   # silence tracks last, in order
    n_live4 = jnp.sum(tl != SILENCE, axis=-1, keepdims=True)
    silent = labels == SILENCE
    rank = jnp.cumsum(silent, axis=-1) - 1                             # k-th silent slot
    idx = jnp.clip(n_live4 + rank, 0, NUM_SLOTS - 1)
    p = jnp.take_along_axis(tp, idx, axis=-1)
    return jnp.where(silent & (n_live4 + rank < NUM_SLOTS), p, 0.0)


def _not_finite(x: jax.Array) -> jax.Array:
    """[b, ...] -> [b] bool: any non-finite value in the clip's slice."""
    return ~jnp.all(jnp.isfinite(x), axis=tuple(range(1, x.ndim)))


def make_system(switches, tagger4_apply: Callable, tagger1_apply: Callable | None,
                separator_apply: Callable, separator2_apply: Callable | None = None) -> Callable:
    """The refined system for one set of static switches (s5jax.system.config.Switches), as a pure
    function (weights, mixture [b, 4, n]) -> SystemOutput, weights = (tagger4 vars, tagger1 vars,
    separator A vars, separator B vars, Params). The thresholds are traced: one compiled program
    serves every config with these switches. The 1-ch tagger is needed for fusion with it, for
    refine and for selection; separator B for selection (ValueError otherwise)."""
    sw = switches
    if tagger1_apply is None and (sw.use_tagger1 or sw.refine or sw.separator_b):
        raise ValueError("this system config needs the 1-ch tagger")
    if separator2_apply is None and sw.separator_b:
        raise ValueError("this system config needs a second separator")

    def separate(apply, variables, mixture, queries):
        return apply(variables, mixture, query_vector(queries))

    def system(weights, mixture):
        t4, t1, sep_a, sep_b, params = weights
        mix0 = mixture[:, 0]
        P4 = tag(tagger4_apply, t4, mixture)
        P1 = tag(tagger1_apply, t1, mixture[:, :1]) if sw.use_tagger1 else jnp.zeros_like(P4)
        q, conf = D.fuse(D.proposals(P1, sw.proposal), D.proposals(P4, sw.proposal), params, sw)
        stems = separate(separator_apply, sep_a, mixture, q)
        q2, conf2 = q, conf
        need_r = sw.separator_b
        if sw.refine or need_r:
            retag_a = retag(tagger1_apply, t1, stems)
            r_a = D.confirmation(retag_a, q, sw.confirm)
        if sw.refine:
            (q2, conf2), _ = D.refine(q, conf, r_a, params)
            changed = jnp.any(q2 != q, axis=-1)                       # [b]: second pass needed

            def second(_):
                s2 = separate(separator_apply, sep_a, mixture, q2)
                s2 = jnp.where(changed[:, None, None], s2, stems)
                if not need_r:
                    return s2, r_a
                r2 = D.confirmation(retag(tagger1_apply, t1, s2), q2, sw.confirm)
                return s2, jnp.where(changed[:, None], r2, r_a)

            # skip the second pass (and its re-tag) when no clip of the batch changed its tuple
            stems, r_a = jax.lax.cond(jnp.any(changed), second, lambda _: (stems, r_a), None)
        energy_a = energy_db(stems, mix0)
        # a clip whose model outputs are not finite must fail (infer refuses non-finite outputs), not
        # be decided from NaNs (every comparison with NaN is false) and zeroed into a finite answer
        broken = _not_finite(P4) | _not_finite(stems)
        if sw.use_tagger1:
            broken = broken | _not_finite(P1)
        if sw.separator_b:
            e_b = entry(separator2_apply, sep_b, tagger1_apply, t1, mixture, q2)
            r_b = D.confirmation(e_b.retag, q2, sw.confirm)
            final = D.finalize(q2, conf2, r_a, r_b, energy_a, e_b.energy_db, params, sw)
            stems = jnp.where(final.use_b[..., None], e_b.stems, stems)
            broken = broken | _not_finite(e_b.stems)
        else:
            final = D.finalize(q2, conf2, None, None, energy_a, None, params, sw)
        silent = final.labels == SILENCE
        stems = jnp.where(silent[..., None], 0.0, stems)
        probs = jnp.where(silent, silent_probs(P4, final.labels), conf2)
        probs = jnp.where(broken[:, None], jnp.nan, probs)
        return SystemOutput(final.labels, probs, stems, q, q2, final.use_b)

    return system
