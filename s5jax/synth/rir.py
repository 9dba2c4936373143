"""Rooms: 4-channel impulse responses from SOFA files (read with `sofar`), positions, convolution.

A room is one SOFA file: Data.IR [measurements M, receivers R=4, taps N] at Data.SamplingRate, one
measurement per source position (SourcePosition, cartesian or spherical; SpAudSyn takes it in
cartesian coordinates, as the file gives it, and so does s5jax). IRs at another rate than 32 kHz are
resampled on load as SpAudSyn does (librosa.resample, soxr HQ; sources.resample).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..labels import SAMPLE_RATE
from .sources import resample


@dataclass(frozen=True)
class Room:
    path: str
    irs: np.ndarray          # [M, 4, taps] float32 at 32 kHz (resampled on load from `rate`)
    positions: np.ndarray    # [M, 3] cartesian source positions as the file gives them (SpAudSyn's
                             #   event_position; its 60-degree rule measures angles at their origin)
    rate: int                # the file's own sampling rate
    taps: int                # the file's own IR length (SpAudSyn's rir_len)


def list_rooms(root: str, split: str) -> list[str]:
    folder = os.path.join(root, "room_ir", split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: missing folder (expected the official layout room_ir/{split}/ under {root})")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".sofa"))  # as SofaRoom
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
        irs = np.asarray(sofa.Data_IR)
        rate = float(np.asarray(sofa.Data_SamplingRate).ravel()[0])
        src = _cartesian(sofa.SourcePosition, sofa.SourcePosition_Type, sofa.SourcePosition_Units)
    except DataError:
        raise
    except Exception as e:  # netCDF4/h5py raise many types for a broken file
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: unreadable SOFA file ({msg})") from None
    if irs.ndim != 3 or irs.shape[1] != channels:
        raise DataError(f"{path}: impulse responses of shape {irs.shape}, expected [positions, {channels} "
                        "receivers, taps]")
    if not np.isfinite(irs).all() or not (np.abs(irs).max(axis=(1, 2)) > 0).all():
        raise DataError(f"{path}: impulse responses hold NaN/Inf or an all-zero position")
    if src.shape[0] == 1 and irs.shape[0] > 1:
        src = np.repeat(src, irs.shape[0], 0)
    if src.shape[0] != irs.shape[0]:
        raise DataError(f"{path}: {src.shape[0]} source positions for {irs.shape[0]} impulse responses")
    if not rate > 0 or rate != int(rate):
        raise DataError(f"{path}: sampling rate {rate:g} Hz")
    taps = irs.shape[-1]
    irs = resample(irs.astype(np.float64), int(rate)).astype(np.float32)
    return Room(path, irs, src, int(rate), taps)


def find_position(room: Room, position) -> np.ndarray:
    """SpAudSyn's lookup of an event_position [[x, y, z]]: the indices of the positions equal to it
    within numpy.isclose(all, pos, atol=1e-6) (rtol 1e-5) in every coordinate; none is a DataError."""
    pos = np.asarray(position, np.float64).reshape(-1)
    if pos.shape != (3,):
        raise DataError(f"{room.path}: event_position {position!r} is not [[x, y, z]]")
    idx = np.where(np.all(np.isclose(room.positions, pos, atol=1e-6), axis=1))[0]
    if idx.size == 0:
        raise DataError(f"{room.path}: no impulse response at event_position {pos.tolist()}")
    return idx


def angles(positions: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """[M, 3], [K, 3] -> [M, K] angles in radians between the position vectors (from the origin of the
    file's coordinates, as the baseline's dataset measures them)."""
    a = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    b = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    return np.arccos(np.clip(a @ b.T, -1.0, 1.0))


def normalise_rir(irs: np.ndarray) -> np.ndarray:
    """[..., 4, taps] -> unit energy averaged over channels (and the matched positions), SpAudSyn's
    RIRs / sqrt(mean(sum(RIRs ** 2, -1)))."""
    irs = irs.astype(np.float64)
    return irs / np.sqrt(np.mean(np.sum(irs ** 2, axis=-1)))


def direct_path(ir0: np.ndarray, direct_range_ms=(6, 50), sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Channel-0 RIR [taps] kept from int(6 ms · sr) samples before to int(50 ms · sr) samples after its
    peak (both ends included, clipped to the IR), zero elsewhere: the dry target stays time-aligned with
    the wet mixture (SpAudSyn's _get_direct_path_rir)."""
    peak = int(np.argmax(np.abs(ir0)))
    lo = max(peak - int(direct_range_ms[0] * sample_rate / 1000), 0)
    hi = min(peak + int(direct_range_ms[1] * sample_rate / 1000), ir0.shape[-1] - 1)
    out = np.zeros_like(ir0)
    out[lo:hi + 1] = ir0[lo:hi + 1]
    return out


def fft_convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Full linear convolution, scipy.signal.fftconvolve(x[None], ir, axes=1) as SpAudSyn calls it:
    x [n] (float32), ir [..., taps] -> [..., n + taps - 1] float64."""
    import scipy.signal

    ir = np.atleast_2d(ir)
    return scipy.signal.fftconvolve(x[None, :], ir, mode="full", axes=1)
