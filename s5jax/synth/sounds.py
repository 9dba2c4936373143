"""Procedural sounds of the bundled world: one generator per class of the 18, five interferer kinds and
a 4-channel background, all NumPy, each a pure function of a `numpy.random.Generator`.

They are caricatures, built so that a small model can learn them on two CPU cores and a person can
still tell them apart: every class has its own spectral place and its own rhythm (beeps, rings,
motors, bursts, notes, syllables), and within a class pitch, timbre, tempo and length vary from file
to file. A "group" (`voice`) is a set of parameters shared by the files of one sub-folder (a speaker,
an instrument, a bell model): the duplicate rule draws a class's second source from another group.

    wave = CLASS_SOUNDS["Doorbell"](rng, voice)      # mono float32 [samples] at 32 kHz, peak 0.9
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..labels import SAMPLE_RATE

SR = SAMPLE_RATE


# ----------------------------------------------------------------------------------------- helpers
def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _decay(n: int, tau: float, attack: float = 0.002) -> np.ndarray:
    t = _t(n)
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / tau)


def _fade(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    k = min(len(x) // 2, int(seconds * SR))
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _band(rng, n: int, lo: float, hi: float, tilt: float = 0.0) -> np.ndarray:
    """White noise kept between lo and hi Hz (spectral tilt in dB/octave above lo), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    gain = ((f >= lo) & (f <= hi)).astype(np.float64)
    if tilt:
        gain *= (np.maximum(f, lo) / lo) ** (tilt / 6.02)
    x = np.fft.irfft(spec * gain, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _tone(freq, n: int, partials=((1.0, 1.0),), phase: float = 0.0) -> np.ndarray:
    """Sum of partials (ratio, amplitude) of a fundamental `freq` (a scalar or a per-sample track)."""
    f = np.broadcast_to(np.asarray(freq, np.float64), (n,))
    ph = 2 * np.pi * np.cumsum(f) / SR + phase
    out = np.zeros(n)
    for ratio, amp in partials:
        if np.max(f) * ratio < SR / 2 - 500:
            out += amp * np.sin(ratio * ph)
    return out


def _harmonics(count: int, rolloff: float = 1.0, odd_only: bool = False):
    ks = range(1, 2 * count, 2) if odd_only else range(1, count + 1)
    return tuple((k, 1.0 / k ** rolloff) for k in ks)


def _add(out: np.ndarray, x: np.ndarray, at: float) -> None:
    s = max(0, int(at * SR))
    if s >= len(out):
        return
    k = min(len(x), len(out) - s)
    out[s:s + k] += x[:k]


def _resonate(x: np.ndarray, freqs, width: float = 0.15) -> np.ndarray:
    """Formant-like filtering: Gaussian bumps on a log-frequency axis around each centre."""
    n = len(x)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0)
    gain = np.zeros_like(f)
    for fc, amp in freqs:
        gain += amp * np.exp(-0.5 * (np.log2(f / fc) / width) ** 2)
    return np.fft.irfft(np.fft.rfft(x) * gain, n)


def _finish(x: np.ndarray) -> np.ndarray:
    x = _fade(np.asarray(x, np.float64), 0.005)
    return (0.9 * x / (np.abs(x).max() + 1e-12)).astype(np.float32)


# ------------------------------------------------------------------------------------- the classes
def alarm_clock(rng, v):
    f, beep, groups = v["f"] * rng.uniform(0.97, 1.03), rng.uniform(0.07, 0.14), int(rng.integers(2, 6))
    per, period = int(rng.integers(2, 5)), rng.uniform(0.7, 1.2)
    out = np.zeros(int((groups * period + 0.3) * SR))
    b = _tone(f, int(beep * SR), _harmonics(3, 1.5, odd_only=True)) * _fade(np.ones(int(beep * SR)), 0.004)
    for g in range(groups):
        for k in range(per):
            _add(out, b, g * period + k * beep * 1.8)
    return out


