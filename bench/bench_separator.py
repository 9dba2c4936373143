"""Benchmark the full-size separator on CPU: 10 s 4-channel clips at batch 1 and 4.

    python bench/bench_separator.py [--runs 3] [--batches 1 4] [--seconds 10]

Weights are synthetic (the golden manifest through golden/synth.py, converted in-process; no torch).
Each configuration runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(os.environ.get("S5JAX_GOLDEN", ROOT.parent / "shared" / "golden"))


def _worker(batch: int, seconds: float, runs: int) -> dict:
    import importlib.util
    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax.models.resunet import ResUNetConfig
    from s5jax.official.resunet import convert_separator_state_dict
    from s5jax.separator import Separator

    spec = importlib.util.spec_from_file_location("golden_synth", GOLDEN / "synth.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    manifest = json.loads((GOLDEN / "resunet" / "manifest.json").read_text())
    fixed = dict(np.load(GOLDEN / "resunet" / "fixed.npz"))
    sd = {k[len("model."):]: v for k, v in synth.synth_state_dict(manifest, fixed).items()}
    config, variables = convert_separator_state_dict(sd, "synthetic")
    del sd
    sep = Separator(ResUNetConfig.from_dict(config), jax.tree.map(jnp.asarray, variables))

    mix = np.stack([synth.synth_waveform(100 + i, 4, seconds) for i in range(batch)])
    queries = np.tile(np.array([[3, 15, 18]]), (batch, 1))
    t0 = time.perf_counter()                          # trace + XLA compile, measured on their own
    jax.jit(sep.apply_fn).lower(sep.variables, jnp.asarray(mix), jnp.zeros((batch, 54), jnp.float32)).compile()
    compile_s = time.perf_counter() - t0
    sep(mix, queries).block_until_ready()             # warm-up: compile of the call's own jit + one run
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sep(mix, queries).block_until_ready()
        times.append(time.perf_counter() - t0)
    run = float(np.median(times))
    return {"batch": batch, "compile_s": compile_s, "run_s": run, "clips_per_s": batch / run,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "device": str(jax.devices()[0].platform), "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.seconds, args.runs)))
        return
    rows = []
    for b in args.batches:
        out = subprocess.run([sys.executable, __file__, "--worker", str(b), "--seconds", str(args.seconds),
                              "--runs", str(args.runs)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"separator (ResUNet30, 26.8 M values), {args.seconds:g} s 4-channel clips at 32 kHz, "
          f"{rows[0]['device']}, {os.cpu_count()} cores, median of {args.runs} runs")
    print(f"{'batch':>5} | {'compile s':>9} | {'s / batch':>9} | {'clips/s':>7} | {'s / clip':>8} | {'peak RSS GB':>11}")
    for r in rows:
        print(f"{r['batch']:>5} | {r['compile_s']:>9.1f} | {r['run_s']:>9.2f} | {r['clips_per_s']:>7.3f} | "
              f"{1 / r['clips_per_s']:>8.2f} | {r['peak_rss_gb']:>11.2f}")


if __name__ == "__main__":
    main()
