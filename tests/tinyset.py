"""A tiny dataset in the official dev-set layout, written at test time (wavs and SOFA files)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import soundfile as sf

from s5jax.labels import CLASSES, SAMPLE_RATE

POSITIONS_DEG = np.arange(0, 360, 45)     # 8 source azimuths around the array, 1.5 m away
TAPS = 2400                # 75 ms: longer than the direct-path window (6 ms + 50 ms)
# The tiny tagger the training tests train on this dataset (test_train, test_write_errors): one config,
# so runs with the same steps and batch share their compiled programs through the run's compile cache
TRAIN_TAGGER = dict(chunk_frames=64, embed_dim=32, depth=2, num_heads=2, mlp_dim=64, head_dim=48, track_dim=16)


def write_sofa(path, irs, rate=SAMPLE_RATE, azimuths=POSITIONS_DEG):
    import sofar

    s = sofar.Sofa("GeneralFIR")
    s.Data_IR = np.asarray(irs, np.float64)
    s.Data_SamplingRate = rate
    s.Data_Delay = np.zeros((1, s.Data_IR.shape[1]))
    s.SourcePosition = np.array([[a, 0.0, 1.5] for a in azimuths])
    s.SourcePosition_Type = "spherical"
    s.SourcePosition_Units = "degree, degree, metre"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sofar.write_sofa(os.fspath(path), s)


def room_irs(rng, positions=len(POSITIONS_DEG), channels=4, taps=TAPS):
    """[positions, channels, taps]: a direct-path spike at a per-position delay, then a decaying tail."""
    irs = 0.05 * rng.standard_normal((positions, channels, taps)) * np.exp(-np.arange(taps) / 800.0)
    for m in range(positions):
        for c in range(channels):
            irs[m, c, 20 + m + 2 * c] += 1.0 if c == 0 else 0.7
    return irs


def _tone(rng, seconds, k):
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    x = np.sin(2 * np.pi * (200 + 40 * k) * t) * np.hanning(n) + 0.05 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_dataset(root, splits=("train", "valid"), seed=0, event_seconds=(0.3, 0.6), rooms=2, taps=TAPS,
                 noise_seconds=2.0):
    """Write the layout under `root`: per class two groups of one file (plus one top-level file),
    two interference classes, two 4-channel noise files, `rooms` SOFA rooms per split."""
    rng = np.random.default_rng(seed)
    root = os.fspath(root)
    for split in splits:
        for k, label in enumerate(CLASSES):
            for group in ("g1", "g2"):
                d = os.path.join(root, "sound_event", split, label, group)
                os.makedirs(d, exist_ok=True)
                sf.write(os.path.join(d, f"{label}_{group}.wav"), _tone(rng, rng.uniform(*event_seconds), k),
                         SAMPLE_RATE, subtype="PCM_16")
            sf.write(os.path.join(root, "sound_event", split, label, f"{label}_top.wav"),
                     _tone(rng, rng.uniform(*event_seconds), k), SAMPLE_RATE, subtype="PCM_16")
        for name in ("Siren", "Engine"):
            d = os.path.join(root, "interference", split, name)
            os.makedirs(d, exist_ok=True)
            sf.write(os.path.join(d, f"{name}.wav"), _tone(rng, 0.5, 30 + len(name)), SAMPLE_RATE,
                     subtype="PCM_16")
        d = os.path.join(root, "noise", split)
        os.makedirs(d, exist_ok=True)
        for i in range(2):
            sf.write(os.path.join(d, f"noise{i}.wav"), (0.1 * rng.standard_normal((int(SAMPLE_RATE * noise_seconds), 4))),
                     SAMPLE_RATE, subtype="PCM_16")
        d = os.path.join(root, "room_ir", split)
        os.makedirs(d, exist_ok=True)
        for r in range(rooms):
            write_sofa(os.path.join(d, f"room{r}.sofa"), room_irs(rng, taps=taps))
    return root
