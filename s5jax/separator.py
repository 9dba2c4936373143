"""The label-queried separator as a user-facing object.

    sep = Separator.from_checkpoint("ckpt/separator")       # an s5jax folder (see `s5jax convert`)
    stems = sep(mixture, queries)        # [batch, 4, samples] float32 at 32 kHz, [batch, 3] class ids
                                         # (18 = silence) -> stems [batch, 3, samples]
    stems = sep.separate_vector(mixture, query_vector)      # soft queries [batch, 54]

`sep.apply_fn(variables, mixture, query_vector) -> stems` is the pure function behind both (jit it,
shard it, differentiate it); `sep.variables` are its weights.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import AudioError
from .models.configs import ResUNetConfig
from .wrapper import LoadedModel


def query_vector(queries, num_classes: int = 18) -> jax.Array:
    """Class ids per slot [batch, slots] (num_classes = silence) -> query [batch, slots * num_classes]:
    the one-hot slots concatenated, a silent slot all zeros."""
    queries = jnp.asarray(queries)
    return jax.nn.one_hot(queries, num_classes, dtype=jnp.float32).reshape(queries.shape[0], -1)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Separator(LoadedModel):
    """FiLM ResUNet30 separator with its weights. Calls validate their input and raise AudioError."""

    KINDS = ("separator",)
    CONFIG = ResUNetConfig

    def __init__(self, config: ResUNetConfig, variables: dict, kind: str = "", source: str | None = None,
                 identity: dict | None = None, expected=None):
        super().__init__(config, variables, kind, source, identity, expected)
        self._jitted = jax.jit(self.apply_fn)            # jax caches one program per input shape

    @property
    def config(self) -> ResUNetConfig:
        return self.cfg

    @staticmethod
    def make_module(cfg: ResUNetConfig):
        from .models.resunet import ResUNetSeparator   # Flax: imported when a model is first traced
        return ResUNetSeparator(cfg)

    @staticmethod
    def example_inputs(cfg: ResUNetConfig) -> tuple:
        return (jax.ShapeDtypeStruct((1, cfg.input_channels, cfg.n_fft * 2), np.float32),
                jax.ShapeDtypeStruct((1, cfg.query_dim), np.float32))

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
            raise AudioError(f"mixture must be [batch, {c.input_channels} channels, samples], got shape {shape}")
        if shape[1] != c.input_channels:
            raise AudioError(f"mixture has {shape[1]} channels, the separator expects {c.input_channels} "
                          f"(shape [batch, channels, samples], got {shape})")
        if shape[2] < self.min_samples:
            raise AudioError(f"mixture of {shape[2]} samples is too short: the separator needs more than "
                          f"{c.n_fft // 2}")
        dtype = mixture.dtype if hasattr(mixture, "dtype") else np.asarray(mixture).dtype
        if not np.issubdtype(dtype, np.floating):
            raise AudioError(f"mixture must be floating point audio, got dtype {dtype}")
        if _is_concrete(mixture) and not np.isfinite(np.asarray(mixture)).all():
            raise AudioError("mixture contains NaN or infinite samples")

    def _check_queries(self, queries, batch: int) -> None:
        c = self.config
        shape = np.shape(queries)
        if shape != (batch, c.num_slots):
            raise AudioError(f"queries must be [batch={batch}, {c.num_slots} slots] class ids, got shape {shape}")
        if not _is_concrete(queries):
            return
        q = np.asarray(queries)
        if not np.issubdtype(q.dtype, np.integer):
            raise AudioError(f"queries must be integer class ids, got dtype {q.dtype}")
        if q.size and (q.min() < 0 or q.max() > c.num_classes):
            raise AudioError(f"queries must be class ids 0..{c.num_classes} ({c.num_classes} = silence), "
                          f"got values {q.min()}..{q.max()}")

    def _check_query_vector(self, qv, batch: int) -> None:
        c = self.config
        shape = np.shape(qv)
        if shape != (batch, c.query_dim):
            raise AudioError(f"query vector must be [batch={batch}, {c.query_dim}] "
                          f"({c.num_slots} slots x {c.num_classes} classes), got shape {shape}")
        if _is_concrete(qv) and not np.isfinite(np.asarray(qv, dtype=np.float64)).all():
            raise AudioError("query vector contains NaN or infinite values")
