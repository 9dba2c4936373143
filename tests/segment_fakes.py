"""A fake per-window system for the segment tests: its labels and stems are read off the window itself,
so the stitched result has a known answer whatever the window's position.

Recording channels (32 kHz): ch0 and ch1 are two signals the fake returns as stems; ch2 holds, at each
window's centre sample, the probability of a class-7 detection (0: not detected); ch3 > 0 at the centre
swaps the two stems' slots. Modes: "presence" (slot 0 = class 3 with stem ch0, slot 1 = class 7 with
stem ch1 when flagged), "duplicates" (slots 0 and 1 both class 5: stems ch0 and ch1, swapped when flagged).
"""
from __future__ import annotations

import os
import signal

import numpy as np

from s5jax.system.engine import Engine
from s5jax.labels import SILENCE


def fake_engine(mode: str, calls: list | None = None, kill_at: int | None = None, tag: str = "v1"):
    """engine(batch_size) -> Engine. `calls` collects each call's batch size; the `kill_at`-th call
    (1-based) kills the process with SIGKILL before returning (an interrupted run)."""
    def factory(batch_size: int) -> Engine:
        def compute(mix: np.ndarray):
            if calls is not None:
                calls.append(mix.shape[0])
            if kill_at is not None and calls is not None and len(calls) >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            b, _, n = mix.shape
            centre = mix[:, :, n // 2]
            labels = np.full((b, 3), SILENCE, np.int32)
            probs = np.zeros((b, 3), np.float32)
            stems = np.zeros((b, 3, n), np.float32)
            for i in range(b):
                a, c = mix[i, 0], mix[i, 1]
                if mode == "presence":
                    labels[i, 0], probs[i, 0], stems[i, 0] = 3, 0.9, a
                    if centre[i, 2] > 0:
                        labels[i, 1], probs[i, 1], stems[i, 1] = 7, centre[i, 2], c
                else:
                    first, second = (c, a) if centre[i, 3] > 0 else (a, c)
                    labels[i, :2], probs[i, :2] = 5, 0.8
                    stems[i, 0], stems[i, 1] = first, second
            return labels, probs, stems

        return Engine(compute, {"system": f"fake-{mode}", "version": tag}, 0, 1, None)

    return factory


def fake_recording(seconds: float, mode: str, seed: int = 0, window: float = 1.0, hop: float = 0.5):
    """[4, n] float32 for `fake_engine(mode)` with windows of `window` s every `hop` s:
    presence: class 7 flagged in windows 2 (p 0.6) and 3 (p 0.8); duplicates: odd windows swapped."""
    sr = 32000
    n = int(round(seconds * sr))
    rng = np.random.default_rng(seed)
    x = np.zeros((4, n), np.float32)
    x[0] = 0.3 * rng.standard_normal(n)
    x[1] = 0.3 * rng.standard_normal(n)
    w, h = int(window * sr), int(hop * sr)
    centres = [k * h + w // 2 for k in range((n - w + h - 1) // h + 1)]
    for k, c in enumerate(centres):
        if c >= n:
            continue
        if mode == "presence" and k in (2, 3):
            x[2, c] = 0.6 if k == 2 else 0.8
        if mode == "duplicates" and k % 2 == 1:
            x[3, c] = 1.0
    return x


def run_killed(recording: str, out_dir: str, mode: str, kill_at: int) -> None:
    """The body of the interrupted subprocess: a segment run that SIGKILLs itself at a compute call."""
    from s5jax.segment import SegmentConfig, run_segment

    run_segment(recording, out_dir, engine=fake_engine(mode, calls=[], kill_at=kill_at),
                config=SegmentConfig(window_seconds=1.0, hop_seconds=0.5, batch_size=2), progress=False)
