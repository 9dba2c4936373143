"""Small synthetic S5 scene sets in the official dev-test layout (for the demo and the tests).

    <root>/soundscape/<name>.wav              4-channel, 32 kHz mixtures
    <root>/oracle_target/<name>_<label>.wav   one mono dry reference per source
    <root>/oracle_target/<name>_<n>_<label>.wav   (numbered when a class occurs twice)

Each class gets a recognisable synthetic timbre (a harmonic tone at a class-specific pitch, or a
band of noise, amplitude-modulated); sources are placed with per-channel delays and gains (a crude
stand-in for room impulse responses) and mixed with background noise. Not a substitute for the
DCASE data: it exercises the file conventions and the whole pipeline, nothing more.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..audio import write_audio
from ..labels import CLASSES, NUM_CLASSES, SAMPLE_RATE


@dataclass(frozen=True)
class SceneConfig:
    seconds: float = 10.0
    channels: int = 4
    max_sources: int = 3
    duplicate_rate: float = 0.3     # chance that a scene repeats one class (a multiset, as in 2026)
    silent_rate: float = 0.15       # share of scenes with no target source
    noise_db: float = -40.0


def class_event(label: int, n: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A mono event of class `label`: [n] float32, zero outside a random on-set interval."""
    t = np.arange(n) / sr
    if label % 2 == 0:  # harmonic classes: pitch by class
        f0 = 110.0 * 2 ** (label / 6.0)
        sig = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 5))
    else:  # noisy classes: a band of noise whose centre depends on the class
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        centre = 300.0 * 2 ** (label / 5.0)
        spec *= np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / centre) / 0.3) ** 2)
        sig = np.fft.irfft(spec, n)
    am = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t)
    start = int(rng.uniform(0, 0.5) * n)
    length = int(rng.uniform(0.3, 0.5) * n)
    env = np.zeros(n)
    env[start:start + length] = np.hanning(length)
    sig = sig * am * env
    return (sig / (np.abs(sig).max() + 1e-9)).astype(np.float32)


def make_scene(seed: int, cfg: SceneConfig = SceneConfig()):
    """-> (mixture [channels, n], labels list[int], dry references [sources, n] (channel 0))."""
    rng = np.random.default_rng(seed)
    n = int(round(cfg.seconds * SAMPLE_RATE))
    if rng.uniform() < cfg.silent_rate:
        labels: list[int] = []
    else:
        k = int(rng.integers(1, cfg.max_sources + 1))
        labels = [int(c) for c in rng.choice(NUM_CLASSES, size=k, replace=False)]
        if k >= 2 and rng.uniform() < cfg.duplicate_rate:
            labels[-1] = labels[0]
    mixture = np.zeros((cfg.channels, n), np.float32)
    refs = []
    for lab in labels:
        dry = class_event(lab, n, rng) * rng.uniform(0.1, 0.3)
        delays = rng.integers(0, 16, size=cfg.channels)
        delays[0] = 0
        gains = rng.uniform(0.6, 1.0, size=cfg.channels)
        gains[0] = 1.0
        for c in range(cfg.channels):
            mixture[c] += gains[c] * np.roll(dry, int(delays[c]))
        refs.append(dry)
    mixture += (10 ** (cfg.noise_db / 20) * rng.standard_normal(mixture.shape)).astype(np.float32)
    refs_arr = np.stack(refs) if refs else np.zeros((0, n), np.float32)
    return mixture.astype(np.float32), labels, refs_arr.astype(np.float32)


def write_scene_set(root: str | os.PathLike, count: int, seed: int = 0,
                    cfg: SceneConfig = SceneConfig(), prefix: str = "synth") -> list[str]:
    """Write `count` scenes in the dev-test layout under `root`; returns the soundscape names."""
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "soundscape"), exist_ok=True)
    os.makedirs(os.path.join(root, "oracle_target"), exist_ok=True)
    names = []
    for i in range(count):
        name = f"{prefix}_{i:04d}"
        mixture, labels, refs = make_scene(seed * 100003 + i, cfg)
        write_audio(os.path.join(root, "soundscape", f"{name}.wav"), mixture)
        for j, (lab, ref) in enumerate(zip(labels, refs)):
            numbered = labels.count(lab) > 1
            stem = f"{name}_{j}_{CLASSES[lab]}" if numbered else f"{name}_{CLASSES[lab]}"
            write_audio(os.path.join(root, "oracle_target", f"{stem}.wav"), ref)
        names.append(name)
    return names
