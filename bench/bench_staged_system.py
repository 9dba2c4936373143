"""Per-clip cost of running the system stage by stage: the `baseline` preset (s5jax.system.stages, a
program per model, the decisions between them) against the same three official steps (tagger argmax
per track, silence last, one separation) compiled as one program, alternating in one process.

    python bench/bench_staged_system.py [--calls 8] [--seconds 10]

The bundled world's 4-ch tagger and separator A on a random 10 s mixture, batch 1. Printed: median
and range of each over `--calls` calls, and whether their labels and stems are bit-identical. The
machine is shared: only the ratio of one run carries over.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from s5jax.bundled import resolve
    from s5jax.runtime.parallel import DataParallel
    from s5jax.separator import query_vector
    from s5jax.system.config import preset
    from s5jax.system.engine import load_models, sharded_system
    from s5jax.system.pipeline import silence_last
    from s5jax.tagger import predict_from_logits

    t4, _, sep, _ = load_models([resolve("world:tagger-4ch")], resolve("world:separator-a"))

    def baseline(w, mixture):
        labels, probs, _ = silence_last(*predict_from_logits(t4.apply_fn(w[0], mixture)))
        return labels, probs, sep.apply_fn(w[1], mixture, query_vector(labels))

    one = DataParallel(baseline, (t4.variables, sep.variables))
    staged = sharded_system(preset("baseline"), t4, None, sep)
    mix = np.random.default_rng(0).standard_normal((1, 4, int(args.seconds * 32000))).astype(np.float32) * 0.1
    a, b = one(mix), staged(mix)                       # compile both
    # equal values (the system writes +0.0 into silent slots where the separator may give -0.0)
    same = bool(np.array_equal(a[0], b.labels) and np.array_equal(a[1], b.probs) and np.array_equal(a[2], b.stems))
    times = {"one program": [], "stages": []}
    for _ in range(args.calls):
        for name, fn in (("one program", one), ("stages", staged)):
            t = time.perf_counter()
            jax.block_until_ready(fn(mix))
            times[name].append(time.perf_counter() - t)
    print(f"{args.calls} calls of {args.seconds:g} s, batch 1, load {os.getloadavg()[0]:.1f}; "
          f"labels, probabilities and stems equal: {same}")
    for name, ts in times.items():
        print(f"{name:<12} median {statistics.median(ts):.3f} s ({min(ts):.3f}-{max(ts):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
