"""`Tagger`: the official M2D audio tagger (1-ch or 4-ch) loaded from an s5jax checkpoint folder.

    tagger = Tagger.from_checkpoint("ckpt/tagger_4ch")
    logits = tagger(waveform)            # waveform [batch, channels, samples] float32, 32 kHz
    pred = tagger.predict(waveform)      # TagPrediction(labels [b,3], probs [b,3], softmax [b,3,19])

`tagger.apply_fn(variables, waveform) -> logits` is a pure function (no state, no Python loop over
clips), so callers may jit or shard it themselves (see s5jax.pipeline); `tagger.variables` holds the
weights as device arrays. Calls on the object are jitted, one compilation per input shape.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint
from .errors import AudioError, CheckpointError
from .models.m2d import M2DConfig, M2DTagger


class TagPrediction(NamedTuple):
    labels: jax.Array    # [batch, tracks] int32 class index per track (18 = silence)
    probs: jax.Array     # [batch, tracks] float32 softmax probability of that class
    softmax: jax.Array   # [batch, tracks, classes] float32


def make_apply_fn(cfg: M2DConfig) -> Callable:
    """Pure (variables, waveform [batch, channels, samples]) -> logits [batch, tracks, classes]."""
    model = M2DTagger(cfg)

    def apply_fn(variables, waveform):
        return model.apply(variables, waveform)[0]

    return apply_fn


def make_intermediates_fn(cfg: M2DConfig) -> Callable:
    """Pure (variables, waveform) -> dict(logits, lms, features, pooled) for probing."""
    model = M2DTagger(cfg)

    def intermediates_fn(variables, waveform):
        logits, inter = model.apply(variables, waveform)
        return {"logits": logits, **inter}

    return intermediates_fn


def predict_from_logits(logits: jax.Array) -> TagPrediction:
    """logits [batch, tracks, classes] -> per-track argmax, its probability and the full softmax."""
    softmax = jax.nn.softmax(logits, axis=-1)
    labels = jnp.argmax(softmax, axis=-1).astype(jnp.int32)
    probs = jnp.take_along_axis(softmax, labels[..., None], axis=-1)[..., 0]
    return TagPrediction(labels, probs, softmax)


class Tagger:
    """An M2D tagger with its weights. Construct with `Tagger.from_checkpoint(dir)`."""

    KINDS = ("tagger-1ch", "tagger-4ch")

    def __init__(self, cfg: M2DConfig, variables, kind: str = "", source: str = "tagger"):
        self.cfg = cfg
        self.kind = kind or ("tagger-4ch" if cfg.in_channels == 4 else "tagger-1ch")
        self.source = source
        self.variables = jax.device_put(variables)
        self.apply_fn = make_apply_fn(cfg)
        self._logits = jax.jit(self.apply_fn)
        self._predict = jax.jit(lambda v, w: predict_from_logits(self.apply_fn(v, w)))
        self._intermediates = jax.jit(make_intermediates_fn(cfg))

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | os.PathLike) -> "Tagger":
        """Load an s5jax checkpoint folder written by `s5jax convert` (CheckpointError if it is not a tagger)."""
        kind, config, variables = checkpoint.load(ckpt_dir, kinds=cls.KINDS)
        try:
            cfg = M2DConfig.from_dict(config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{os.fspath(ckpt_dir)}: bad tagger config ({e})") from None
        if cfg.in_channels != (4 if kind == "tagger-4ch" else 1):
            raise CheckpointError(f"{os.fspath(ckpt_dir)}: {kind} checkpoint with in_channels={cfg.in_channels}")
        return cls(cfg, variables, kind, os.fspath(ckpt_dir))

    @property
    def num_params(self) -> int:
        """Learned parameters (BatchNorm running statistics not counted)."""
        return checkpoint.num_params(self.variables)

    @property
    def min_samples(self) -> int:
        """Shortest input: the reflect padding of the STFT needs more than n_fft/2 samples."""
        return self.cfg.n_fft // 2 + 1

    def check_input(self, waveform) -> jax.Array:
        """Validate waveform [batch, channels, samples] (float, finite, enough channels and samples)."""
        c = self.cfg.in_channels
        shape = tuple(np.shape(waveform))
        if len(shape) != 3:
            raise AudioError(f"{self.kind}: waveform must be [batch, channels, samples], got shape {shape}")
        if c == 4 and shape[1] != 4:
            raise AudioError(f"{self.kind}: the 4-channel tagger needs 4 channels, got {shape[1]}")
        if shape[1] < 1 or shape[0] < 1:
            raise AudioError(f"{self.kind}: empty batch or no channels (shape {shape})")
        if shape[2] < self.min_samples:
            raise AudioError(f"{self.kind}: {shape[2]} samples is too short (at least {self.min_samples} "
                             f"at {self.cfg.sample_rate} Hz)")
        dtype = np.result_type(waveform)
        if not (np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16):
            raise AudioError(f"{self.kind}: waveform must be floating point, got {dtype}")
        x = jnp.asarray(waveform, dtype=jnp.float32)
        if not bool(jnp.isfinite(x).all()):
            raise AudioError(f"{self.kind}: waveform holds NaN or infinite samples")
        return x

    def __call__(self, waveform) -> jax.Array:
        """waveform [batch, channels, samples] -> logits [batch, tracks, classes] (float32)."""
        return self._logits(self.variables, self.check_input(waveform))

    def predict(self, waveform) -> TagPrediction:
        """Per track: class index, its probability, and the softmax over the 19 classes."""
        return self._predict(self.variables, self.check_input(waveform))

    def intermediates(self, waveform) -> dict[str, jax.Array]:
        """logits, lms [b, ch, mels, frames], features [b, ch, time, F*D], pooled [b, ch*F*D]."""
        return self._intermediates(self.variables, self.check_input(waveform))
