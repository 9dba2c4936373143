"""Start-up with and without the persistent compilation cache: `s5jax infer` on one 10 s clip with the
full-size 4-ch tagger and separator (synthetic weights; with `--system`, the refined system with the
1-ch tagger as its second tagger), each run a fresh process.

    python bench/bench_compile_cache.py [--runs 3] [--work /tmp/s5jax_bench_cc] [--seconds 10]
                                        [--system PRESET] [--tree NAME=DIR ...]

Prints wall and CPU (user+sys of the child) seconds per run and the child's peak RSS: `off` =
--no-compile-cache (compiles every time), `fill` = first run on an empty cache, `warm` = later runs
served from the cache. The machine is shared: compare the columns of one run; CPU seconds are
steadier than wall under load.
With a short clip (`--seconds 1`) a run is almost all start-up (import, loading both models, tracing,
compiling or fetching from the cache), so `warm` there is the time a second run takes to start
computing, plus ≈ 0.1 of a 10 s clip's compute; the `first call` column is that start-up alone: from
launching the process to the first call of a compiled program (`DataParallel.on_device`,
timed by a launcher around the CLI). `--tree NAME=DIR` (repeatable) runs another
checkout's `s5jax` side by side (runs alternate between trees; each tree has its own cache folder);
by default this checkout alone.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def prepare(work: pathlib.Path, seconds: float, kinds: tuple[str, ...]) -> None:
    sys.path.insert(0, str(ROOT))
    from s5jax.synthetic_weights import write_synthetic_checkpoint
    from s5jax.official.convert import convert_checkpoint
    from s5jax.synth.toy import SceneConfig, write_scene_set

    if not (work / f"data{seconds:g}").exists():
        write_scene_set(str(work / f"data{seconds:g}"), 1, seed=0, cfg=SceneConfig(seconds=seconds))
    for kind in kinds:
        if not (work / kind).exists():
            write_synthetic_checkpoint(kind, str(work / f"{kind}.ckpt"))
            convert_checkpoint(str(work / f"{kind}.ckpt"), str(work / kind))


# the CLI, with the time of the first call of a compiled program written to $S5JAX_BENCH_FIRST_CALL
LAUNCHER = """
import os, sys, time
import s5jax.runtime.parallel as p
call = p.DataParallel.on_device
def first(self, *a, **k):
    path = os.environ["S5JAX_BENCH_FIRST_CALL"]
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(repr(time.time()))
    return call(self, *a, **k)
p.DataParallel.on_device = first
from s5jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(work: pathlib.Path, data: str, out: str, cache: pathlib.Path, *extra: str,
        tree: pathlib.Path = ROOT) -> tuple[float, float, float, float]:
    """-> (wall s, CPU s, s from launch to the first program call, peak RSS GB)."""
    shutil.rmtree(work / out, ignore_errors=True)
    stamp = work / "first_call"
    stamp.unlink(missing_ok=True)
    env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), PYTHONPATH=str(tree), S5JAX_BENCH_FIRST_CALL=str(stamp))
    t, launched = time.perf_counter(), time.time()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "infer", str(work / data), "--tagger",
                             str(work / "tagger-4ch"), "--separator", str(work / "separator"), "--out",
                             str(work / out), "--quiet", *extra], env=env, stdout=subprocess.DEVNULL,
                            cwd=tree)    # `-c` puts the working folder first on sys.path: it must be the tree
    _, status, usage = os.wait4(proc.pid, 0)   # this child's own rusage (peak RSS included)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"s5jax infer failed ({proc.returncode}) in {tree}")
    first = float(stamp.read_text()) - launched
    return wall, usage.ru_utime + usage.ru_stime, first, usage.ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/s5jax_bench_cc")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--system", default=None, metavar="PRESET",
                    help="run the refined system (e.g. system3: the 1-ch tagger is the second tagger, the "
                         "separator serves as A and B) instead of the baseline")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                    help="a checkout to measure (repeatable; default: this one)")
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    trees = {k: pathlib.Path(v).resolve() for k, v in trees.items()}
    work = pathlib.Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    kinds = ("tagger-4ch", "tagger-1ch", "separator") if args.system else ("tagger-4ch", "separator")
    prepare(work, args.seconds, kinds)
    system = ("--system", args.system, "--tagger2", str(work / "tagger-1ch"), "--separator2",
              str(work / "separator")) if args.system else ()
    data = f"data{args.seconds:g}"
    caches = {name: work / f"cache-{name}" for name in trees}
    for c in caches.values():
        shutil.rmtree(c, ignore_errors=True)
    rows: dict[tuple[str, str], list] = {}
    for mode, n in (("off", args.runs), ("fill", 1), ("warm", args.runs)):
        for _ in range(n):
            for name, tree in trees.items():          # alternating: load drifts hit every tree alike
                extra = (("--no-compile-cache",) if mode == "off" else ()) + system
                cache = work / "unused" if mode == "off" else caches[name]
                rows.setdefault((name, mode), []).append(run(work, data, "out", cache, *extra, tree=tree))
    print("| tree | mode | runs | wall s (median, min-max) | CPU s (median, min-max) | first call at s "
          "(median, min-max) | peak RSS GB (median) |\n|---|---|---|---|---|---|---|")
    for (name, mode), r in rows.items():
        cells = []
        for i in range(3):
            v = [x[i] for x in r]
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
        rss = statistics.median(x[3] for x in r)
        print(f"| {name} | {mode} | {len(r)} | " + " | ".join(cells) + f" | {rss:.2f} |")
    print(f"clip: {args.seconds:g} s; system: {args.system or 'baseline'}; load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
