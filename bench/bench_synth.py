"""Scene synthesiser throughput: 10 s 4-channel training clips per second, by grain worker count.

    python bench/bench_synth.py [--workers 0 1 2] [--batches 6] [--batch 4]

The dataset is generated in a temporary folder in the official layout (tests/tinyset.py) with realistic
sizes: 1-5 s events, 0.5 s (16,000-tap) room impulse responses, 12 s noise recordings. Each worker count
reads the same batches (the order depends on the seed only); the first batch (start-up) is not timed.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()

    from s5jax.synth.scenes import SceneSynth, SynthConfig
    from s5jax.training.data import BatchMaker, TrainBatches
    from tinyset import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(tmp, splits=("train",), event_seconds=(1.0, 5.0), taps=16000, noise_seconds=12.0)
        synth = SceneSynth(tmp, "train", SynthConfig.tagger())
        synth.check_rooms()
        print("| workers | batch | clips/s | s/batch median | spread (min-max) |")
        print("|---|---|---|---|---|")
        for w in args.workers:
            maker = BatchMaker(synth, 0, args.batch, 0, 1, lambda b: None, with_refs=True)
            batches = TrainBatches(maker, args.batches + 1, workers=w, prefetch=2)
            next(batches)                                   # start-up (worker spawn, first batch)
            times = []
            t = time.perf_counter()
            for _ in range(args.batches):
                next(batches)
                now = time.perf_counter()
                times.append(now - t)
                t = now
            batches.close()
            med = statistics.median(times)
            print(f"| {w} | {args.batch} | {args.batch * len(times) / sum(times):.2f} | {med:.3f} | "
                  f"{min(times):.3f}-{max(times):.3f} |", flush=True)


if __name__ == "__main__":
    main()
