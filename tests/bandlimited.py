"""Band-limited test signals at several sample rates (FFT resampling), and relative errors: the known
answers of the resampling tests (test_segment_models.py, test_segment.py)."""
from __future__ import annotations

import numpy as np

OUT_RATE_RTOL = 1e-2      # stems written back at 48/44.1 kHz against the 32 kHz ones FFT-resampled


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def at(x, sr):
    """x [..., n] at 32 kHz (band-limited) -> the same signal at `sr` (FFT resampling: exact for a
    periodic band-limited signal; its wrap-around only touches the first and last milliseconds)."""
    from scipy.signal import resample

    if sr == 32000:
        return np.asarray(x, np.float32)
    return resample(np.asarray(x, np.float64), int(round(x.shape[-1] * sr / 32000)), axis=-1).astype(np.float32)


def lowpass(x, cutoff=12000.0):
    X = np.fft.rfft(np.asarray(x, np.float64), axis=-1)
    X[..., np.fft.rfftfreq(x.shape[-1], 1 / 32000) > cutoff] = 0
    return np.fft.irfft(X, n=x.shape[-1], axis=-1).astype(np.float32)


def inner(a, b, edge):
    return rel(a[edge:-edge], b[edge:-edge])
