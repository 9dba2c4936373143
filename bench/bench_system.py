"""Time per clip of the refined system (system1, system3) beside the baseline, side by side in one run.

    python bench/bench_system.py [--clips 3] [--seconds 10] [--systems baseline system1 system3] [--models world]

Full-size models with synthetic weights (s5jax.demo's official-format checkpoints, converted by the
real converter into a temporary folder), or with `--models world` the bundled world's small trained
models (separator B its own); the jitted data-parallel system `s5jax infer --system` runs, one clip per
call (infer's CPU default). Each system is compiled on a first clip, then every one of `--clips`
generated 10 s scenes is timed; printed: median, min and max seconds per clip and the ratio of medians
to the baseline. `first call s` is compile + one clip, in one process with no persistent cache, the
systems in the order given: a later system reuses the stage programs an earlier one compiled
(s5jax/system/stages.py). The machine is shared: only the ratios of one run carry over.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _checkpoints(folder: str) -> dict[str, str]:
    from s5jax.synthetic_weights import write_synthetic_checkpoint
    from s5jax.official.convert import convert_checkpoint

    out = {}
    for kind in ("tagger-4ch", "tagger-1ch", "separator"):
        official = write_synthetic_checkpoint(kind, os.path.join(folder, f"{kind}.ckpt"))
        convert_checkpoint(official, os.path.join(folder, kind), kind)
        os.unlink(official)
        out[kind] = os.path.join(folder, kind)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--systems", nargs="+", default=["baseline", "system1", "system3"])
    ap.add_argument("--models", choices=("full", "world"), default="full")
    args = ap.parse_args(argv)

    import jax

    from s5jax.synth.toy import SceneConfig, make_scene
    from s5jax.system.config import load_system
    from s5jax.system.engine import load_models, sharded_system

    if args.models == "world":
        from s5jax.bundled import resolve

        t4, t1, sep_a, sep_b = load_models([resolve("world:tagger-4ch"), resolve("world:tagger-1ch")],
                                           resolve("world:separator-a"), resolve("world:separator-b"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ck = _checkpoints(tmp)
            # the same separator weights serve as B: the timing does not depend on the values
            t4, t1, sep_a, sep_b = load_models([ck["tagger-4ch"], ck["tagger-1ch"]], ck["separator"], ck["separator"])
    clips = [make_scene(i, SceneConfig(seconds=args.seconds))[0][None] for i in range(args.clips + 1)]
    rows = []
    for name in args.systems:
        run = sharded_system(load_system(name), t4, t1, sep_a, sep_b)
        t0 = time.perf_counter()
        jax.block_until_ready(run(clips[0]))
        compile_s = time.perf_counter() - t0
        times = []
        for mix in clips[1:]:
            t0 = time.perf_counter()
            jax.block_until_ready(run(mix))
            times.append(time.perf_counter() - t0)
        rows.append((name, compile_s, statistics.median(times), min(times), max(times)))
    base = next((r[2] for r in rows if r[0] == "baseline"), None)
    print(f"{args.models} models, {args.clips} clips of {args.seconds:g} s, batch 1, {jax.local_device_count()} device(s), "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'system':<10} {'first call s':>12} {'s/clip median':>14} {'min':>7} {'max':>7} {'x baseline':>10}")
    for name, c, med, lo, hi in rows:
        ratio = f"{med / base:10.2f}" if base else f"{'':>10}"
        print(f"{name:<10} {c:12.1f} {med:14.2f} {lo:7.2f} {hi:7.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
