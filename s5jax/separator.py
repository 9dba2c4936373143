"""The label-queried separator as a user-facing object.

    sep = Separator.from_checkpoint("ckpt/separator")       # an s5jax folder (see `s5jax convert`)
    stems = sep(mixture, queries)        # [batch, 4, samples] float32 at 32 kHz, [batch, 3] class ids
                                         # (18 = silence) -> stems [batch, 3, samples]
    stems = sep.separate_vector(mixture, query_vector)      # soft queries [batch, 54]

`sep.apply_fn(variables, mixture, query_vector) -> stems` is the pure function behind both (jit it,
shard it, differentiate it); `sep.variables` are its weights.
"""
from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint
from .errors import CheckpointError, S5Error
from .models.resunet import ResUNetConfig, ResUNetSeparator


def query_vector(queries, num_classes: int = 18) -> jax.Array:
    """Class ids per slot [batch, slots] (num_classes = silence) -> query [batch, slots * num_classes]:
    the one-hot slots concatenated, a silent slot all zeros."""
    queries = jnp.asarray(queries)
    return jax.nn.one_hot(queries, num_classes, dtype=jnp.float32).reshape(queries.shape[0], -1)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Separator:
    """FiLM ResUNet30 separator with its weights. Calls validate their input and raise S5Error."""

    def __init__(self, config: ResUNetConfig, variables: dict):
        self.config = config
        self.module = ResUNetSeparator(config)
        self.variables = variables
        self._jitted = jax.jit(self.apply_fn)            # jax caches one program per input shape

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | os.PathLike) -> "Separator":
        """Load an s5jax separator folder; another model's folder is a CheckpointError."""
        _, config, variables = checkpoint.load(ckpt_dir, kinds=("separator",))
        try:
            cfg = ResUNetConfig.from_dict(config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{os.fspath(ckpt_dir)}: invalid separator config ({e})") from None
        return cls(cfg, jax.tree.map(jnp.asarray, variables))

    # ------------------------------------------------------------------ pure functions
    @property
    def apply_fn(self) -> Callable:
        """(variables, mixture [b, C, n], query_vector [b, S*classes]) -> stems [b, S, n]. Pure."""
        module = self.module

        def apply(variables, mixture, query_vector):
            return module.apply(variables, mixture, query_vector)[0]
        return apply

    @property
    def min_samples(self) -> int:
        """Shortest input: the reflect padding of the STFT needs more than n_fft/2 samples."""
        return self.config.n_fft // 2 + 1

    @property
    def num_params(self) -> int:
        """Learned parameters (BatchNorm running statistics not counted)."""
        return checkpoint.num_params(self.variables)

    def apply_with_intermediates(self, mixture, query_vector):
        """(stems [b, S, n], intermediates: mag [b, C, T, F], mask_mag, condition, source_mask)."""
        self._check_mixture(mixture)
        self._check_query_vector(query_vector, np.shape(mixture)[0])
        return self.module.apply(self.variables, jnp.asarray(mixture, jnp.float32),
                                 jnp.asarray(query_vector, jnp.float32))

    # ------------------------------------------------------------------ user calls
    def __call__(self, mixture, queries) -> jax.Array:
        """mixture [batch, C, samples] float, queries [batch, S] int class ids 0..classes (the last =
        silence) -> stems [batch, S, samples] float32; silent slots are exactly zero."""
        self._check_mixture(mixture)
        self._check_queries(queries, np.shape(mixture)[0])
        return self._jitted(self.variables, jnp.asarray(mixture, jnp.float32),
                            query_vector(queries, self.config.num_classes))

    def separate_vector(self, mixture, query_vector) -> jax.Array:
        """Like calling with class ids, but with a (possibly soft) query vector [batch, S*classes]; a slot
        whose values sum to zero is silent."""
        self._check_mixture(mixture)
        self._check_query_vector(query_vector, np.shape(mixture)[0])
        return self._jitted(self.variables, jnp.asarray(mixture, jnp.float32),
                            jnp.asarray(query_vector, jnp.float32))

    # ------------------------------------------------------------------ validation (one-line errors)
    def _check_mixture(self, mixture) -> None:
        c = self.config
        shape = np.shape(mixture)
        if len(shape) != 3:
            raise S5Error(f"mixture must be [batch, {c.input_channels} channels, samples], got shape {shape}")
        if shape[1] != c.input_channels:
            raise S5Error(f"mixture has {shape[1]} channels, the separator expects {c.input_channels} "
                          f"(shape [batch, channels, samples], got {shape})")
        if shape[2] < self.min_samples:
            raise S5Error(f"mixture of {shape[2]} samples is too short: the separator needs more than "
                          f"{c.n_fft // 2}")
        dtype = mixture.dtype if hasattr(mixture, "dtype") else np.asarray(mixture).dtype
        if not np.issubdtype(dtype, np.floating):
            raise S5Error(f"mixture must be floating point audio, got dtype {dtype}")
        if _is_concrete(mixture) and not np.isfinite(np.asarray(mixture)).all():
            raise S5Error("mixture contains NaN or infinite samples")

    def _check_queries(self, queries, batch: int) -> None:
        c = self.config
        shape = np.shape(queries)
        if shape != (batch, c.num_slots):
            raise S5Error(f"queries must be [batch={batch}, {c.num_slots} slots] class ids, got shape {shape}")
        if not _is_concrete(queries):
            return
        q = np.asarray(queries)
        if not np.issubdtype(q.dtype, np.integer):
            raise S5Error(f"queries must be integer class ids, got dtype {q.dtype}")
        if q.size and (q.min() < 0 or q.max() > c.num_classes):
            raise S5Error(f"queries must be class ids 0..{c.num_classes} ({c.num_classes} = silence), "
                          f"got values {q.min()}..{q.max()}")

    def _check_query_vector(self, qv, batch: int) -> None:
        c = self.config
        shape = np.shape(qv)
        if shape != (batch, c.query_dim):
            raise S5Error(f"query vector must be [batch={batch}, {c.query_dim}] "
                          f"({c.num_slots} slots x {c.num_classes} classes), got shape {shape}")
        if _is_concrete(qv) and not np.isfinite(np.asarray(qv, dtype=np.float64)).all():
            raise S5Error("query vector contains NaN or infinite values")
