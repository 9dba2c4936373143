"""Training step time and peak memory of the full-size models on this CPU.

    python bench/bench_train.py [--cases tagger4:head:1 tagger4:head:2 tagger4:last_n:1 separator:all:1]
                                [--steps 3] [--seconds 10]

A case is MODEL:SCOPE:BATCH with MODEL in tagger1, tagger4, separator. Weights are random (full-size
configs, the official defaults); batches are random 10 s clips, so only the step is timed (synthesis:
bench_synth.py). Each case runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. The
first step (compilation) is reported apart; s/step is the median of the following steps.
No official PyTorch training step runs here: the official training code and data are not available
offline, so there is no side-by-side column.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _worker(model: str, scope: str, batch: int, steps: int, seconds: float) -> dict:
    import resource
    import statistics
    import time

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from s5jax.training import state as st
    from s5jax.training.loop import make_steps
    from s5jax.training.optim import official_optimizer

    kind = {"tagger1": "tagger-1ch", "tagger4": "tagger-4ch", "separator": "separator"}[model]
    mcfg = {"in_channels": 1 if model == "tagger1" else 4} if model != "separator" else {}
    task = st.make_task("tagger" if model.startswith("tagger") else "separator", mcfg, kind, "bench")
    variables = st.init_variables(task, 0)
    trainable, frozen = st.split_params(variables["params"], st.trainable_predicate(task, scope, 2))
    tx = official_optimizer(1e-4)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    repl, data_sh = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put({"step": np.zeros([], np.int32), "trainable": trainable, "frozen": frozen,
                            "batch_stats": variables["batch_stats"], "opt_state": tx.init(trainable)}, repl)
    train_step, _ = make_steps(task, official_optimizer, True, repl, data_sh)
    lr = jax.device_put(np.float32(1e-4), repl)             # the step's learning rate: a program input
    rng = np.random.default_rng(0)
    n = int(seconds * 32000)
    b = {"mixture": (0.1 * rng.standard_normal((batch, 4, n))).astype(np.float32),
         "labels": rng.integers(0, 19, (batch, 3)).astype(np.int32)}
    if model == "separator":
        b["refs"] = (0.05 * rng.standard_normal((batch, 3, n))).astype(np.float32)
    b = jax.device_put(b, data_sh)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, loss = train_step(state, b, lr)
        float(loss)
        times.append(time.perf_counter() - t)
    n_train = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainable))
    return {"case": f"{model}:{scope}:{batch}", "trainable": n_train, "first_s": times[0],
            "step_s": statistics.median(times[1:]) if len(times) > 1 else None,
            "spread": [min(times[1:]), max(times[1:])] if len(times) > 1 else None,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=["tagger4:head:1", "tagger4:head:2", "tagger4:last_n:1",
                                                   "separator:all:1"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        model, scope, batch = args.worker.split(":")
        print(json.dumps(_worker(model, scope, int(batch), args.steps, args.seconds)))
        return
    print("| case (model:scope:batch) | trainable params | first step s (compile) | s/step median | spread | peak GB |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        r = subprocess.run([sys.executable, __file__, "--worker", case, "--steps", str(args.steps),
                            "--seconds", str(args.seconds)], capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        if r.returncode != 0:
            print(f"| {case} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        step = f"{d['step_s']:.2f}" if d["step_s"] is not None else "-"
        spread = f"{d['spread'][0]:.2f}-{d['spread'][1]:.2f}" if d["spread"] else "-"
        print(f"| {case} | {d['trainable']:,} | {d['first_s']:.1f} | {step} | {spread} | {d['peak_gb']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
