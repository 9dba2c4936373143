"""Peak memory and throughput of `s5jax segment` against the recording's length (not a test).

    python bench/bench_segment.py [--minutes 1 10] [--models tiny|full] [--work /tmp/s5jax_bench_seg]
                                  [--window 10 --hop 5] [--batch-size N] [--tagger T --separator S]

Writes 4-channel 32 kHz recordings of the given lengths (block by block: noise plus a few tones
entering and leaving), checkpoints (`tiny`: tests/tiny_system.py's random-weight tiny tagger and
separator, the real model code at a few hundred kB; `full`: the full-size 4-ch tagger and separator
with synthetic weights, converted as `s5jax convert` does), then runs `s5jax segment` on each in a fresh
process (a short warm-up run first fills the persistent compilation cache, so every measured run
fetches the same compiled program) and prints per recording: wall and CPU seconds, throughput (seconds
of audio per wall second) and the child's peak RSS. Flat memory: the longest recording's peak within
10 % of the shortest's.
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
    from s5jax.synthetic_weights import write_synthetic_checkpoint
    from s5jax.official.convert import convert_checkpoint

    out = []
    for k in ("tagger-4ch", "separator"):
        if not (work / k).exists():
            write_synthetic_checkpoint(k, str(work / f"{k}.ckpt"))
            convert_checkpoint(str(work / f"{k}.ckpt"), str(work / k))
        out.append(str(work / k))
    return out[0], out[1]


def run(recording, out, tagger, separator, cache, extra) -> tuple[float, float, float]:
    """-> (wall s, CPU s, peak RSS GB) of one `s5jax segment` process."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "s5jax.cli", "segment", str(recording), "--tagger", tagger,
                             "--separator", separator, "--out", str(out), "--quiet", *extra], env=env,
                            stdout=subprocess.DEVNULL, cwd=str(ROOT))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"s5jax segment failed on {recording}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--models", choices=("tiny", "full"), default="tiny")
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
    extra = ["--window", str(args.window), "--hop", str(args.hop)]
    if args.batch_size:
        extra += ["--batch-size", str(args.batch_size)]
    cache = work / "compile-cache"
    write_recording(work / "warmup.wav", 2 * args.window)
    run(work / "warmup.wav", work / "out-warmup", tagger, separator, cache, extra)
    rows = []
    for m in args.minutes:
        rec = work / f"rec-{m:g}min.wav"
        write_recording(rec, 60 * m)
        wall, cpu, rss = run(rec, work / f"out-{m:g}min", tagger, separator, cache, extra)
        rows.append((m, wall, cpu, rss))
        print(f"{m:g} min: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.3f} GB", flush=True)
    print(f"models: {args.models}; window {args.window:g} s, hop {args.hop:g} s; "
          f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs")
    print("| recording | wall s | CPU s | audio s per wall s | peak RSS GB |\n|---|---|---|---|---|")
    for m, wall, cpu, rss in rows:
        print(f"| {m:g} min | {wall:.1f} | {cpu:.1f} | {60 * m / wall:.2f} | {rss:.3f} |")
    if len(rows) > 1:
        lo, hi = rows[0][3], rows[-1][3]
        print(f"peak RSS {rows[-1][0]:g} min / {rows[0][0]:g} min: {hi / lo:.3f} "
              f"({'flat: within 10 %' if abs(hi / lo - 1) <= 0.10 else 'NOT within 10 %'})")


if __name__ == "__main__":
    main()
