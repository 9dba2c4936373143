"""Benchmark the full-size M2D taggers on this machine: compile time, clips/s, peak memory.

    python bench/bench_tagger.py [--runs 3] [--seconds 10] [--batches 1 4]

Weights are synthesised from the golden manifests (tests/golden/synth.py; no torch needed) and go
through the real conversion. Every (tagger, batch) configuration runs in a fresh subprocess, so its
peak RSS (ru_maxrss) is its own. Inputs are 4-channel clips at 32 kHz; the 1-ch tagger reads channel 0.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = pathlib.Path(os.environ.get("S5JAX_GOLDEN", ROOT / "tests" / "golden"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def run_one(tag: str, batch: int, seconds: float, runs: int) -> dict:
    """One configuration, in this process. Returns the measurements."""
    import jax
    import numpy as np

    from s5jax.models.m2d import M2DConfig
    from s5jax.official.m2d import convert_tagger_state_dict
    from s5jax.tagger import Tagger

    spec = importlib.util.spec_from_file_location("golden_synth", GOLDEN / "synth.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    with open(GOLDEN / "m2d" / f"manifest_{tag}.json") as f:
        manifest = json.load(f)
    sd = synth.synth_state_dict(manifest, dict(np.load(GOLDEN / "m2d" / f"fixed_{tag}.npz")))
    kind = "tagger-1ch" if tag == "1c" else "tagger-4ch"
    config, variables = convert_tagger_state_dict({k[len("model."):]: v for k, v in sd.items()}, kind, tag)
    del sd
    tagger = Tagger(M2DConfig.from_dict(config), variables, kind)
    del variables
    wav = np.stack([synth.synth_waveform(10 + i, 4, seconds) for i in range(batch)])
    rss_loaded = _rss_mb()

    t0 = time.perf_counter()
    compiled = jax.jit(tagger.apply_fn).lower(tagger.variables, wav).compile()
    compile_s = time.perf_counter() - t0
    compiled(tagger.variables, wav).block_until_ready()       # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        compiled(tagger.variables, wav).block_until_ready()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"tagger": kind, "batch": batch, "compile_s": compile_s, "median_s": med,
            "clips_per_s": batch / med, "params_m": tagger.num_params / 1e6,
            "rss_loaded_mb": rss_loaded, "peak_rss_mb": _rss_mb(), "devices": str(jax.devices()[0].platform)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--taggers", nargs="+", default=["1c", "4c"], choices=["1c", "4c"])
    p.add_argument("--one", nargs=2, metavar=("TAG", "BATCH"), help=argparse.SUPPRESS)  # child mode
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.seconds, args.runs)))
        return 0

    rows = []
    for tag in args.taggers:
        for b in args.batches:
            cmd = [sys.executable, __file__, "--one", tag, str(b), "--runs", str(args.runs),
                   "--seconds", str(args.seconds)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{tag} batch {b} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"M2D taggers, {args.seconds:g} s 4-channel clips at 32 kHz, {rows[0]['devices']}, "
          f"{os.cpu_count()} cores, median of {args.runs} runs")
    print(f"{'tagger':<11} {'batch':>5} {'params':>8} {'compile s':>9} {'s/batch':>8} {'clips/s':>8} "
          f"{'RSS loaded MB':>13} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['tagger']:<11} {r['batch']:>5} {r['params_m']:>7.1f}M {r['compile_s']:>9.2f} "
              f"{r['median_s']:>8.3f} {r['clips_per_s']:>8.2f} {r['rss_loaded_mb']:>13.0f} {r['peak_rss_mb']:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
