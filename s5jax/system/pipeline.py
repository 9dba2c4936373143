"""The refined system over the models, run stage by stage (s5jax.system.stages: one compiled program
per model and shape), with the decisions between the stages as small jitted programs:

    P4 = tag4(x); P1 = tag1(x channel 0)
    Q, conf = fuse(P1, P4)                            (s5jax.system.decisions)
    stems¹ = Sep_A(x, Q); Retag = 1-ch tagger on each stem
    Q' = refine(Q, conf, confirm(Retag, Q))           second pass Sep_A(x, Q') only where Q' != Q
    [separator B on Q', per-slot selection by the re-tag confirmation]
    gates on the kept stems -> labels, probabilities, stems (like the baseline's output)
    (a separation whose tuple is silence in every slot of the batch is not run: its stems are zero)

The cache builder (s5jax.replay.cache) runs the same stage programs (`base`, `entry`), so a cached
entry is what the system computes for the same clip and tuple.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import metric
from ..labels import NUM_SLOTS, SILENCE
from . import decisions as D
from .config import Params


def energy_db(stems: jax.Array, mix0: jax.Array) -> jax.Array:
    """Stem power relative to the mixture's channel 0, in dB: stems [b, 3, n], mix0 [b, n] -> [b, 3]
    (−inf for a zero stem)."""
    p = jnp.mean(jnp.square(stems), axis=-1)
    p0 = jnp.mean(jnp.square(mix0), axis=-1, keepdims=True)
    return 10.0 * jnp.log10(p / p0)


class SystemOutput(NamedTuple):
    """The system's output for a batch, like the baseline's, plus what it decided on the way."""
    labels: jax.Array     # [b, 3] int32 final class per slot (18 = silence; gated slots in place)
    probs: jax.Array      # [b, 3] float32 fused confidence (silent slots: see `silent_probs`)
    stems: jax.Array      # [b, 3, n] the kept stem of each slot; silent slots are zero
    queries: jax.Array    # [b, 3] the fused query tuple Q
    refined: jax.Array    # [b, 3] the tuple Q' after verify-and-refine (= Q when refine is off)
    use_b: jax.Array      # [b, 3] bool: slot's stem from separator B


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




# ------------------------------------------------------------------------------ the system
@functools.partial(jax.jit, static_argnums=0)
def _propose(sw, params, P1, P4):
    """-> (Q, conf): the fused, ordered query tuple [b, 3] and its confidences."""
    P1 = jnp.zeros_like(P4) if P1 is None else P1
    return D.fuse(D.proposals(P1, sw.proposal), D.proposals(P4, sw.proposal), params, sw)


@functools.partial(jax.jit, static_argnums=0)
def _confirm(mode: str, retag, queries):
    return D.confirmation(retag, queries, mode)


@jax.jit
def _refine(params, q, conf, r):
    """-> (Q', conf', changed [b]: the clip's tuple changed, its second pass is needed)."""
    (q2, conf2), _ = D.refine(q, conf, r, params)
    return q2, conf2, jnp.any(q2 != q, axis=-1)


@jax.jit
def _where_changed(changed, new, old):
    """Per clip: `new` where its tuple changed, else `old` (trees of [b, ...] arrays)."""
    return jax.tree.map(lambda a, b: jnp.where(changed.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


@functools.partial(jax.jit, static_argnums=0)
def _decide(sw, params, mixture, P1, P4, q, q2, conf2, stems, r_a, stems_b, r_b) -> "SystemOutput":
    """The gates, the selection and the output of a batch from what the stages computed."""
    mix0 = mixture[:, 0]
    energy_a = energy_db(stems, mix0)
    # a clip whose model outputs are not finite must fail (infer refuses non-finite outputs), not
    # be decided from NaNs (every comparison with NaN is false) and zeroed into a finite answer
    broken = _not_finite(P4) | _not_finite(stems)
    if P1 is not None:
        broken = broken | _not_finite(P1)
    if stems_b is not None:
        final = D.finalize(q2, conf2, r_a, r_b, energy_a, energy_db(stems_b, mix0), params, sw)
        stems = jnp.where(final.use_b[..., None], stems_b, stems)
        broken = broken | _not_finite(stems_b)
    else:
        final = D.finalize(q2, conf2, None, None, energy_a, None, params, sw)
    silent = final.labels == SILENCE
    stems = jnp.where(silent[..., None], 0.0, stems)
    probs = jnp.where(silent, silent_probs(P4, final.labels), conf2)
    probs = jnp.where(broken[:, None], jnp.nan, probs)
    return SystemOutput(final.labels, probs, stems, q, q2, final.use_b)


def run_system(sw, stages, params: Params, mixture: jax.Array) -> SystemOutput:
    """The refined system for static switches `sw` (s5jax.system.config.Switches) and thresholds
    `params` on a batch `mixture` [b, 4, n] already on the stages' devices (`stages.place`), over
    `stages` (s5jax.system.stages.Stages: the 1-ch tagger is needed for fusion with it, for refine
    and for selection; a second separator for selection). -> SystemOutput, on the devices.

    The thresholds are traced: the decision programs serve every config with these switches, and
    the model programs every config at all."""
    if stages.tag1 is None and sw.needs_tagger1:
        raise ValueError("this system config needs the 1-ch tagger")
    if len(stages.separate) < 2 and sw.separator_b:
        raise ValueError("this system config needs a second separator")
    P4 = stages.tag4.on_device(mixture)
    P1 = stages.tag1.on_device(mixture) if sw.use_tagger1 else None
    q, conf = _propose(sw, params, P1, P4)

    def separate(i: int, queries: jax.Array, retag: bool):
        """(stems [b, 3, n], confirmation [b, 3] or None) of separator i for `queries`. A batch whose
        every slot is silence is not run: the separator's stem of a silent slot is exactly zero
        (s5jax.models.resunet) and a silent slot's confirmation is 0, so zeros are its output (the
        replay needs no entry for such a tuple either); on CPU, most clips where the taggers hear
        nothing skip the separator and the re-tag."""
        if (np.asarray(queries) == SILENCE).all():
            b, n = mixture.shape[0], mixture.shape[-1]
            return (stages.place(np.zeros((b, NUM_SLOTS, n), np.float32)),
                    stages.place(np.zeros((b, NUM_SLOTS), np.float32)) if retag else None)
        stems = stages.separate[i].on_device((mixture, queries))
        return stems, _confirm(sw.confirm, stages.retag(stems), queries) if retag else None

    stems, r_a = separate(0, q, sw.retags)
    q2, conf2, stems_b, r_b = q, conf, None, None
    if sw.refine:
        q2, conf2, changed = _refine(params, q, conf, r_a)
        # the second pass (and its re-tag) only when some clip of the batch changed its tuple
        if bool(jnp.any(changed)):
            s2, r2 = separate(0, q2, sw.separator_b)
            stems, r_a = _where_changed(changed, (s2, r2 if sw.separator_b else r_a), (stems, r_a))
    if sw.separator_b:
        stems_b, r_b = separate(1, q2, True)
    return _decide(sw, params, mixture, P1, P4, q, q2, conf2, stems, r_a, stems_b, r_b)


# ------------------------------------------------------------------------------ the cache's share
@jax.jit
def _mixture_snr(mixture, refs):
    return metric.mixture_snr(mixture[:, 0], refs)


@jax.jit
def _entry_scores(stems, mixture, refs):
    return energy_db(stems, mixture[:, 0]), metric.snr_matrix(stems, refs)


def base(stages, mixture: jax.Array, refs: jax.Array):
    """A clip's config-independent part of the cache: mixture [b, 4, n], refs [b, 3, n] (on the
    stages' devices) -> (P1, P4 [b, 3, 19], M [b, 3]: the mixture's SNR against each reference)."""
    return stages.tag1.on_device(mixture), stages.tag4.on_device(mixture), _mixture_snr(mixture, refs)


def entry(stages, mixture: jax.Array, queries: jax.Array, refs: jax.Array, separator: int = 0):
    """One cache entry per clip of the batch: separate `mixture` with `queries` [b, 3] (class ids,
    18 = silence) by separator `separator`, re-tag each stem -> (retag [b, 3, 3, 19], energy_db [b, 3],
    S [b, 3, 3]: each stem's SNR against each reference)."""
    stems = stages.separate[separator].on_device((mixture, queries))
    return (stages.retag(stems), *_entry_scores(stems, mixture, refs))