def bicycle_bell(rng, v):
    f0, rings = v["f"] * rng.uniform(0.98, 1.02), int(rng.integers(1, 4))
    n = int((0.35 * rings + 1.0) * SR)
    out = np.zeros(n)
    partials = ((1.0, 1.0), (2.13, 0.5), (3.41, 0.3), (4.93, 0.15))
    for r in range(rings):
        m = int(rng.uniform(0.6, 1.0) * SR)
        trill = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(14, 24) * _t(m))
        _add(out, _tone(f0, m, partials) * _decay(m, rng.uniform(0.2, 0.45)) * trill, r * rng.uniform(0.25, 0.4))
    return out


def blender(rng, v):
    n = int(rng.uniform(3.0, 7.0) * SR)
    f = v["f"] * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * _t(n)) + 0.01 * rng.standard_normal())
    x = _tone(f, n, _harmonics(14, 0.8)) + 0.5 * _band(rng, n, 1000, 6000)
    return _fade(x * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(3, 7) * _t(n))), 0.2)


def buzzer(rng, v):
    presses = int(rng.integers(1, 4))
    out = np.zeros(int((presses * 1.8 + 0.3) * SR))
    for p in range(presses):
        m = int(rng.uniform(0.5, 1.4) * SR)
        _add(out, _fade(_tone(v["f"], m, _harmonics(24, 1.0)), 0.01), p * rng.uniform(1.5, 1.8))
    return out


def clapping(rng, v):
    n = int(rng.uniform(1.5, 4.0) * SR)
    out, t, rate = np.zeros(n), 0.05, v["rate"] * rng.uniform(0.9, 1.1)
    while t < n / SR - 0.1:
        m = int(0.03 * SR)
        _add(out, _band(rng, m, 700, 4500) * _decay(m, 0.006, 0.0005) * rng.uniform(0.6, 1.0), t)
        t += rng.normal(1 / rate, 0.02 / rate)
    return out


def cough(rng, v):
    coughs = int(rng.integers(1, 4))
    out = np.zeros(int((coughs * 0.6 + 0.3) * SR))
    for c in range(coughs):
        m = int(rng.uniform(0.25, 0.45) * SR)
        env = _decay(m, rng.uniform(0.06, 0.12), 0.01)
        voiced = _tone(v["f"] * np.linspace(1.1, 0.9, m), m, _harmonics(10, 1.2))
        x = _resonate(_band(rng, m, 200, 5000) + 0.6 * voiced, ((500, 1.0), (1300, 0.7), (2600, 0.4)), 0.25)
        _add(out, x * env, 0.05 + c * rng.uniform(0.45, 0.6))
    return out


def cupboard(rng, v):
    creak = int(rng.uniform(0.3, 0.8) * SR)
    pulse_rate = v["rate"] * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(1, 3) * _t(creak)))
    pulses = np.sin(2 * np.pi * np.cumsum(pulse_rate) / SR) > 0.97
    x = _resonate(pulses.astype(np.float64) + 0.01 * rng.standard_normal(creak), ((v["f"], 1.0), (v["f"] * 2.3, 0.5)), 0.08)
    thud = int(0.25 * SR)
    t = _band(rng, thud, 40, 300) * _decay(thud, 0.05, 0.001) * 3 + _band(rng, thud, 1500, 5000) * _decay(thud, 0.004, 0.0005)
    out = np.zeros(creak + int(rng.uniform(0.1, 0.4) * SR) + thud)
    _add(out, x / (np.abs(x).max() + 1e-12), 0.0)
    _add(out, t / (np.abs(t).max() + 1e-12), creak / SR + rng.uniform(0.05, 0.3))
    return out


