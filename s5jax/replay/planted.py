"""A synthetic cache world with a planted (known) optimum, for tests, benchmarks and the demo of `s5jax sweep`.

Every clip has 0-3 reference sources (classes may repeat).  The taggers' softmax shows each true
source with a high probability (the 1-ch tagger misses some) and some false positives with a
probability in [0.25, 0.45]; any (separator, tuple) entry is a deterministic function of
(seed, clip, key): a stem of a true class has S = M + gain (gain fixed per reference, independent
of the tuple's order, minus 1 dB per false positive in the tuple: spurious queries compete for
energy), a re-tag of 0.85 for its class and an energy in [-15, -3] dB; a stem of a false class has
S ≈ -15 dB, re-tag 0.1, energy in [-60, -40] dB.  Separator B's stems differ from A's by a
per-slot delta in [-0.5, 0.5] dB and its re-tag follows the delta (so selection by re-tag helps).

So the best a labelling can do through separator A is the oracle tuple (the references), reached
e.g. with solo4 in (0.45, 0.55] or an energy gate in (-40, -15]: a search must find that score.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..labels import NUM_CLASSES, NUM_SLOTS, SILENCE
from .arrays import MISSING_KEY, N_LABELS, CacheArrays, entry_key


def _softmax_rows(rows: list[tuple[int, float]], rng) -> np.ndarray:
    """[(class, prob)] per track -> [3, 19]: that class gets prob (and is the argmax); a non-silence
    track gives silence the largest share of the rest, the other classes share what is left."""
    P = np.zeros((NUM_SLOTS, N_LABELS), np.float64)
    for j, (c, p) in enumerate(rows):
        other = rng.uniform(0.5, 1.5, N_LABELS)
        other[[c, SILENCE]] = 0.0
        sil = min(0.9 * p, 0.7 * (1 - p)) if c != SILENCE else 0.0
        P[j] = other / other.sum() * (1 - p - sil)
        P[j, SILENCE] += sil
        P[j, c] += p
    return P.astype(np.float32)


class SyntheticWorld:
    """n clips of a synthetic cache; `entry` computes any entry; `cache(keys)` assembles CacheArrays."""

    def __init__(self, n_clips: int, seed: int = 0):
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.n = n_clips
        self.ref_labels = np.full((n_clips, NUM_SLOTS), SILENCE, np.int32)
        self.M = np.zeros((n_clips, NUM_SLOTS), np.float32)
        self.gain = np.zeros((n_clips, NUM_SLOTS), np.float32)
        self.P1 = np.zeros((n_clips, NUM_SLOTS, N_LABELS), np.float32)
        self.P4 = np.zeros((n_clips, NUM_SLOTS, N_LABELS), np.float32)
        for i in range(n_clips):
            n_src = rng.choice(4, p=[0.2, 0.3, 0.3, 0.2])
            cls = rng.choice(NUM_CLASSES, size=n_src)
            if n_src >= 2 and rng.random() < 0.15:
                cls[1] = cls[0]                       # a class twice
            self.ref_labels[i, :n_src] = cls
            self.M[i, :n_src] = rng.normal(0, 4, n_src)
            self.gain[i, :n_src] = rng.uniform(4, 12, n_src)
            rows4, rows1 = [], []
            for c in cls:
                rows4.append((int(c), float(rng.uniform(0.55, 0.95))))
                rows1.append((int(c), float(rng.uniform(0.55, 0.95))) if rng.random() < 0.8
                             else (SILENCE, 0.8))
            for rows in (rows4, rows1):
                while len(rows) < NUM_SLOTS:
                    if rng.random() < 0.4:    # a false positive
                        fp = int(rng.choice([c for c in range(NUM_CLASSES) if c not in cls]))
                        rows.append((fp, float(rng.uniform(0.25, 0.45))))
                    else:
                        rows.append((SILENCE, float(rng.uniform(0.6, 0.95))))
            order = rng.permutation(NUM_SLOTS)
            self.P4[i] = _softmax_rows([rows4[j] for j in order], rng)
            self.P1[i] = _softmax_rows([rows1[j] for j in rng.permutation(NUM_SLOTS)], rng)
        self.entries: list[dict[int, tuple]] = [dict() for _ in range(n_clips)]

    def _rng(self, clip: int, key: int) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(f"{self.seed}/{clip}/{key}".encode()))

    def entry(self, clip: int, key: int):
        """(retag [3,3,19], energy_db [3], S [3,3]) of entry `key` of `clip`."""
        sep, rest = divmod(int(key), N_LABELS ** 3)
        q = [rest // N_LABELS ** 2, (rest // N_LABELS) % N_LABELS, rest % N_LABELS]
        base = entry_key(0, np.array(q))
        rng_a, rng_b = self._rng(clip, int(base)), self._rng(clip, int(base) + 1)
        refs = list(self.ref_labels[clip])
        true = [c for c in refs if c != SILENCE]
        # which reference each slot realises: i-th occurrence of a class -> i-th reference of it
        used: dict[int, int] = {}
        target = []
        for c in q:
            if c == SILENCE:
                target.append(-1)
                continue
            j_list = [j for j, r in enumerate(refs) if r == c]
            k = used.get(c, 0)
            used[c] = k + 1
            target.append(j_list[k] if k < len(j_list) else -1)
        n_false = sum(1 for c, t in zip(q, target) if c != SILENCE and t < 0)
        S = rng_a.normal(-15, 2, (NUM_SLOTS, NUM_SLOTS)).astype(np.float32)
        retag = np.full((NUM_SLOTS, 3, N_LABELS), 0.05 / 18, np.float32)
        energy = rng_a.uniform(-60, -40, NUM_SLOTS).astype(np.float32)
        delta = rng_b.uniform(-0.5, 0.5, NUM_SLOTS).astype(np.float32)
        for k, (c, t) in enumerate(zip(q, target)):
            if c == SILENCE:
                S[k] = 0.0
                energy[k] = -np.inf
                retag[k, :, SILENCE] = 0.95
                continue
            if t >= 0:
                for j, r in enumerate(refs):
                    if r == c:
                        S[k, j] = self.M[clip, j] + self.gain[clip, j] - n_false - (0 if j == t else 8)
                energy[k] = rng_a.uniform(-15, -3)
                retag[k, 0, c] = 0.85
            else:
                retag[k, 0, c] = 0.1
                other = (c + 1) % NUM_CLASSES
                retag[k, 0, other] = 0.6
            retag[k, 1:, SILENCE] = 0.95
        if sep == 1:
            live = np.array([c != SILENCE for c in q])
            S = S + np.where(live, delta, 0)[:, None] * (S != 0)
            for k, c in enumerate(q):
                if c != SILENCE:
                    retag[k, 0, c] += 0.1 * delta[k]
        if not true:
            S[:] = np.where(S == 0, 0, S)
        retag /= retag.sum(-1, keepdims=True)
        return retag, energy, S.astype(np.float32)

    def optimum(self) -> float:
        """The best dataset CA-SDRi a labelling reaches through separator A, from the construction: the
        reference labels as queries (no false positive) give each reference its own SDRi gain[j]
        (S = M + gain, a partner of the same class 8 dB lower), a clip scores the mean over its references
        and clips without references are None.  Dropping a reference or adding a false class only
        lowers a clip (gains are positive; a false class counts 0 and costs every stem 1 dB)."""
        n_src = (self.ref_labels != SILENCE).sum(axis=1)
        return float(np.mean([self.gain[i, :k].mean() for i, k in enumerate(n_src) if k]))

    def add(self, missing: dict[int, set[int]]) -> int:
        """Compute the given entries (clip -> keys) not held yet; returns how many were new."""
        new = 0
        for clip, keys in missing.items():
            for k in keys:
                if int(k) not in self.entries[clip]:
                    self.entries[clip][int(k)] = self.entry(clip, int(k))
                    new += 1
        return new

    def cache(self, min_entries: int = 1) -> CacheArrays:
        """The entries computed so far as CacheArrays (keys ascending, padded to a common E)."""
        E = max([min_entries] + [len(e) for e in self.entries])
        keys = np.full((self.n, E), MISSING_KEY, np.int32)
        retag = np.zeros((self.n, E, NUM_SLOTS, 3, N_LABELS), np.float32)
        energy = np.full((self.n, E, NUM_SLOTS), -np.inf, np.float32)
        S = np.zeros((self.n, E, NUM_SLOTS, NUM_SLOTS), np.float32)
        for i, ent in enumerate(self.entries):
            for e, k in enumerate(sorted(ent)):
                keys[i, e] = k
                retag[i, e], energy[i, e], S[i, e] = ent[k]
        return CacheArrays(self.P1, self.P4, self.ref_labels, self.M, keys, retag, energy, S)

    def fill(self, missing: dict[int, set[int]]) -> CacheArrays:
        """The sweep's fill callable: compute the missing entries, return the whole cache again."""
        self.add(missing)
        return self.cache()


__all__ = ["SyntheticWorld"]
