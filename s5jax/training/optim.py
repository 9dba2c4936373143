"""The official optimiser, PyTorch-exact: gradient-norm clipping then AdamW with AMSGrad.

optax has both pieces, but not with torch's arithmetic: `optax.scale_by_amsgrad` takes the maximum of
the bias-corrected second moments (torch keeps the maximum of the raw ones and bias-corrects after),
which moves parameters 2e-3 relative away from torch.optim.AdamW(amsgrad=True) after two steps, and
`optax.clip_by_global_norm` divides by the norm without torch's 1e-6. Fine-tuning from the official
checkpoints should follow the official trajectory, so both are written here as optax transformations.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_: g * min(1, max_norm / (||g||_2 + 1e-6)) over all leaves."""

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: (g * coef).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class AmsgradState(NamedTuple):
    count: jax.Array        # steps taken (int32), drives bias correction and the schedule
    mu: optax.Updates       # first moment
    nu: optax.Updates       # second moment
    nu_max: optax.Updates   # running maximum of the raw second moment (torch's max_exp_avg_sq)


def adamw_amsgrad_torch(learning_rate: float | Callable[[jax.Array], jax.Array], b1: float = 0.9,
                        b2: float = 0.999, eps: float = 1e-8,
                        weight_decay: float = 0.0) -> optax.GradientTransformation:
    """torch.optim.AdamW(amsgrad=True) as an optax transformation (updates are parameter deltas).

    learning_rate may be an optax schedule of the step count (0-based, as torch's scheduler.step()
    after each optimiser step).
    """

    def init(params):
        def zeros():  # three separate trees: a shared buffer could not be donated to a jitted step
            return jax.tree.map(jnp.zeros_like, params)
        return AmsgradState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros())

    def update(grads, state, params=None):
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        step = state.count + 1
        t = step.astype(jnp.float32)
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, grads)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        step_size = lr / (1.0 - b1 ** t)
        bc2_sqrt = jnp.sqrt(1.0 - b2 ** t)

        def delta(m, vmax, p):
            d = -step_size * m / (jnp.sqrt(vmax) / bc2_sqrt + eps)
            if weight_decay:
                d = d - lr * weight_decay * p       # decoupled decay, applied to the old parameter
            return d.astype(m.dtype)

        if weight_decay and params is None:
            raise ValueError("adamw_amsgrad_torch with weight decay needs params")
        ps = params if params is not None else mu
        return jax.tree.map(delta, mu, nu_max, ps), AmsgradState(step, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def official_optimizer(learning_rate, clip: float = 0.5, b1: float = 0.9, b2: float = 0.999,
                       eps: float = 1e-8, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Clip the global gradient norm to `clip` (0 = off), then AdamW+AMSGrad, as the official recipe."""
    opt = adamw_amsgrad_torch(learning_rate, b1, b2, eps, weight_decay)
    return optax.chain(clip_by_global_norm_torch(clip), opt) if clip else opt


def schedule(name: str, lr: float, total_steps: int, warmup_steps: int = 0) -> optax.Schedule:
    """Learning-rate schedule by name: constant (the official), cosine, warmup_cosine."""
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, max(total_steps, 1))
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup_steps, 1), max(total_steps, 1))
    raise ValueError(f"unknown schedule {name!r} (constant, cosine, warmup_cosine)")