def dishes(rng, v):
    n = int(rng.uniform(1.5, 4.0) * SR)
    out = np.zeros(n)
    for _ in range(int(rng.integers(4, 12))):
        m = int(0.25 * SR)
        f = rng.uniform(2500, 6500)
        parts = ((1.0, 1.0), (rng.uniform(1.4, 1.6), 0.6), (rng.uniform(2.2, 2.7), 0.4))
        _add(out, _tone(f, m, parts) * _decay(m, rng.uniform(0.04, 0.12), 0.0005) * rng.uniform(0.4, 1.0),
             rng.uniform(0, n / SR - 0.25))
    return out


def doorbell(rng, v):
    notes = v["notes"]
    m = int(1.2 * SR)
    out = np.zeros(int((len(notes) * 0.55 + 1.3) * SR))
    for i, ratio in enumerate(notes):
        tone = _tone(v["f"] * ratio, m, ((1, 1.0), (2, 0.25), (3, 0.1))) * _decay(m, rng.uniform(0.35, 0.6))
        _add(out, tone, i * rng.uniform(0.45, 0.6))
    return out


def footsteps(rng, v):
    steps = int(rng.integers(4, 10))
    out = np.zeros(int((steps / v["rate"] + 0.4) * SR))
    for s in range(steps):
        m = int(0.12 * SR)
        x = _band(rng, m, 50, 400) * _decay(m, 0.025, 0.002) + 0.3 * _band(rng, m, 1000, 3000) * _decay(m, 0.008, 0.001)
        _add(out, x * rng.uniform(0.7, 1.0), s / v["rate"] + rng.normal(0, 0.02) + 0.05)
    return out


def hair_dryer(rng, v):
    n = int(rng.uniform(3.0, 7.0) * SR)
    x = _band(rng, n, 500, 14000, tilt=-2.0) + 0.4 * _tone(v["f"] * rng.uniform(0.97, 1.03), n, _harmonics(4, 1.0))
    return _fade(x, 0.3)


def fans(rng, v):
    n = int(rng.uniform(4.0, 8.0) * SR)
    am = 1 + 0.4 * np.sin(2 * np.pi * v["rate"] * rng.uniform(0.95, 1.05) * _t(n))
    x = _band(rng, n, 30, 900, tilt=-3.0) * am + 0.5 * _tone(v["f"], n, _harmonics(5, 1.5))
    return _fade(x, 0.5)


def keyboard(rng, v):
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
    notes = int(rng.integers(4, 10))
    dur = rng.uniform(0.2, 0.45)
    out = np.zeros(int((notes * dur + 1.0) * SR))
    for i in range(notes):
        f = v["f"] * 2 ** (scale[int(rng.integers(len(scale)))] / 12)
        m = int(1.0 * SR)
        _add(out, _tone(f, m, v["partials"]) * _decay(m, rng.uniform(0.2, 0.4), 0.005), i * dur)
    return out


def percussion(rng, v):
    beat = 60.0 / v["tempo"] / 2
    steps = int(rng.integers(8, 17))
    out = np.zeros(int((steps * beat + 0.4) * SR))
    m = int(0.3 * SR)
    for s in range(steps):
        if s % 4 == 0 or rng.random() < 0.15:
            kick = _tone(np.geomspace(150, 45, m), m) * _decay(m, 0.12, 0.001)
            _add(out, kick, s * beat)
        if s % 4 == 2:
            snare = (_band(rng, m, 1000, 6000) * 0.5 + _tone(200, m)) * _decay(m, 0.05, 0.001)
            _add(out, snare, s * beat)
        if v["hats"] and s % 2 == 1:
            _add(out, 0.3 * _band(rng, m, 6000, 12000) * _decay(m, 0.015, 0.0005), s * beat)
    return out


