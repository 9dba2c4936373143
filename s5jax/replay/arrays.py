"""The in-memory form of the inference cache: everything a system config needs to be scored exactly.

One clip's cache holds both taggers' softmax, the metric's mixture row `M`, and one *entry* per
(separator, ordered query tuple) that some config reached: the re-tag softmax of each stem, the stem
energies and the metric's `S` rows. The stems depend on the whole ordered tuple (the separator's FiLM
sees all three slots at once), so an entry is keyed by separator and tuple together.

Entries of a clip are sorted by key and padded to a common count E with `MISSING_KEY`, so a replay
finds an entry with one `searchsorted` per clip (see `entry_key`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..labels import SILENCE

N_LABELS = SILENCE + 1          # 19: 18 classes + silence
MISSING_KEY = np.iinfo(np.int32).max   # padding of the key table; never a real key


def entry_key(separator: int | np.ndarray, queries) -> np.ndarray:
    """Key of the entry (separator σ, ordered query tuple q): σ·19³ + q₀·19² + q₁·19 + q₂.

    separator: 0 = separator A, 1 = separator B (scalar or [...]); queries [..., 3] class ids, 18 = silence.
    Works on numpy and jax arrays alike (int32)."""
    q = queries
    return (separator * N_LABELS ** 3 + q[..., 0] * N_LABELS ** 2 + q[..., 1] * N_LABELS + q[..., 2])


class CacheArrays(NamedTuple):
    """N clips, at most E entries per clip (padded). All float32 unless said."""
    P1: np.ndarray          # [N, 3, 19] 1-ch tagger softmax on mixture channel 0
    P4: np.ndarray          # [N, 3, 19] 4-ch tagger softmax
    ref_labels: np.ndarray  # [N, 3] int32 reference class ids, silence-padded (official loader form)
    M: np.ndarray           # [N, 3] SNR(x0, ref_j) as s5jax.metric.mixture_snr gives it
    keys: np.ndarray        # [N, E] int32 entry keys (entry_key), ascending, padded with MISSING_KEY
    retag: np.ndarray       # [N, E, 3, 3, 19] 1-ch tagger softmax of stem k: [slot k, track j, class]
    energy_db: np.ndarray   # [N, E, 3] 10·log10(mean(stem_k²) / mean(x0²)) (−inf for a zero stem)
    S: np.ndarray           # [N, E, 3, 3] S[k, j] = SNR(stem_k, ref_j) as s5jax.metric.snr_matrix gives it


__all__ = ["CacheArrays", "entry_key", "MISSING_KEY", "N_LABELS"]
