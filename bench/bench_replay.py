"""Replay throughput: clip×config evaluations per second, side by side in one run.

    python bench/bench_replay.py [--clips 1500] [--configs 1 100 10000] [--devices N] [--repeats 5]

Rows: the JAX replay (`s5jax.replay.replay.ShardedReplay`, what the sweep calls: configs × clips over
all devices, dataset totals per config) for the system1 switches (one separator) and the system3
switches (dual separator), each for 1, 100 and 10,000 configs over 1,500 synthetic clips whose cache
holds every entry the configs reach; a plain numpy/python loop of the same replay (same rules, dict
look-up, the reference metric; checked equal to the JAX replay on the clips it runs); and the
waveform metric (`s5jax.metric.score_batch` on 10 s clips), i.e. scoring a config by its stems
instead of the cached matrices.  Medians over --repeats with the spread (min-max); the machine
load is printed.  Target (issue 7): >= 5,000,000 clip×config evaluations/s on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=1500)
    ap.add_argument("--configs", type=int, nargs="+", default=[1, 100, 10000])
    ap.add_argument("--devices", type=int, default=None, help="force N XLA CPU devices (set before jax starts)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-clips", type=int, default=300, help="clips the numpy loop runs (one config each)")
    args = ap.parse_args()
    if args.devices:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import numpy as np

    from s5jax.metric import clip_score_reference, score_batch
    from s5jax.replay import replay as R
    from s5jax.replay.search import Evaluator
    from s5jax.replay.planted import SyntheticWorld
    from s5jax.system import decisions as D
    from s5jax.system.config import Params, preset

    print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform}; load average {os.getloadavg()}")
    rng = np.random.default_rng(0)

    def grid(c):
        """c random configs (every threshold varied over the search's ranges), float32 [C] / [C, 18]."""
        p = Params(w1=rng.uniform(0.2, 0.8, c), w4=rng.uniform(0.2, 0.8, c), solo1=rng.uniform(0.4, 1.0, c),
                   solo4=rng.uniform(0.2, 0.8, c), energy_db=rng.uniform(-60, -20, c),
                   verify=rng.uniform(0.0, 0.6, (c, 18)), drop=rng.uniform(0.2, 0.9, (c, 18)),
                   gate=rng.uniform(0.0, 0.6, (c, 18)))
        return Params(*(np.asarray(a, np.float32) for a in p))

    world = SyntheticWorld(args.clips, seed=0)
    results = []

    def timed(fn, repeats):
        """(median, min, max) wall seconds per call, and the median CPU seconds (all threads) per call:
        on a shared machine wall time follows the load, CPU time much less."""
        fn()                                           # compile / warm
        ts, cpu = [], []
        for _ in range(repeats):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return np.median(ts), min(ts), max(ts), np.median(cpu)

    t0 = time.perf_counter()
    for name in ("system1", "system3"):
        base = preset(name)
        sw = base.switches()
        grids = {c: grid(c) for c in args.configs}
        ev = Evaluator(world.cache(), world.fill)
        w = np.ones((1, args.clips), np.float32)
        for c, p in grids.items():                     # cache every entry these configs reach
            ev.totals(p, sw, w)
        runner = R.ShardedReplay(ev.prepared(sw), sw)
        E = int(np.max(np.sum(np.asarray(ev.cache.keys) != R.MISSING_KEY, axis=1)))
        for c, p in grids.items():
            t = runner(p, w)
            assert float(np.asarray(t.missing).sum()) == 0
            med, lo, hi, cpu = timed(lambda: runner(p, w), args.repeats)
            results.append((f"JAX replay {name}", c, args.clips, E, med, lo, hi, cpu))
            print(f"  {name} C={c}: {c * args.clips / med / 1e6:.2f} M evals/s", flush=True)

        # the plain loop of the same replay, on the first configs' first clips
        cache = ev.cache
        keys = np.asarray(cache.keys)
        one = Params(*(np.asarray(a)[0] for a in grids[max(args.configs)]))
        n_loop = min(args.loop_clips, args.clips)
        cfg = base.with_params(one)

        def loop():
            out = []
            for n in range(n_loop):
                table = {int(k): e for e, k in enumerate(keys[n])}
                out.append(numpy_replay_clip(cfg, cache, n, table, D, clip_score_reference))
            return out

        med, lo, hi, cpu = timed(loop, max(1, args.repeats // 2))
        results.append((f"numpy loop {name}", 1, n_loop, E, med, lo, hi, cpu))
        ref = loop()
        jx = R.replay(cfg.params(), ev.prepared(sw), sw)
        js = np.asarray(jx.clips.score)[:n_loop]
        want = np.array([np.nan if s is None else s for s in ref], np.float64)
        same = np.allclose(js, want, atol=1e-5, equal_nan=True)
        print(f"  numpy loop {name}: agrees with the JAX replay on {n_loop} clips: {same}")
        assert same

    # the waveform metric: score a clip from its stems (10 s at 32 kHz)
    b, T = 16, 320000
    est = rng.normal(size=(b, 3, T)).astype(np.float32)
    ref = rng.normal(size=(b, 3, T)).astype(np.float32)
    mix = rng.normal(size=(b, T)).astype(np.float32)
    labels = np.tile(np.array([0, 1, 18], np.int32), (b, 1))
    med, lo, hi, cpu = timed(lambda: jax.block_until_ready(score_batch(est, labels, ref, labels, mix)), args.repeats)
    results.append(("waveform metric (10 s clips)", 1, b, 0, med, lo, hi, cpu))
    print(f"set-up and runs: {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}")

    print()
    print("| method | configs | clips | max entries/clip | s per call (median) | M clip×config evals/s (median) "
          "| spread (min-max) | M evals per CPU-second |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, c, n, E, med, lo, hi, cpu in results:
        print(f"| {name} | {c} | {n} | {E} | {med:.4g} | {c * n / med / 1e6:.4g} | "
              f"{c * n / hi / 1e6:.3g}-{c * n / lo / 1e6:.3g} | {c * n / max(cpu, 1e-9) / 1e6:.4g} |")


def numpy_replay_clip(cfg, cache, n, table, D, clip_score_reference):
    """The replay of one config on clip n as a plain loop: the same rules, numpy per clip, the dict
    `table` (key -> entry index) for look-ups, the reference (python) metric.  -> score or None."""
    import numpy as np

    from s5jax.labels import SILENCE
    from s5jax.replay.arrays import entry_key

    sw, p = cfg.switches(), cfg.params()
    P1, P4 = np.asarray(cache.P1[n]), np.asarray(cache.P4[n])

    def proposals(P):
        if sw.proposal == "argmax":
            c = P.argmax(-1)
            ok = c != SILENCE
        else:
            c = P[:, :18].argmax(-1)
            ok = np.ones(3, bool)
        return [(int(c[j]), float(P[j, c[j]]), bool(ok[j]), j) for j in range(3)]

    props4 = [x for x in proposals(P4) if x[2]]
    props1 = [x for x in proposals(P1) if x[2]] if sw.use_tagger1 else []
    cands = []   # (conf, class, tagger4 first flag, track)
    for c in sorted({x[0] for x in props4 + props1}):
        a = sorted([x for x in props1 if x[0] == c], key=lambda x: (-x[1], x[3]))
        b = sorted([x for x in props4 if x[0] == c], key=lambda x: (-x[1], x[3]))
        for i in range(max(len(a), len(b))):
            if i < len(a) and i < len(b):
                cands.append((np.float32(p.w1) * np.float32(a[i][1]) + np.float32(p.w4) * np.float32(b[i][1]), c, 0, b[i][3]))
            elif i < len(b) and b[i][1] >= p.solo4:
                cands.append((np.float32(b[i][1]) * (np.float32(p.w4) if sw.solo_conf == "weighted" else 1), c, 0, b[i][3]))
            elif i < len(a) and i >= len(b) and a[i][1] >= p.solo1:
                cands.append((np.float32(a[i][1]) * (np.float32(p.w1) if sw.solo_conf == "weighted" else 1), c, 1, a[i][3]))
    cands.sort(key=lambda x: (-x[0], x[1], x[2], x[3]))
    kept = cands[:3]
    if sw.order == "track":
        kept.sort(key=lambda x: (x[2], x[3]))
    q = [x[1] for x in kept] + [SILENCE] * (3 - len(kept))
    conf = [float(x[0]) for x in kept] + [0.0] * (3 - len(kept))

    def entry(sep, tup):
        return table[int(entry_key(sep, np.array(tup)))]

    def confirm(e, tup):
        rt = np.asarray(cache.retag[n, e])
        if sw.confirm == "max_prob":
            r = [rt[k, :, tup[k]].max() if tup[k] != SILENCE else 0.0 for k in range(3)]
        else:
            r = [float((rt[k].argmax(-1) == tup[k]).any()) if tup[k] != SILENCE else 0.0 for k in range(3)]
        return np.asarray(r, np.float32)

    if all(c == SILENCE for c in q):
        return clip_score_reference([SILENCE] * 3, cache.ref_labels[n], np.zeros((3, 3)), cache.M[n])[0]
    e1 = entry(0, q)
    if sw.refine:
        r = confirm(e1, q)
        keep = [k for k in range(3) if q[k] != SILENCE and not (r[k] < p.verify[q[k]] and conf[k] < p.drop[q[k]])]
        q2 = [q[k] for k in keep] + [SILENCE] * (3 - len(keep))
        conf2 = [conf[k] for k in keep] + [0.0] * (3 - len(keep))
    else:
        q2, conf2 = q, conf
    if all(c == SILENCE for c in q2):
        return clip_score_reference([SILENCE] * 3, cache.ref_labels[n], np.zeros((3, 3)), cache.M[n])[0]
    e2 = e1 if q2 == q else entry(0, q2)
    energy = np.asarray(cache.energy_db[n, e2])
    use_b = [False] * 3
    if sw.separator_b:
        eb = entry(1, q2)
        ra, rb = confirm(e2, q2), confirm(eb, q2)
        use_b = [q2[k] != SILENCE and rb[k] > ra[k] for k in range(3)]
    labels = list(q2)
    rows = np.zeros((3, 3), np.float32)
    for k in range(3):
        if q2[k] == SILENCE:
            continue
        e_kept = eb if use_b[k] else e2
        en = energy[k] if (sw.gate_before_select or not use_b[k]) else cache.energy_db[n, eb][k]
        gated = (sw.energy_gate and en < p.energy_db) or (sw.prob_gate and conf2[k] < p.gate[q2[k]])
        if gated:
            labels[k] = SILENCE
            use_b[k] = False
            e_kept = e2
        rows[k] = cache.S[n, e_kept][k]
    return clip_score_reference(labels, cache.ref_labels[n], rows, cache.M[n])[0]


if __name__ == "__main__":
    main()