def pour(rng, v):
    n = int(rng.uniform(2.0, 5.0) * SR)
    out = 0.3 * _band(rng, n, 200, 2000) * _fade(np.ones(n), 0.3)
    for _ in range(int(n / SR * rng.uniform(20, 40))):
        m = int(rng.uniform(0.015, 0.04) * SR)
        f0 = rng.uniform(400, 1500)
        _add(out, _tone(np.linspace(f0, f0 * 1.8, m), m) * _decay(m, m / SR / 3, 0.001) * rng.uniform(0.3, 1.0),
             rng.uniform(0, n / SR - 0.05))
    return out


_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def speech(rng, v):
    syll = int(rng.integers(4, 12))
    out = np.zeros(int((syll * 0.35 + 0.4) * SR))
    t = 0.05
    for s in range(syll):
        m = int(rng.uniform(0.12, 0.28) * SR)
        f0 = v["f"] * (1 + 0.15 * np.sin(np.pi * s / syll)) * np.linspace(1.05, 0.95, m)
        pulses = _tone(f0, m, _harmonics(30, 1.0))
        form = _VOWELS[int(rng.integers(len(_VOWELS)))]
        x = _resonate(pulses, tuple((fc * v["tract"], a) for fc, a in zip(form, (1.0, 0.6, 0.3))), 0.12)
        x *= np.sin(np.pi * np.arange(m) / m) ** 0.5
        _add(out, x / (np.abs(x).max() + 1e-12), t)
        t += m / SR
        if rng.random() < 0.3:
            k = int(0.06 * SR)
            _add(out, 0.3 * _band(rng, k, 4000, 9000) * np.hanning(k), t)
            t += 0.06
        t += rng.uniform(0.02, 0.12)
    return out[:int((t + 0.1) * SR)]


def typing(rng, v):
    keys = int(rng.integers(8, 30))
    out = np.zeros(int((keys * 0.25 + 0.3) * SR))
    t = 0.05
    for _ in range(keys):
        m = int(0.03 * SR)
        x = _resonate(_band(rng, m, 1500, 8000), ((v["f"], 1.0),), 0.3) * _decay(m, 0.004, 0.0003)
        _add(out, x * rng.uniform(0.5, 1.0), t)
        t += rng.uniform(0.07, 0.22)
    return out[:int((t + 0.1) * SR)]


def vacuum(rng, v):
    n = int(rng.uniform(4.0, 8.0) * SR)
    x = _resonate(_band(rng, n, 150, 9000), ((v["f"] * 4, 1.0), (3000, 0.6)), 0.6) \
        + 0.7 * _tone(v["f"] * (1 + 0.01 * np.sin(2 * np.pi * 0.3 * _t(n))), n, _harmonics(8, 0.7))
    return _fade(x, 0.4)


def _voice(name: str, rng) -> dict:
    """The parameters shared by one group (sub-folder) of a class."""
    u = rng.uniform
    return {
        "AlarmClock": lambda: {"f": u(1800, 3400)},
        "BicycleBell": lambda: {"f": u(1900, 3100)},
        "Blender": lambda: {"f": u(70, 170)},
        "Buzzer": lambda: {"f": u(160, 420)},
        "Clapping": lambda: {"rate": u(2.5, 6.0)},
        "Cough": lambda: {"f": u(120, 300)},
        "CupboardOpenClose": lambda: {"f": u(350, 1200), "rate": u(25, 70)},
        "Dishes": lambda: {},
        "Doorbell": lambda: {"f": u(550, 950), "notes": ((1.0, 0.8), (1.0, 1.26, 1.5), (1.5, 1.0))[int(rng.integers(3))]},
        "FootSteps": lambda: {"rate": u(1.5, 2.5)},
        "HairDryer": lambda: {"f": u(800, 1700)},
        "MechanicalFans": lambda: {"f": u(45, 130), "rate": u(8, 25)},
        "MusicalKeyboard": lambda: {"f": u(200, 500), "partials": _harmonics(int(rng.integers(3, 9)), u(0.8, 2.0))},
        "Percussion": lambda: {"tempo": u(85, 140), "hats": bool(rng.random() < 0.6)},
        "Pour": lambda: {},
        "Speech": lambda: {"f": u(90, 140) if rng.random() < 0.5 else u(170, 250), "tract": u(0.85, 1.15)},
        "Typing": lambda: {"f": u(2000, 5000)},
        "VacuumCleaner": lambda: {"f": u(250, 450)},
    }[name]()


