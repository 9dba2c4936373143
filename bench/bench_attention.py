"""The whole full-size 4-ch tagger with its attention in two forms, side by side in one process:
`heads-batched` (the heads as a batch axis of two batched matmuls, the form used up to commit 0fed11b)
and `head-loop` (one head per step of a `lax.map` loop, `models.m2d.Attention`, what the model uses).

    python bench/bench_attention.py [--reps 10] [--seconds 10]

Synthetic full-size weights (the real conversion), one clip; both programs are compiled in the same
process (malloc set as the CLI sets it) and called alternately, the order flipping every round, so
machine load hits both alike. Printed: max difference of the logits, compile s, median (min-max) s per
call, and the median of the per-round ratios (batched / loop: > 1 = the loop is faster).
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
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    from s5jax.runtime import memory as runtime

    runtime.keep_freed_memory()          # as the CLI runs
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax.synthetic_weights import synthetic_state_dict
    from s5jax.models import m2d

    class HeadsBatched(nn.Module):
        """The earlier form: q, k, v [batch, heads, tokens, hd], two batched matmuls over all heads."""
        cfg: m2d.M2DConfig

        @nn.compact
        def __call__(self, x):
            cfg, (b, n, d) = self.cfg, x.shape
            h, p = cfg.num_heads, cfg.lax_precision
            qkv = nn.Dense(3 * d, precision=p, name="qkv")(x)
            q, k, v = qkv.reshape(b, n, 3, h, d // h).transpose(2, 0, 3, 1, 4)
            att = jax.nn.softmax(jnp.matmul(q * (d // h) ** -0.5, k.swapaxes(-1, -2), precision=p), axis=-1)
            out = jnp.matmul(att, v, precision=p).transpose(0, 2, 1, 3).reshape(b, n, d)
            return nn.Dense(d, precision=p, name="proj")(out)

    sd = {k[len("model."):]: v for k, v in synthetic_state_dict("tagger-4ch").items()}
    cfg_d, variables = m2d.convert_tagger_state_dict(sd, "tagger-4ch", "synthetic")
    model = m2d.M2DTagger(m2d.M2DConfig.from_dict(cfg_d))
    variables = jax.device_put(variables)
    n = int(round(args.seconds * 32000))
    wav = jnp.asarray((0.1 * np.random.default_rng(0).standard_normal((1, 4, n))).astype(np.float32))

    programs, compile_s = {}, {}
    loop_form = m2d.Attention
    for name, form in (("heads-batched", HeadsBatched), ("head-loop", loop_form)):
        m2d.Attention = form             # Block looks the class up when it is traced
        try:
            t0 = time.perf_counter()
            programs[name] = jax.jit(lambda v, w: model.apply(v, w)[0]).lower(variables, wav).compile()
            compile_s[name] = time.perf_counter() - t0
        finally:
            m2d.Attention = loop_form
    outs = [np.asarray(p(variables, wav)) for p in programs.values()]
    diff = float(np.max(np.abs(outs[0] - outs[1])))
    times = {k: [] for k in programs}
    names = list(programs)
    for r in range(args.reps):
        for k in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            jax.block_until_ready(programs[k](variables, wav))
            times[k].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(times["heads-batched"], times["head-loop"])]
    print(f"4-ch tagger, {args.seconds:g} s clip, {args.reps} calls each, max logit difference {diff:.2e}")
    for k, v in times.items():
        print(f"{k:14s} compile {compile_s[k]:5.1f} s   {statistics.median(v):.3f} s/call "
              f"({min(v):.3f}-{max(v):.3f})")
    print(f"heads-batched / head-loop, median of per-round ratios: {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
