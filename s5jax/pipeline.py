"""The baseline S5 system as one pure, jitted, batched function: tag -> silence last -> separate.

    labels, probs, stems = baseline(tagger_vars, separator_vars, mixture)

and its data-parallel form over all local devices with `jax.sharding` (the batch axis split over a
1-D device mesh, the weights replicated).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .labels import NUM_SLOTS, SILENCE
from .separator import query_vector
from .tagger import predict_from_logits  # per-track argmax, its probability, the softmax  # slot class ids -> the 54-dim query (silence = zeros)


class S5Output(NamedTuple):
    labels: jax.Array    # [batch, 3] int32 class per slot, 18 = silence, silence slots last
    probs: jax.Array     # [batch, 3] float32 tagger probability of that class
    softmax: jax.Array   # [batch, 3, 19] full tagger softmax (slots reordered like labels)
    stems: jax.Array     # [batch, 3, samples] one mono stem per slot; silent slots are zero


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


def make_baseline(tagger_apply: Callable, separator_apply: Callable) -> Callable:
    """Compose the two models' pure apply functions into the baseline system.

    tagger_apply(tagger_vars, mixture [b, 4, n]) -> logits [b, 3, 19]
    separator_apply(separator_vars, mixture [b, 4, n], query [b, 54]) -> stems [b, 3, n]
    Returns a pure function (tagger_vars, separator_vars, mixture) -> S5Output.
    """
    def baseline(tagger_vars, separator_vars, mixture):
        logits = tagger_apply(tagger_vars, mixture)
        labels, probs, softmax = silence_last(*predict_from_logits(logits))
        stems = separator_apply(separator_vars, mixture, query_vector(labels))
        return S5Output(labels, probs, softmax, stems)

    return baseline


class DataParallel:
    """Run a pure function (weights..., batch) over all local devices, batch axis sharded.

    The weights are placed once, replicated on every device; each call pads the batch to a multiple of
    the device count (padding is dropped from the outputs), so any batch size works on any mesh.
    `batch` is one array or a tuple of arrays sharing the leading batch axis.
    """

    def __init__(self, fn: Callable, weights: tuple, devices=None):
        devices = list(jax.local_devices() if devices is None else devices)
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.n_devices = len(devices)
        replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.weights = jax.device_put(weights, replicated)
        self._fn = jax.jit(fn, in_shardings=(replicated, self.batch_sharding),
                           out_shardings=self.batch_sharding)

    def __call__(self, batch, pad_to: int = 0):
        """batch [b, ...] (or a tuple of such) -> outputs for the b clips. `pad_to` pads a short last
        batch to the usual size so it reuses the compiled program instead of compiling a new shape."""
        n = jax.tree.leaves(batch)[0].shape[0]
        pad = max(n, pad_to) - n
        pad += (-(n + pad)) % self.n_devices
        if pad:
            batch = jax.tree.map(lambda a: np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]), batch)
        out = self._fn(self.weights, jax.device_put(batch, self.batch_sharding))
        return jax.tree.map(lambda a: np.asarray(a)[:n], out)


def sharded_baseline(tagger_apply: Callable, tagger_vars, separator_apply: Callable, separator_vars,
                     devices=None) -> DataParallel:
    """The baseline system, data-parallel over `devices` (default: all local devices)."""
    baseline = make_baseline(tagger_apply, separator_apply)
    return DataParallel(lambda w, mix: baseline(w[0], w[1], mix), (tagger_vars, separator_vars), devices)


__all__ = ["S5Output", "silence_last", "query_vector", "make_baseline", "DataParallel",
           "sharded_baseline", "NUM_SLOTS"]
