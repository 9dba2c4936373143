"""BatchNorm with PyTorch's semantics in both modes; the mode follows the `batch_stats` collection.

    model.apply(variables, x)                                   -> running statistics (inference, eval())
    model.apply(variables, x, mutable=["batch_stats"])          -> batch statistics, running ones updated
                                                                   as torch's train(): momentum 0.1,
                                                                   unbiased variance

Deciding the mode from the mutability of `batch_stats` (not from a `train` argument threaded through
every block) keeps the model code unchanged and makes a forgotten flag impossible: a caller that does
not take the updated statistics back cannot be in train mode. Variable names equal `nn.BatchNorm`'s
(params scale/bias, batch_stats mean/var), so checkpoints and conversion tables are unaffected, and the
inference arithmetic is the same as flax's, so parity is unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn


class TorchBatchNorm(nn.Module):
    """Normalise over every axis but the last (the channel axis): x [..., C] -> [..., C]."""
    epsilon: float = 1e-5
    momentum: float = 0.1          # torch's: new = (1 - momentum) * old + momentum * batch
    use_scale: bool = True
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (c,)) if self.use_scale else None
        bias = self.param("bias", nn.initializers.zeros, (c,)) if self.use_bias else None
        if self.is_mutable_collection("batch_stats") and not self.is_initializing():
            axes = tuple(range(x.ndim - 1))
            n = x.size // c
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)      # biased: what normalises the batch
            m = self.momentum
            ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
            ra_var.value = (1.0 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        else:
            mean, var = ra_mean.value, ra_var.value
        # the same order of operations as flax.linen.BatchNorm, so inference outputs are bit-identical
        y = x - mean
        mul = jax.lax.rsqrt(var + self.epsilon)
        if scale is not None:
            mul = mul * scale
        y = y * mul
        if bias is not None:
            y = y + bias
        return y
