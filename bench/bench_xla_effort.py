"""Compile time against run time of the bundled models' programs with XLA's default optimisations and
without most of them (`jax_disable_most_optimizations`: LLVM -O0, no expensive passes), the setting the
test suite compiles with except where a test has the `xla_default` marker (tests/conftest.py).

    python bench/bench_xla_effort.py [--rounds 2] [--calls 3] [--seconds 10]

Each program (the bundled separator A and 4-ch tagger on a random mixture, batch 1) is compiled both
ways, alternating, `--rounds` times (each compile a fresh one: the program lowered anew with a constant
of its own); each compiled program then runs `--calls` times after one warm-up call.
Printed per setting: compile seconds (median, range), run seconds (median, range), and the largest
difference of its output from the default's relative to the default's peak. The machine is shared:
only the ratios of one run carry over.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = {"default": {},
            # what jax_disable_most_optimizations sets in the compile options (jax/_src/compiler.py)
            "most disabled": {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax import bundled
    from s5jax.separator import Separator, query_vector
    from s5jax.tagger import Tagger

    sep = Separator.from_checkpoint(bundled.path("separator-a"))
    tag = Tagger.from_checkpoint(bundled.path("tagger-4ch"))
    n = int(round(args.seconds * 32000))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4, n)).astype(np.float32) * 0.1)
    programs = {"separator A": (sep.apply_fn, (sep.variables, x, query_vector(jnp.array([[1, 5, 18]]), 18))),
                "4-ch tagger": (tag.apply_fn, (tag.variables, x))}
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, {args.seconds:g} s mixture, batch 1")
    print(f"{'program':12s} {'setting':14s} {'compile s (range)':>22s} {'run s (range)':>24s} {'rel. diff':>10s}")
    for name, (fn, inputs) in programs.items():
        compile_s = {k: [] for k in SETTINGS}
        run_s = {k: [] for k in SETTINGS}
        outs = {}
        fresh = 0
        for _ in range(args.rounds):
            for k, options in SETTINGS.items():
                # a program of its own per compile (a constant of its own), so no compile is served
                # from the executables JAX keeps in memory
                fresh += 1
                lowered = jax.jit(lambda *a, c=float(fresh): jax.tree.map(lambda y: y + 0.0 * c, fn(*a))).lower(*inputs)
                t0 = time.perf_counter()
                compiled = lowered.compile(options)
                compile_s[k].append(time.perf_counter() - t0)
                jax.block_until_ready(compiled(*inputs))
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    out = jax.block_until_ready(compiled(*inputs))
                    run_s[k].append(time.perf_counter() - t0)
                outs[k] = np.asarray(out["logits"] if isinstance(out, dict) else out)
        ref = outs["default"]
        for k in SETTINGS:
            diff = float(np.abs(outs[k] - ref).max() / max(float(np.abs(ref).max()), 1e-30))
            c, r = compile_s[k], run_s[k]
            print(f"{name:12s} {k:14s} {statistics.median(c):8.2f} ({min(c):.2f}-{max(c):.2f}) "
                  f"{statistics.median(r):10.3f} ({min(r):.3f}-{max(r):.3f}) {diff:10.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
