"""The official dev-set layout as lists of files, and audio read the way SpAudSyn reads it.

    <root>/sound_event/<split>/<Class>/**/*.wav       target events, one folder per class present
    <root>/interference/<split>/<label>/**/*.wav      interferers, one folder per label (files directly
                                                      under interference/<split>/ are never drawn)
    <root>/noise/<split>/**/*.wav                     background recordings (the room's channel count)
    <root>/room_ir/<split>/*.sofa                     room impulse responses (see rir.py)

As SpAudSyn lists them (`glob('**/*.wav', recursive=True)`): `.wav` only, hidden files and folders
skipped. Scanning reads only file headers (rate, channels, length), so an unreadable file is named
before any work; the samples are read when a scene needs them (an excerpt, not the whole file).

Reading (`load`) is librosa.load as SpAudSyn calls it: soundfile at the file's own rate, the excerpt
from sample int(offset · rate) for int(duration · rate) samples, float32, channels averaged for mono,
then, at another rate than 32 kHz, resampled with soxr (quality HQ, librosa's default `soxr_hq`) and
cut or zero-padded to ceil(n · 32000 / rate) samples, as librosa.resample does.
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from ..errors import DataError
from ..labels import CLASSES, SAMPLE_RATE


@dataclass(frozen=True)
class SourceFile:
    path: str        # absolute
    label: str       # class (sound events) or label folder (interference); "" for noise
    group: str       # folder(s) below the label folder at the duplicate-exclusion depth ("" = none)
    frames: int      # length in samples at `rate`
    channels: int
    rate: int

    @property
    def seconds(self) -> float:
        """librosa.get_duration(path=...): soundfile's frames / samplerate."""
        return self.frames / self.rate


def list_wavs(folder: str) -> list[str]:
    """SpAudSyn's `get_files_list(folder, '.wav', recursive=True)`, sorted (reproducible draws)."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), "**", "*.wav"), recursive=True))


def label_folders(folder: str) -> list[str]:
    """SpAudSyn's `get_labels`: the sub-folders whose names do not start with a dot (sorted)."""
    return sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)) and n[0] != ".")


def header(path: str) -> tuple[int, int, int]:
    """-> (frames, channels, rate) of an audio file; an unreadable or empty one is a DataError."""
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DataError(f"{path}: not a readable audio file ({str(e).splitlines()[0]})") from None
    if info.frames == 0:
        raise DataError(f"{path}: holds no samples")
    return int(info.frames), int(info.channels), int(info.samplerate)


def split_dir(root: str, kind: str, split: str) -> str:
    folder = os.path.join(root, kind, split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: missing folder (expected the official layout {kind}/{split}/ under {root})")
    return folder


def _group(rel_parts: list[str], depth: int) -> str:
    """SpAudSyn's source_file_filter: a file deeper than `depth` folders below its label folder belongs
    to the group of its first `depth` folders; others belong to none."""
    return os.sep.join(rel_parts[:depth]) if depth > 0 and len(rel_parts) > depth else ""


def scan_labelled(root: str, kind: str, split: str, depth: int = 1,
                  classes: tuple[str, ...] | None = CLASSES) -> dict[str, list[SourceFile]]:
    """-> {label: files} for the label folders present (sound events: `classes` checks the names;
    interference: any name). A label folder without .wav files is a DataError, as drawing from it
    fails in the official code."""
    folder = split_dir(root, kind, split)
    out = {}
    for label in label_folders(folder):
        if classes is not None and label not in classes:
            raise DataError(f"{os.path.join(folder, label)}: not one of the {len(classes)} classes "
                            f"({', '.join(classes)})")
        ldir = os.path.join(folder, label)
        files = []
        for p in list_wavs(ldir):
            frames, ch, rate = header(p)
            files.append(SourceFile(p, label, _group(os.path.relpath(p, ldir).split(os.sep), depth), frames, ch,
                                    rate))
        if not files:
            raise DataError(f"{ldir}: label folder without .wav files")
        out[label] = files
    return out


def scan_noise(root: str, split: str) -> list[SourceFile]:
    """Background recordings of a split (any channel count: drawing drops a mismatching one)."""
    out = []
    for p in list_wavs(split_dir(root, "noise", split)):
        frames, ch, rate = header(p)
        out.append(SourceFile(p, "", "", frames, ch, rate))
    return out


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """librosa.resample(x, orig_sr=rate, target_sr=target) with its default soxr_hq, along the last axis."""
    if rate == target:
        return x
    import soxr  # the resampler librosa (and so SpAudSyn) uses by default

    rows = x.reshape(-1, x.shape[-1])
    n = int(math.ceil(x.shape[-1] * float(target) / rate))
    out = np.zeros((rows.shape[0], n), x.dtype)
    for i, r in enumerate(rows):
        y = soxr.resample(np.ascontiguousarray(r), rate, target, quality="HQ")
        out[i, :min(n, y.shape[-1])] = y[:n]
    return out.reshape(x.shape[:-1] + (n,))


def load(path: str, offset: float | None = None, duration: float | None = None, mono: bool = True,
         target: int = SAMPLE_RATE) -> np.ndarray:
    """librosa.load(path, sr=target, offset=offset, duration=duration, mono=mono) -> float32 [n] (mono)
    or [channels, n]; an unreadable file or NaN/Inf samples are a DataError naming the file."""
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            if offset:
                f.seek(int(offset * rate))
            frames = int(duration * rate) if duration is not None else -1
            data = f.read(frames=frames, dtype="float32", always_2d=True).T
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable audio file ({str(e).splitlines()[0]})") from None
    if data.shape[-1] == 0:
        raise DataError(f"{path}: no samples at offset {offset} s")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: contains NaN or Inf samples")
    if mono:
        data = np.mean(data, axis=0) if data.shape[0] > 1 else data[0]
    elif data.shape[0] == 1:
        data = data[0]                        # librosa returns a mono file as [n] even with mono=False
    return resample(np.ascontiguousarray(data), rate, target)
