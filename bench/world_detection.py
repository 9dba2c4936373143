"""What the bundled 4-ch tagger detects in long recordings rendered from the bundled world (not a test).

    python bench/world_detection.py WORLD [--split valid] [--seeds 1 2 3 4] [--snr 10 20] [--tracks 2]
                                          [--classes A B ...] [--minutes 5]

Renders recordings with s5jax.synth.recording (default: the world's *valid* split, so the test split the
segment test uses stays unseen), runs the bundled baseline (world:tagger-4ch + world:separator-a) on
every 10 s window (5 s hop) alone, and prints per class: windows wholly inside one of its events and
how many were detected ("full"), windows partly covering one ("part"), and windows where it was
reported but absent (false positives, with the classes present then). This is how the classes of
tests/test_segment_world.py were chosen (see its docstring and README "Long recordings").
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--snr", type=float, nargs=2, default=[10.0, 20.0])
    ap.add_argument("--tracks", type=int, default=2)
    ap.add_argument("--classes", nargs="+", default=None)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    from s5jax import bundled
    from s5jax.system.engine import baseline_engine
    from s5jax.labels import LABELS, SAMPLE_RATE as SR, SILENCE
    from s5jax.synth.recording import RecordingConfig, render_recording

    B, W, H = args.batch_size, 10 * SR, 5 * SR
    eng = baseline_engine(bundled.path("tagger-4ch"), bundled.path("separator-a"), B)
    eng.prepare(W)
    full, part = collections.defaultdict(lambda: [0, 0]), collections.defaultdict(lambda: [0, 0])
    fp = collections.defaultdict(collections.Counter)
    cfg = RecordingConfig(seconds=60 * args.minutes, split=args.split, snr_range=tuple(args.snr),
                          tracks=args.tracks, classes=tuple(args.classes) if args.classes else None)
    for seed in args.seeds:
        rec = render_recording(args.world, cfg, seed=seed)
        print(f"seed {seed}: " + ", ".join(f"{e.label} {e.onset:.0f}-{e.offset:.0f} s" for e in rec.events),
              flush=True)
        starts = list(range(0, rec.samples - W + 1, H))
        t = time.perf_counter()
        for i in range(0, len(starts), B):
            mix = np.stack([rec.mixture[:, s:s + W] for s in starts[i:i + B]])
            n = mix.shape[0]
            mix = np.concatenate([mix, np.zeros((B - n,) + mix.shape[1:], np.float32)])
            labels = np.asarray(eng.compute(mix)[0])
            for s, lab in zip(starts[i:i + n], labels[:n]):
                a, b = s / SR, (s + W) / SR
                present = {}
                for e in rec.events:
                    ov = min(b, e.offset) - max(a, e.onset)
                    if ov > 0:
                        present[e.label] = max(present.get(e.label, 0.0), ov)
                found = {LABELS[int(x)] for x in lab if int(x) != SILENCE}
                for c, ov in present.items():
                    (full if ov >= 10 - 1e-6 else part)[c][0] += c in found
                    (full if ov >= 10 - 1e-6 else part)[c][1] += 1
                for c in found - set(present):
                    fp[c]["+".join(sorted(present)) or "none"] += 1
        print(f"  {len(starts)} windows in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"split {args.split}, seeds {args.seeds}, SNR {args.snr} dB, {args.tracks} track(s)")
    print("| class | full windows detected | part windows detected | false positives (classes present) |")
    print("|---|---|---|---|")
    for c in sorted(set(full) | set(part) | set(fp)):
        f, p = full[c], part[c]
        rate = f"{f[0]}/{f[1]} ({100 * f[0] / f[1]:.0f} %)" if f[1] else "-"
        print(f"| {c} | {rate} | {p[0]}/{p[1]} | {sum(fp[c].values())} "
              f"({', '.join(f'{k} {v}' for k, v in fp[c].most_common())}) |")


if __name__ == "__main__":
    main()
