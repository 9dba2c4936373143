"""Peak memory and throughput of `s5jax segment` against the recording's length (not a test).

    python bench/bench_segment.py [--minutes 1 10] [--models tiny|world|full] [--repeats R]
                                  [--work /tmp/s5jax_bench_seg] [--window 10 --hop 5] [--batch-size N]
                                  [--tagger T --separator S]

Writes 4-channel 32 kHz recordings of the given lengths (block by block: noise plus a few tones
entering and leaving) and picks checkpoints: `tiny`: tests/tiny_system.py's random-weight tiny tagger
and separator (the real model code at a few hundred kB); `world`: the bundled trained models
(world:tagger-4ch + world:separator-a); `full`: the full-size official 4-ch tagger and separator
architectures with synthetic weights (s5jax/synthetic_weights.py), converted as `s5jax convert` does.
Then runs `s5jax segment`'s `run_segment` on each in a fresh process (`--child`: the same call the
command makes, its engine wrapped to time each batch), R times per recording; a short warm-up run
first fills the persistent compilation cache, so every measured run fetches the same compiled program.
Prints per run wall and CPU seconds, throughput (seconds of recording per wall second: whole run, and
median and 10th–90th percentile over its batches, each batch advancing the recording by batch × hop)
and the child's peak RSS; over the repeats, the median and range. Flat memory: the longest
recording's peak within 10 % of the shortest's. The machine is shared: run it under `nice` and read
the load average printed (ratios measured in one run are what carries over).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SR = 32000


def write_recording(path: pathlib.Path, seconds: float, seed: int = 0) -> None:
    import soundfile as sf

    if path.exists() and sf.info(str(path)).frames == int(seconds * SR):
        return
    rng = np.random.default_rng(seed)
    n, block = int(seconds * SR), 10 * SR
    with sf.SoundFile(str(path) + ".tmp", "w", SR, 4, subtype="FLOAT", format="WAV") as f:
        for start in range(0, n, block):
            t = (start + np.arange(min(block, n - start))) / SR
            x = 0.02 * rng.standard_normal((4, t.size))
            for k, period in enumerate((37.0, 53.0, 71.0)):       # tones entering and leaving
                on = np.sin(2 * np.pi * t / period) > 0.3
                x += (0.2 * on * np.sin(2 * np.pi * (300 + 200 * k) * t))[None] * (0.6 + 0.1 * np.arange(4))[:, None]
            f.write(x.T.astype(np.float32))
    os.replace(str(path) + ".tmp", path)


def write_models(work: pathlib.Path, kind: str) -> tuple[str, str]:
    sys.path.insert(0, str(ROOT))
    if kind == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        import tiny_system

        t, s = work / "tiny-t4", work / "tiny-sep"
        if not t.exists():
            tiny_system.write_tagger(str(t), 4, seed=1)
        if not s.exists():
            tiny_system.write_separator(str(s), seed=3)
        return str(t), str(s)
    if kind == "world":
        from s5jax import bundled

        return bundled.path("tagger-4ch"), bundled.path("separator-a")
    from s5jax.official.convert import convert_checkpoint
    from s5jax.synthetic_weights import write_synthetic_checkpoint

    out = []
    for k in ("tagger-4ch", "separator"):
        if not (work / k).exists():
            write_synthetic_checkpoint(k, str(work / f"{k}.ckpt"))
            convert_checkpoint(str(work / f"{k}.ckpt"), str(work / k))
        out.append(str(work / k))
    return out[0], out[1]


def child(recording, out, tagger, separator, timings, window, hop, batch_size) -> None:
    """In the measured process: run_segment as `s5jax segment` calls it, each engine call timed;
    the per-batch (windows, seconds) go to `timings` (JSON)."""
    import json

    from s5jax.system.engine import Engine, baseline_engine
    from s5jax.segment import SegmentConfig, run_segment

    calls = []

    def engine(b: int) -> Engine:
        eng = baseline_engine(tagger, separator, b)

        def compute(mix):
            t = time.perf_counter()
            out = [np.asarray(a) for a in eng.compute(mix)]
            calls.append((int(mix.shape[0]), time.perf_counter() - t))
            return out

        return Engine(compute, eng.settings, eng.nparams, eng.min_samples, eng.prepare)

    from s5jax.runtime import compile_cache

    compile_cache.enable()                     # as the command does (S5JAX_CACHE_DIR: the bench's folder)
    run_segment(recording, out, engine=engine, progress=False, log=lambda m: None,
                config=SegmentConfig(window_seconds=window, hop_seconds=hop, batch_size=batch_size))
    with open(timings, "w") as f:
        json.dump(calls, f)


def run(recording, out, tagger, separator, cache, args) -> dict:
    """One measured process -> {wall, cpu, rss (GB), batches [(windows, seconds)]}."""
    import json

    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    timings = str(out) + ".timings.json"
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(recording), str(out), tagger, separator,
                             timings, str(args.window), str(args.hop), str(args.batch_size or 0)], env=env,
                            stdout=subprocess.DEVNULL, cwd=str(ROOT))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"s5jax segment failed on {recording}")
    with open(timings) as f:
        batches = json.load(f)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 2 ** 20,
            "batches": batches}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        rec, out, tagger, separator, timings, window, hop, batch = sys.argv[2:10]
        sys.path.insert(0, str(ROOT))
        child(rec, out, tagger, separator, timings, float(window), float(hop), int(batch) or None)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--models", choices=("tiny", "world", "full"), default="tiny")
    ap.add_argument("--repeats", type=int, default=1, help="measured runs per recording")
    ap.add_argument("--work", default="/tmp/s5jax_bench_seg")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--hop", type=float, default=5.0)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--tagger", default=None, help="an existing 4-ch tagger checkpoint folder (skips writing one)")
    ap.add_argument("--separator", default=None, help="an existing separator checkpoint folder")
    args = ap.parse_args()
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.tagger and args.separator:
        tagger, separator = args.tagger, args.separator
    else:
        tagger, separator = write_models(work, args.models)
    cache = work / "compile-cache"
    start = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    loads = [os.getloadavg()[0]]
    write_recording(work / "warmup.wav", 2 * args.window)
    run(work / "warmup.wav", work / "out-warmup", tagger, separator, cache, args)
    rows = []
    for m in args.minutes:
        rec = work / f"rec-{m:g}min.wav"
        write_recording(rec, 60 * m)
        for r in range(args.repeats):
            res = run(rec, work / f"out-{m:g}min", tagger, separator, cache, args)
            loads.append(os.getloadavg()[0])
            per = [n * args.hop / sec for n, sec in res["batches"]]
            res.update(minutes=m, rate=60 * m / res["wall"], batch_median=float(np.median(per)),
                       batch_p10=float(np.quantile(per, 0.1)), batch_p90=float(np.quantile(per, 0.9)))
            rows.append(res)
            print(f"{m:g} min (run {r + 1}): wall {res['wall']:.1f} s, CPU {res['cpu']:.1f} s, "
                  f"{res['rate']:.2f} s of audio per s (batches: median {res['batch_median']:.2f}, "
                  f"10-90 % {res['batch_p10']:.2f}-{res['batch_p90']:.2f}), peak RSS {res['rss']:.3f} GB", flush=True)
    print(f"models: {args.models} ({tagger}, {separator}); window {args.window:g} s, hop {args.hop:g} s, "
          f"batch {args.batch_size or 'default'}; {start}-{time.strftime('%H:%M', time.gmtime())} UTC; "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f} over the runs; {os.cpu_count()} CPUs")
    print("| recording | runs | wall s | CPU s | audio s per wall s (runs: median, range) | "
          "per batch: median (10-90 %) | peak RSS GB (max) |\n|---|---|---|---|---|---|---|")
    for m in args.minutes:
        rs = [r for r in rows if r["minutes"] == m]
        rates = [r["rate"] for r in rs]
        per = [x for r in rs for x in (r["batch_median"],)]
        print(f"| {m:g} min | {len(rs)} | {np.median([r['wall'] for r in rs]):.1f} | "
              f"{np.median([r['cpu'] for r in rs]):.1f} | {np.median(rates):.2f} ({min(rates):.2f}-{max(rates):.2f}) | "
              f"{np.median(per):.2f} ({min(r['batch_p10'] for r in rs):.2f}-{max(r['batch_p90'] for r in rs):.2f}) | "
              f"{max(r['rss'] for r in rs):.3f} |")
    if len(args.minutes) > 1:
        lo = max(r["rss"] for r in rows if r["minutes"] == args.minutes[0])
        hi = max(r["rss"] for r in rows if r["minutes"] == args.minutes[-1])
        print(f"peak RSS {args.minutes[-1]:g} min / {args.minutes[0]:g} min: {hi / lo:.3f} "
              f"({'flat: within 10 %' if abs(hi / lo - 1) <= 0.10 else 'NOT within 10 %'})")


if __name__ == "__main__":
    main()
