"""Time `s5jax submit --check` (check_package) on a package of realistic size, folder and zip, against
a check that reads every stem's samples (what reading whole files would cost), side by side.

    python bench/bench_submit_check.py [--clips 300] [--repeats 3]

Builds a synthetic package (2 stems of 10 s per soundscape, 16-bit PCM, valid JSONs) in a temporary
folder; no model runs. Prints medians and spread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import soundfile as sf

from s5jax.labels import CLASSES
from s5jax.submit import DEV_JSON, EVAL_JSON, EVAL_OUT, check_package, write_zip


def make_package(root: str, clips: int) -> str:
    name = "Bench_S5JAX_task4_1"
    folder = os.path.join(root, name)
    os.makedirs(os.path.join(folder, EVAL_OUT))
    rng = np.random.default_rng(0)
    t = np.arange(320000) / 32000
    probabilities = []
    for i in range(clips):
        sc = f"eval_{i:04d}"
        est = []
        for slot in range(2):
            label = CLASSES[(i + slot) % len(CLASSES)]
            f = f"{sc}_{slot}_{label}.wav"
            wav = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(os.path.join(folder, EVAL_OUT, f), wav.astype(np.float32), 32000, subtype="PCM_16")
            est.append({"filename": f, "label": label, "probability": 0.9})
        probabilities.append({"soundscape": sc, "estimate": est})
    with open(os.path.join(folder, EVAL_JSON), "w") as fh:
        json.dump({"nparams": 1, "probabilities": probabilities, "config": {}}, fh)
    details = [{"soundscape": f"synth_{i:04d}", "ref_labels": ["silence"] * 3, "est_labels": ["silence"] * 3,
                "probabilities": [1.0] * 3, "metrics": [{"metric": "CAPI-SDRi", "value": None}]}
               for i in range(clips)]
    with open(os.path.join(folder, DEV_JSON), "w") as fh:
        json.dump({"CAPI-SDRi": {"mean": None}, "label_metrics": {"accuracy_mix": 100.0, "accuracy_src": 0.0},
                   "nparams": 1, "details": details, "config": {}}, fh)
    write_zip(folder, folder + ".zip")
    return folder


def read_all(folder: str) -> None:
    """The costly alternative: decode every stem (as a checker that opens the audio would)."""
    for f in os.listdir(os.path.join(folder, EVAL_OUT)):
        sf.read(os.path.join(folder, EVAL_OUT, f), dtype="float32")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        folder = make_package(root, args.clips)
        print(f"package: {args.clips} soundscapes, {2 * args.clips} stems of 10 s "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        cases = {"check folder (headers)": lambda: check_package(folder),
                 "check zip (headers)": lambda: check_package(folder + ".zip"),
                 "read every stem (folder)": lambda: read_all(folder)}
        times = {k: [] for k in cases}
        for _ in range(args.repeats):
            for k, fn in cases.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        print(f"{'case':<28} {'median s':>9} {'min':>7} {'max':>7}")
        for k, v in times.items():
            print(f"{k:<28} {statistics.median(v):9.3f} {min(v):7.3f} {max(v):7.3f}")


if __name__ == "__main__":
    main()