CLASS_SOUNDS: dict[str, Callable] = {
    "AlarmClock": alarm_clock, "BicycleBell": bicycle_bell, "Blender": blender, "Buzzer": buzzer,
    "Clapping": clapping, "Cough": cough, "CupboardOpenClose": cupboard, "Dishes": dishes,
    "Doorbell": doorbell, "FootSteps": footsteps, "HairDryer": hair_dryer, "MechanicalFans": fans,
    "MusicalKeyboard": keyboard, "Percussion": percussion, "Pour": pour, "Speech": speech,
    "Typing": typing, "VacuumCleaner": vacuum,
}


def class_voice(label: str, rng) -> dict:
    return _voice(label, rng)


def class_sound(label: str, rng, voice: dict) -> np.ndarray:
    """A mono event of `label` for one group's `voice`: float32 [samples], peak 0.9."""
    return _finish(CLASS_SOUNDS[label](rng, voice))


# ---------------------------------------------------------------------------------- interferers
def _birds(rng):
    n = int(rng.uniform(1.5, 4.0) * SR)
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 10))):
        m = int(rng.uniform(0.05, 0.15) * SR)
        f0 = rng.uniform(2500, 6000)
        _add(out, _tone(np.linspace(f0, f0 * rng.uniform(0.6, 1.5), m), m) * np.hanning(m), rng.uniform(0, n / SR - 0.15))
    return out


def _siren(rng):
    n = int(rng.uniform(3.0, 6.0) * SR)
    f = rng.uniform(600, 900) * (1 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * _t(n)))
    return _fade(_tone(f, n, _harmonics(3, 1.5)), 0.2)


def _water(rng):
    n = int(rng.uniform(2.0, 5.0) * SR)
    am = np.abs(_band(rng, n, 0.5, 6)) + 0.3
    return _fade(_band(rng, n, 100, 1500, tilt=-1.0) * am, 0.2)


def _engine(rng):
    n = int(rng.uniform(3.0, 6.0) * SR)
    return _fade(_tone(rng.uniform(25, 55), n, _harmonics(12, 0.6)) + 0.3 * _band(rng, n, 20, 300), 0.3)


def _wind(rng):
    n = int(rng.uniform(3.0, 6.0) * SR)
    am = np.abs(_band(rng, n, 0.1, 2)) + 0.2
    return _fade(_band(rng, n, 60, 700, tilt=-2.0) * am, 0.4)


INTERFERERS: dict[str, Callable] = {"Birds": _birds, "Siren": _siren, "Water": _water, "Engine": _engine,
                                    "Wind": _wind}


def interferer_sound(label: str, rng) -> np.ndarray:
    return _finish(INTERFERERS[label](rng))


def background(rng, seconds: float, channels: int = 4) -> np.ndarray:
    """A 4-channel room background [channels, samples]: pink-ish noise partly shared between the
    microphones (a diffuse field is coherent at low frequencies), slowly varying in level."""
    n = int(seconds * SR)
    common = _band(rng, n, 20, 12000, tilt=rng.uniform(-4.5, -2.5))
    own = np.stack([_band(rng, n, 20, 12000, tilt=-3.0) for _ in range(channels)])
    hum = 0.2 * _tone(rng.choice([50.0, 60.0]), n, _harmonics(4, 1.0)) if rng.random() < 0.5 else 0.0
    lvl = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.02, 0.1) * _t(n))
    x = (0.7 * common + 0.5 * own + hum) * lvl
    return (0.5 * x / np.abs(x).max()).astype(np.float32)
