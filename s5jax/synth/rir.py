"""Rooms: 4-channel impulse responses from SOFA files (read with `sofar`), positions, convolution.

A room is one SOFA file: Data.IR [measurements M, receivers R=4, taps N] at Data.SamplingRate, one
measurement per source position (SourcePosition, cartesian or spherical, relative to the listener).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..errors import DataError
from ..labels import SAMPLE_RATE

DIRECT_BEFORE_S = 0.006     # direct-path window of the dry reference: 6 ms before the RIR peak ...
DIRECT_AFTER_S = 0.050      # ... to 50 ms after it


@dataclass(frozen=True)
class Room:
    path: str
    irs: np.ndarray          # [M, 4, taps] float32
    directions: np.ndarray   # [M, 3] unit vectors from the listener to each source position


def list_rooms(root: str, split: str) -> list[str]:
    folder = os.path.join(root, "room_ir", split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: missing folder (expected the official layout room_ir/{split}/ under {root})")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".sofa"))
    if not files:
        raise DataError(f"{folder}: empty split (no .sofa files)")
    return files


def _cartesian(pos: np.ndarray, kind: str, units: str) -> np.ndarray:
    pos = np.asarray(pos, np.float64).reshape(-1, 3)
    if str(kind).lower().startswith("spherical"):
        deg = "degree" in str(units).lower() or not str(units)
        az, el = (np.radians(pos[:, 0]), np.radians(pos[:, 1])) if deg else (pos[:, 0], pos[:, 1])
        r = pos[:, 2]
        return np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)], -1)
    return pos


def read_room(path: str, channels: int = 4) -> Room:
    """Read and check one SOFA room; any problem is a DataError naming the file."""
    import sofar  # a maintained SOFA reader (netCDF4 underneath); only needed when rooms are read

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sofa = sofar.read_sofa(path, verify=False, verbose=False)
        irs = np.asarray(sofa.Data_IR, np.float32)
        rate = float(np.asarray(sofa.Data_SamplingRate).ravel()[0])
        src = _cartesian(sofa.SourcePosition, sofa.SourcePosition_Type, sofa.SourcePosition_Units)
        lis = _cartesian(sofa.ListenerPosition, sofa.ListenerPosition_Type, sofa.ListenerPosition_Units)
    except DataError:
        raise
    except Exception as e:  # netCDF4/h5py raise many types for a broken file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: unreadable SOFA file ({msg})") from None
    if rate != SAMPLE_RATE:
        raise DataError(f"{path}: sample rate {rate:g} Hz, expected {SAMPLE_RATE} Hz")
    if irs.ndim != 3 or irs.shape[1] != channels:
        raise DataError(f"{path}: impulse responses of shape {irs.shape}, expected [positions, {channels} "
                        "receivers, taps]")
    if not np.isfinite(irs).all() or not (np.abs(irs).max(axis=(1, 2)) > 0).all():
        raise DataError(f"{path}: impulse responses hold NaN/Inf or an all-zero position")
    if src.shape[0] == 1 and irs.shape[0] > 1:
        src = np.repeat(src, irs.shape[0], 0)
    vec = src - lis[:1]
    norm = np.linalg.norm(vec, axis=-1, keepdims=True)
    if src.shape[0] != irs.shape[0] or not (norm > 0).all():
        raise DataError(f"{path}: {src.shape[0]} source positions for {irs.shape[0]} impulse responses")
    return Room(path, irs, (vec / norm).astype(np.float64))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two unit direction vectors (seen from the array)."""
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


def normalise_rir(ir: np.ndarray) -> np.ndarray:
    """[4, taps] -> unit energy averaged over channels (SpAudSyn)."""
    return ir / np.sqrt(np.mean(np.sum(ir.astype(np.float64) ** 2, axis=-1)))


def direct_path(ir0: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Channel-0 RIR [taps] kept only from 6 ms before to 50 ms after its peak, zero elsewhere, so the
    dry reference stays time-aligned with the wet mixture."""
    peak = int(np.argmax(np.abs(ir0)))
    lo = max(0, peak - int(round(DIRECT_BEFORE_S * sample_rate)))
    hi = min(ir0.shape[-1], peak + int(round(DIRECT_AFTER_S * sample_rate)) + 1)
    out = np.zeros_like(ir0)
    out[lo:hi] = ir0[lo:hi]
    return out


def fft_convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Full linear convolution by FFT: x [n], ir [..., taps] -> [..., n + taps - 1] (float64 inside)."""
    n = x.shape[-1] + ir.shape[-1] - 1
    size = scipy.fft.next_fast_len(n, real=True)
    spec = scipy.fft.rfft(x.astype(np.float64), size) * scipy.fft.rfft(ir.astype(np.float64), size, axis=-1)
    return scipy.fft.irfft(spec, size, axis=-1)[..., :n]
