"""The official training losses in JAX: the tagger's permutation-invariant cross-entropy and the
separator's class-aware permutation-invariant −SNR.

Both build a [batch, 3, 3] (target slot, output slot) cost table and take, per clip, the best of the
3! = 6 slot permutations by the mean over slots (an exhaustive search is exact and cheaper than a
Hungarian solver for three slots); the loss is that minimum averaged over the batch.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ..metric import snr

# Penalty of a (target, output) pair the separator may not match (different query or silence off the
# diagonal), as in the official class-aware PIT.
PENALTY = 1e9
_PERMS = np.array(list(itertools.permutations(range(3))), dtype=np.int32)   # [6, 3]: target t -> output p[t]


def best_permutation(cost: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cost [batch, T, T] (target, output) -> (per-clip minimum of the mean over targets [batch],
    best permutation [batch, T]: output slot assigned to each target slot).

    Ties go to the first permutation in lexicographic order (identity first), like itertools order.
    """
    t = cost.shape[-1]
    perms = _PERMS if t == 3 else np.array(list(itertools.permutations(range(t))), dtype=np.int32)
    # per permutation: mean over targets of cost[t, perm[t]] -> [batch, P]
    per_perm = jnp.mean(cost[:, np.arange(t)[None, :], perms], axis=-1)
    idx = jnp.argmin(per_perm, axis=-1)
    return jnp.min(per_perm, axis=-1), jnp.asarray(perms)[idx]


def tagger_pair_ce(logits: jax.Array, target: jax.Array) -> jax.Array:
    """logits [batch, tracks, classes], soft/one-hot target [batch, tracks, classes] ->
    cross-entropy table [batch, target track, output track]."""
    logp = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return -jnp.einsum("btc,boc->bto", jnp.asarray(target, jnp.float32), logp,
                       precision=jax.lax.Precision.HIGHEST)


def tagger_pit_per_clip(logits: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> (per-clip PIT cross-entropy [batch], best permutation [batch, tracks])."""
    return best_permutation(tagger_pair_ce(logits, target))


def separator_pair_cost(pred: jax.Array, target: jax.Array, label_vector: jax.Array) -> jax.Array:
    """pred, target [batch, slots, samples] (a singleton channel axis is dropped), label_vector
    [batch, slots, classes] (silence = zeros) -> cost [batch, target slot, output slot]:
    −SNR where both slots carry the same non-silent query, 0 on the diagonal for a silent slot,
    PENALTY elsewhere."""
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.ndim == 4:
        pred, target = pred[:, :, 0], target[:, :, 0]
    lv = jnp.asarray(label_vector, jnp.float32)
    neg_snr = -snr(pred[:, None, :, :], target[:, :, None, :])                 # [b, target, output]
    silent = jnp.sum(jnp.abs(lv), axis=-1) == 0                                # [b, slots]
    same = jnp.all(lv[:, :, None, :] == lv[:, None, :, :], axis=-1)            # [b, t, o]
    live = same & ~silent[:, :, None] & ~silent[:, None, :]
    diag_silent = jnp.eye(lv.shape[1], dtype=bool)[None] & silent[:, :, None]
    return jnp.where(live, neg_snr, jnp.where(diag_silent, 0.0, PENALTY))


def separator_pit_per_clip(pred, target, label_vector) -> tuple[jax.Array, jax.Array]:
    """-> (per-clip best mean −SNR over slots [batch], best permutation [batch, slots])."""
    return best_permutation(separator_pair_cost(pred, target, label_vector))
