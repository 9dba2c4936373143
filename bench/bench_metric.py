"""Benchmark of s5jax.metric: waveform-form CA-SDRi on 10 s clips and matrix-form rescoring throughput.

    python bench/bench_metric.py [--batch 8] [--relabel 10000] [--repeats 7]

Prints a table of medians over repeats (after a warm-up call that includes compilation).
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from s5jax import metric as m
from s5jax.labels import SAMPLE_RATE, SILENCE


def _median_time(fn, repeats: int) -> float:
    """Median wall time of fn() in seconds; fn must block until its result is ready."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _clips(rng, batch: int, n: int):
    """Random 10 s clips: 3 references of 2 classes, estimates = references + noise, mixture = sum + noise."""
    ref = rng.standard_normal((batch, 3, n), dtype=np.float32)
    est = (ref + 0.3 * rng.standard_normal((batch, 3, n), dtype=np.float32)).astype(np.float32)
    mix = (ref.sum(1) + 0.1 * rng.standard_normal((batch, n), dtype=np.float32)).astype(np.float32)
    est_l = np.tile(np.array([3, 3, 7], np.int32), (batch, 1))
    ref_l = np.tile(np.array([7, 3, 3], np.int32), (batch, 1))
    return est, est_l, ref, ref_l, mix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="clips per jitted waveform batch")
    ap.add_argument("--relabel", type=int, default=10000, help="relabellings per vmapped matrix call")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = 10 * SAMPLE_RATE
    rows = []

    # (a) waveform form, 10 s clips, 3 estimates x 3 references
    est, est_l, ref, ref_l, mix = _clips(rng, args.batch, n)
    batch_args = [jax.device_put(x) for x in (est, est_l, ref, ref_l, mix)]
    run_batch = lambda: jax.block_until_ready(m.score_batch(*batch_args))  # noqa: E731
    run_batch()
    t = _median_time(run_batch, args.repeats)
    rows.append((f"waveform, jit+vmap batch of {args.batch}", f"{1e3 * t / args.batch:.2f} ms/clip",
                 f"{args.batch / t:.1f} clips/s"))

    one = jax.jit(m.ca_sdri)
    one_args = [jax.device_put(x[0]) for x in (est, est_l, ref, ref_l, mix)]
    run_one = lambda: jax.block_until_ready(one(*one_args))  # noqa: E731
    run_one()
    t = _median_time(run_one, args.repeats)
    rows.append(("waveform, jit single clip", f"{1e3 * t:.2f} ms/clip", f"{1 / t:.1f} clips/s"))

    run_ref = lambda: m.ca_sdri_reference(est[0], est_l[0], ref[0], ref_l[0], mix[0])  # noqa: E731
    t = _median_time(run_ref, max(3, args.repeats // 2))
    rows.append(("waveform, itertools reference (numpy f32)", f"{1e3 * t:.2f} ms/clip", f"{1 / t:.1f} clips/s"))

    # (b) matrix form: rescoring many relabellings from cached (S, M)
    k = args.relabel
    S = rng.normal(5, 5, size=(k, 3, 3)).astype(np.float32)
    M = rng.normal(0, 2, size=(k, 3)).astype(np.float32)
    est_r = rng.choice([1, 2, 3, SILENCE], size=(k, 3)).astype(np.int32)
    ref_r = rng.choice([1, 2, 3], size=(k, 3)).astype(np.int32)
    ref_r[:, 2] = np.where(rng.random(k) < 0.5, SILENCE, ref_r[:, 2])
    mat_args = [jax.device_put(x) for x in (est_r, ref_r, S, M)]
    rescore = jax.jit(jax.vmap(m.clip_score_detail))
    run_mat = lambda: jax.block_until_ready(rescore(*mat_args))  # noqa: E731
    run_mat()
    t = _median_time(run_mat, args.repeats)
    rows.append((f"matrix, jit+vmap over {k} relabellings", f"{1e6 * t / k:.3f} us/clip", f"{k / t:,.0f} clips/s"))

    kr = 2000
    run_mref = lambda: [m.clip_score_reference(est_r[i], ref_r[i], S[i], M[i]) for i in range(kr)]  # noqa: E731
    t = _median_time(run_mref, 3)
    rows.append(("matrix, itertools reference", f"{1e6 * t / kr:.1f} us/clip", f"{kr / t:,.0f} clips/s"))

    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {len(jax.devices())} device(s); "
          f"clips of {n} samples; medians over {args.repeats} repeats")
    w = max(len(r[0]) for r in rows)
    print(f"| {'case':<{w}} | {'time':>14} | {'throughput':>16} |")
    print(f"|{'-' * (w + 2)}|{'-' * 16}|{'-' * 18}|")
    for name, a, b in rows:
        print(f"| {name:<{w}} | {a:>14} | {b:>16} |")


if __name__ == "__main__":
    main()
