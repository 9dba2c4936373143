"""The separator's mask head alone, with `out_conv` as the official 1x1 conv (`conv`) and as the
weighted channel sum the model uses (`sum`, `models.resunet.ChannelMix`), side by side in one process.

    python bench/bench_mask_head.py [--reps 15] [--seconds 10]

Inputs are the shapes of one clip (after_conv output [1, T, 513, 36], mixture magnitude/phase
[1, 4, T, 513]); both forms are jitted and called alternately; printed: max difference and the
median (min-max) ms per call.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from s5jax.runtime import memory as runtime

    runtime.keep_freed_memory()          # as the CLI runs
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import linen as nn

    from s5jax.models.resunet import ChannelMix

    b, t, f, s, c = 1, int(args.seconds * 100) + 1, 513, 3, 4
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, t, f, s * c * 3)).astype(np.float32))
    mag, cos, sin = (jnp.asarray(rng.standard_normal((b, c, t, f)).astype(np.float32)) for _ in range(3))
    params = {"kernel": rng.standard_normal((1, 1, c, 1)).astype(np.float32), "bias": np.zeros(1, np.float32)}

    def head(x, mag, cos, sin, mix):       # ResUNetBase's mask head, up to the ISTFT inputs
        x = x.reshape(b, t, f, s, c, 3)
        mask_mag = jax.nn.sigmoid(x[..., 0])
        mask_re, mask_im = jnp.tanh(x[..., 1]), jnp.tanh(x[..., 2])
        mask_abs = jnp.maximum(jnp.sqrt(mask_re ** 2 + mask_im ** 2), 1e-10)
        mask_cos, mask_sin = mask_re / mask_abs, mask_im / mask_abs
        to = lambda a: a.transpose(0, 2, 3, 1)[:, :, :, None, :]
        ci, si, mi = to(cos), to(sin), to(mag)
        out_mag = nn.relu(mi * mask_mag)
        return mix(out_mag * (ci * mask_cos - si * mask_sin)), mix(out_mag * (si * mask_cos + ci * mask_sin))

    conv = lambda z: nn.Conv(1, (1, 1), precision="highest").apply(
        {"params": params}, z.reshape(b, t, f * s, c)).reshape(b, t, f, s).transpose(0, 3, 1, 2)
    summed = lambda z: ChannelMix().apply({"params": params}, z).transpose(0, 3, 1, 2)
    forms = {"conv": jax.jit(lambda *a: head(*a, conv)), "sum": jax.jit(lambda *a: head(*a, summed))}
    outs = {k: jax.block_until_ready(fn(x, mag, cos, sin)) for k, fn in forms.items()}
    diff = max(float(jnp.max(jnp.abs(a - b_))) for a, b_ in zip(outs["conv"], outs["sum"]))
    times = {k: [] for k in forms}
    for _ in range(args.reps):
        for k, fn in forms.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, mag, cos, sin))
            times[k].append(time.perf_counter() - t0)
    print(f"mask head, {args.seconds:g} s clip, {args.reps} calls each, max difference {diff:.2e}")
    for k, v in times.items():
        print(f"{k:5s} {1e3 * statistics.median(v):7.1f} ms ({1e3 * min(v):.1f}-{1e3 * max(v):.1f})")


if __name__ == "__main__":
    main()
