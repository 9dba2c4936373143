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
from ..labels import NUM_SLOTS
from ..separator import query_vector


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
