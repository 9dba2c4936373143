"""Benchmark the whole baseline system (tag -> silence last -> separate) and the metric on this machine.

    python bench/bench_pipeline.py [--runs 3] [--batches 1 8] [--taggers tagger-1ch tagger-4ch]

Full-size models with synthetic weights (s5jax.demo: official key manifests, fixed buffers from our
own front ends, through the real conversion); 10 s 4-channel clips at 32 kHz; the jitted data-parallel
pipeline `s5jax infer` uses. Each (tagger, batch) runs in a fresh subprocess so its peak RSS is its own.
Then the metric: time per clip of scoring one 10 s clip (3 stems x 3 references) from waveforms.
Medians over `--runs` timed repeats after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 ** 2   # Linux: kilobytes


def _model(kind: str):
    from s5jax import Separator, Tagger
    from s5jax.synthetic_weights import synthetic_state_dict
    from s5jax.models.m2d import M2DConfig
    from s5jax.official.m2d import convert_tagger_state_dict
    from s5jax.models.resunet import ResUNetConfig
    from s5jax.official.resunet import convert_separator_state_dict

    sd = {k[len("model."):]: v for k, v in synthetic_state_dict(kind).items()}
    if kind == "separator":
        cfg, variables = convert_separator_state_dict(sd, kind)
        return Separator(ResUNetConfig.from_dict(cfg), variables)
    cfg, variables = convert_tagger_state_dict(sd, kind, kind)
    return Tagger(M2DConfig.from_dict(cfg), variables, kind)


def run_pipeline(kind: str, batch: int, runs: int, seconds: float) -> dict:
    import jax
    import numpy as np

    from s5jax.synth.toy import SceneConfig, make_scene
    from s5jax.system.config import preset
    from s5jax.system.engine import sharded_system

    tagger, separator = _model(kind), _model("separator")
    system = sharded_system(preset("baseline"), tagger, None, separator)
    mix = np.stack([make_scene(i, SceneConfig(seconds=seconds))[0] for i in range(batch)])
    t0 = time.perf_counter()
    system(mix)                      # first call: compile + run
    first = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(system(mix))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"tagger": kind, "batch": batch, "compile_s": max(first - med, 0.0), "s_per_batch": med,
            "clips_per_s": batch / med, "peak_rss_gb": _rss_gb()}


def run_metric(runs: int, seconds: float) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax import metric

    n = int(seconds * 32000)
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3, n)).astype(np.float32)
    stems = (refs[[1, 0, 2]] + 0.3 * rng.standard_normal((3, n))).astype(np.float32)
    mix0 = refs.sum(0)
    est_labels, ref_labels = jnp.array([3, 5, 18]), jnp.array([5, 3, 7])
    score = jax.jit(metric.ca_sdri_detail)
    jax.block_until_ready(score(stems, est_labels, refs, ref_labels, mix0))
    out = {}
    for name, fn in [("jit", lambda: jax.block_until_ready(score(stems, est_labels, refs, ref_labels, mix0))),
                     ("reference", lambda: metric.ca_sdri_reference(stems, [3, 5, 18], refs, [5, 3, 7], mix0))]:
        times = []
        for _ in range(max(runs, 5)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--taggers", nargs="+", default=["tagger-1ch", "tagger-4ch"])
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)   # child mode: KIND BATCH
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_pipeline(args.one[0], int(args.one[1]), args.runs, args.seconds)))
        return 0
    import jax

    print(f"S5 baseline pipeline, {args.seconds:g} s 4-channel clips, {jax.devices()[0].platform}, "
          f"{jax.local_device_count()} device(s), median of {args.runs} runs")
    print(f"{'tagger':<11} {'batch':>5} {'compile s':>9} {'s/batch':>8} {'clips/s':>8} {'s/clip':>7} {'peak GB':>8}")
    for kind in args.taggers:
        for batch in args.batches:
            r = subprocess.run([sys.executable, __file__, "--one", kind, str(batch), "--runs", str(args.runs),
                                "--seconds", str(args.seconds)], capture_output=True, text=True)
            if r.returncode:
                print(f"{kind:<11} {batch:>5} failed: {r.stderr.strip().splitlines()[-1:]}")
                continue
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{kind:<11} {batch:>5} {m['compile_s']:>9.1f} {m['s_per_batch']:>8.2f} "
                  f"{m['clips_per_s']:>8.3f} {1 / m['clips_per_s']:>7.2f} {m['peak_rss_gb']:>8.2f}")
    m = run_metric(args.runs, args.seconds)
    print(f"\nCA-SDRi per {args.seconds:g} s clip (3 stems x 3 refs): jitted {m['jit'] * 1e3:.2f} ms, "
          f"plain-python reference {m['reference'] * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
