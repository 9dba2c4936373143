"""Audio files in and out: checked reads, atomic writes.

Every problem with an input file becomes one AudioError line that names the file: not audio, truncated,
wrong sample rate, wrong channel count, NaN/Inf samples. Writes go to a temporary file in the same folder
and are renamed into place, so a crash never leaves a half-written wav under its final name.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf

from .errors import AudioError
from .files import write_bytes_atomic, write_text_atomic  # noqa: F401  (write_text_atomic: re-exported)
from .labels import SAMPLE_RATE


def _wav_truncation(path: str) -> str | None:
    """For RIFF/WAVE files: a reason if the data chunk declares more bytes than the file holds.

    libsndfile silently shortens such files, so a wav cut off mid-copy would otherwise pass as a
    shorter clip.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(f.fileno()).st_size
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if clen != 0xFFFFFFFF and pos + 8 + clen > size:
                    return f"truncated wav: data chunk declares {clen} bytes, file holds {size - pos - 8}"
                return None
            pos += 8 + clen + (clen & 1)
        return "truncated wav: no complete data chunk"


def read_audio(path: str | os.PathLike, channels: int | None = None,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file -> float32 [channels, samples], checked.

    channels: the required channel count (None accepts any). Raises AudioError naming the file.
    """
    path = os.fspath(path)
    try:
        reason = _wav_truncation(path)
        if reason:
            raise AudioError(f"{path}: {reason}")
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({msg})") from None
    if sr != sample_rate:
        raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
    if channels is not None and data.shape[1] != channels:
        raise AudioError(f"{path}: {data.shape[1]} channel(s), expected {channels}")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return np.ascontiguousarray(data.T)


def encode_wav(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "FLOAT") -> bytes:
    """float32 [samples] or [channels, samples] -> the bytes of a wav file of `subtype`.

    Encoded in memory: soundfile writing to a file object loses the OSError of a failed write (its
    callback swallows it and fails an assert), so the bytes are written by the `files` helpers."""
    import io

    data = np.asarray(waveform, dtype=np.float32)
    data = data.T if data.ndim == 2 else data
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def write_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                subtype: str = "FLOAT") -> None:
    """Write float32 [samples] or [channels, samples] as a wav (default 32-bit float), atomically.

    Float wavs keep the separator's output bit-exact, so scores recomputed from files equal the ones
    computed in memory. A full disk is one WriteError naming `path`; nothing is left under its name.
    """
    write_bytes_atomic(path, encode_wav(waveform, sample_rate, subtype))
