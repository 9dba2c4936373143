"""`Tagger`: the official M2D audio tagger (1-ch or 4-ch) loaded from an s5jax checkpoint folder.

    tagger = Tagger.from_checkpoint("ckpt/tagger4ch")   # shared loading/checks: s5jax.wrapper
    logits = tagger(waveform)            # waveform [batch, channels, samples] float32, 32 kHz
    pred = tagger.predict(waveform)      # TagPrediction(labels [b,3], probs [b,3], softmax [b,3,19])

`tagger.apply_fn(variables, waveform) -> logits` is a pure function (no state, no Python loop over
clips), so callers may jit or shard it themselves (see s5jax.system.engine); `tagger.variables` holds the
weights as device arrays. Calls on the object are jitted, one compilation per input shape (shared by
`tagger(...)`, `predict` and `intermediates`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import AudioError, CheckpointError
from .models.configs import M2DConfig
from .wrapper import LoadedModel


class TagPrediction(NamedTuple):
    labels: jax.Array    # [batch, tracks] int32 class index per track (18 = silence)
    probs: jax.Array     # [batch, tracks] float32 softmax probability of that class
    softmax: jax.Array   # [batch, tracks, classes] float32


def predict_from_logits(logits: jax.Array) -> TagPrediction:
    """logits [batch, tracks, classes] -> per-track argmax, its probability and the full softmax."""
    softmax = jax.nn.softmax(logits, axis=-1)
    labels = jnp.argmax(softmax, axis=-1).astype(jnp.int32)
    probs = jnp.take_along_axis(softmax, labels[..., None], axis=-1)[..., 0]
    return TagPrediction(labels, probs, softmax)


class Tagger(LoadedModel):
    """An M2D tagger with its weights. Construct with `Tagger.from_checkpoint(dir)`."""

    KINDS = ("tagger-1ch", "tagger-4ch")
    CONFIG = M2DConfig

    def __init__(self, cfg: M2DConfig, variables, kind: str = "", source: str | None = None,
                 identity: dict | None = None, expected=None):
        super().__init__(cfg, variables, kind, source, identity, expected)

        def forward(variables, waveform):
            logits, inter = self.module.apply(variables, waveform)
            return {"logits": logits, **inter}

        # one compiled program per input shape serves __call__, predict and intermediates: the extra
        # outputs are on the way to the logits anyway (a few MB), while a program per method compiled
        # the whole model up to three times for one shape (≈ 10-20 s each for the full-size taggers)
        self._forward = jax.jit(forward)
        self._predict = jax.jit(predict_from_logits)     # [b, tracks, classes] only: compiles in ms

    @classmethod
    def default_kind(cls, cfg: M2DConfig) -> str:
        return "tagger-4ch" if cfg.in_channels == 4 else "tagger-1ch"

    @staticmethod
    def make_module(cfg: M2DConfig):
        from .models.m2d import M2DTagger   # Flax: imported when a model is first traced
        return M2DTagger(cfg)

    @staticmethod
    def example_inputs(cfg: M2DConfig) -> tuple:
        return (jax.ShapeDtypeStruct((1, cfg.in_channels, cfg.hop * cfg.patch), np.float32),)

    @classmethod
    def check_config(cls, cfg: M2DConfig, kind: str, source: str) -> None:
        if cfg.in_channels != (4 if kind == "tagger-4ch" else 1):
            raise CheckpointError(f"{source}: {kind} checkpoint with in_channels={cfg.in_channels} "
                                  "in its config")

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
        if not np.isfinite(np.asarray(x)).all():      # numpy: jnp compiled two programs per new shape
            raise AudioError(f"{self.kind}: waveform holds NaN or infinite samples")
        return x

    def __call__(self, waveform) -> jax.Array:
        """waveform [batch, channels, samples] -> logits [batch, tracks, classes] (float32)."""
        return self._forward(self.variables, self.check_input(waveform))["logits"]

    def predict(self, waveform) -> TagPrediction:
        """Per track: class index, its probability, and the softmax over the 19 classes."""
        return self._predict(self(waveform))

    def intermediates(self, waveform) -> dict[str, jax.Array]:
        """logits, lms [b, ch, mels, frames], features [b, ch, time, F*D], pooled [b, ch*F*D]."""
        return self._forward(self.variables, self.check_input(waveform))
