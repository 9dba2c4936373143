"""Start-up with and without the persistent compilation cache: `s5jax infer` on one 10 s clip with the
full-size 4-ch tagger and separator (synthetic weights), each run a fresh process.

    python bench/bench_compile_cache.py [--runs 3] [--work /tmp/s5jax_bench_cc] [--seconds 10]

Prints wall and CPU (user+sys of the child) seconds per run: `off` = --no-compile-cache (compiles
every time), `fill` = first run on an empty cache, `warm` = later runs served from the cache. The
machine is shared: compare the columns of one run; CPU seconds are steadier than wall under load.
With a short clip (`--seconds 1`) a run is almost all start-up (import, loading both models, tracing,
compiling or fetching from the cache), so `warm` there is the time a second run takes to start
computing, plus ≈ 0.1 of a 10 s clip's compute.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def prepare(work: pathlib.Path, seconds: float = 10.0) -> None:
    sys.path.insert(0, str(ROOT))
    from s5jax.demo import write_synthetic_checkpoint
    from s5jax.official import convert_checkpoint
    from s5jax.scenes import SceneConfig, write_scene_set

    if not (work / f"data{seconds:g}").exists():
        write_scene_set(str(work / f"data{seconds:g}"), 1, seed=0, cfg=SceneConfig(seconds=seconds))
    for kind in ("tagger-4ch", "separator"):
        if not (work / kind).exists():
            write_synthetic_checkpoint(kind, str(work / f"{kind}.ckpt"))
            convert_checkpoint(str(work / f"{kind}.ckpt"), str(work / kind))


def run(work: pathlib.Path, data: str, out: str, cache: pathlib.Path, *extra: str) -> tuple[float, float]:
    shutil.rmtree(work / out, ignore_errors=True)
    env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "s5jax.cli", "infer", str(work / data), "--tagger",
                    str(work / "tagger-4ch"), "--separator", str(work / "separator"), "--out",
                    str(work / out), "--quiet", *extra], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/s5jax_bench_cc")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.seconds)
    data = f"data{args.seconds:g}"
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    rows = {"off": [run(work, data, "out", work / "unused", "--no-compile-cache") for _ in range(args.runs)],
            "fill": [run(work, data, "out", cache)],
            "warm": [run(work, data, "out", cache) for _ in range(args.runs)]}
    print(f"| mode | runs | wall s (median, min-max) | CPU s (median, min-max) |\n|---|---|---|---|")
    for mode, r in rows.items():
        w, c = [x[0] for x in r], [x[1] for x in r]
        print(f"| {mode} | {len(r)} | {statistics.median(w):.1f} ({min(w):.1f}-{max(w):.1f}) | "
              f"{statistics.median(c):.1f} ({min(c):.1f}-{max(c):.1f}) |")
    print(f"clip: {args.seconds:g} s; load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
