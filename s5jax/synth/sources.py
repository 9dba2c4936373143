"""The official dev-set layout as lists of files, checked once, read on demand.

    <root>/sound_event/<split>/<Class>/**/*.wav     mono target events, one folder per class
    <root>/interference/<split>/**/*.wav            mono interferers (first folder level = their class)
    <root>/noise/<split>/**/*.wav                   4-channel background recordings
    <root>/room_ir/<split>/*.sofa                   4-channel room impulse responses (see rir.py)

Scanning reads only file headers (sample rate, channels, length), so a bad file is named before any
training starts; the samples are read when a scene needs them (an excerpt, not the whole file).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from ..errors import DataError
from ..labels import CLASSES, SAMPLE_RATE

AUDIO_EXT = (".wav", ".flac")


@dataclass(frozen=True)
class SourceFile:
    path: str        # absolute
    label: str       # class name (sound events), first folder level (interference), "" (noise)
    group: str       # folder one level below the class folder: the duplicate-exclusion unit
    frames: int      # length in samples
    channels: int


def _walk(folder: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(AUDIO_EXT)]
    return out


def _header(path: str, channels: int, what: str) -> tuple[int, int]:
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DataError(f"{path}: not a readable audio file ({str(e).splitlines()[0]})") from None
    if info.samplerate != SAMPLE_RATE:
        raise DataError(f"{path}: sample rate {info.samplerate} Hz, expected {SAMPLE_RATE} Hz")
    if info.channels != channels:
        kind = "mono" if channels == 1 else f"{channels}-channel"
        raise DataError(f"{path}: {info.channels} channel(s), a {what} must be {kind}")
    if info.frames == 0:
        raise DataError(f"{path}: holds no samples")
    return info.frames, info.channels


def _split_dir(root: str, kind: str, split: str) -> str:
    folder = os.path.join(root, kind, split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: missing folder (expected the official layout "
                        f"{kind}/{split}/ under {root})")
    return folder


def scan_sound_events(root: str, split: str, classes: tuple[str, ...] = CLASSES) -> dict[str, list[SourceFile]]:
    """-> {class: files} for every class; a missing or empty class folder is a DataError."""
    folder = _split_dir(root, "sound_event", split)
    out = {}
    for label in classes:
        cdir = os.path.join(folder, label)
        if not os.path.isdir(cdir):
            raise DataError(f"{cdir}: missing class folder (every one of the {len(classes)} classes needs one)")
        files = []
        for p in _walk(cdir):
            rel = os.path.relpath(p, cdir).split(os.sep)
            frames, ch = _header(p, 1, "sound event")
            files.append(SourceFile(p, label, rel[0] if len(rel) > 1 else "", frames, ch))
        if not files:
            raise DataError(f"{cdir}: empty class folder (no .wav/.flac files)")
        out[label] = files
    return out


def scan_flat(root: str, kind: str, split: str, channels: int) -> list[SourceFile]:
    """Interference (mono) or noise (4-channel) files of a split; none at all is a DataError."""
    folder = _split_dir(root, kind, split)
    files = []
    for p in _walk(folder):
        rel = os.path.relpath(p, folder).split(os.sep)
        frames, ch = _header(p, channels, "noise recording" if kind == "noise" else f"{kind} source")
        files.append(SourceFile(p, rel[0] if len(rel) > 1 else "", "", frames, ch))
    if not files:
        raise DataError(f"{folder}: empty split (no .wav/.flac files)")
    return files


def read_excerpt(src: SourceFile, start: int, frames: int) -> np.ndarray:
    """Samples [channels, frames] from `start` (clipped to the file), checked like every audio read."""
    try:
        data, sr = sf.read(src.path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DataError(f"{src.path}: not a readable audio file ({str(e).splitlines()[0]})") from None
    if data.shape[0] == 0:
        raise DataError(f"{src.path}: no samples at offset {start}")
    if not np.isfinite(data).all():
        raise DataError(f"{src.path}: contains NaN or Inf samples")
    return np.ascontiguousarray(data.T)

