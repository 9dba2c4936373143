"""CA-SDRi and label metrics of DCASE 2026 Task 4 (S5), exactly as the official evaluation scores them.

Definitions (reference/metric_and_pipeline.md §1-2):
  SNR(est, ref)  = 10·log10((Σref² + ε) / (Σ(ref − est)² + ε)), ε = float32 eps, no mean removal, float32.
  SDRi(est, ref) = SNR(est, ref) − SNR(mix₀, ref)   (mix₀ = mixture channel 0).
  Per clip and per non-silent class c on either side, with e estimates and r references of c:
    e = 0 → r zeros;  r = 0 → e zeros;  else n = min(e, r): over (combination of n references in
    index order) × (permutation of n estimates) take the pair with the highest MEAN SNR (first maximum
    wins), record its n SDRi values, then |e − r| zeros.  Clip score = mean of all recorded values;
    None when no class is present on either side.  Dataset CA-SDRi = mean of the non-None clip scores.
  Label metrics on multisets with silence dropped: tp = |est ∩ ref|, fp = #est − tp, fn = #ref − tp,
    mixture-correct iff est == ref.

Everything depends only on the labels, S[i, j] = SNR(est_i, ref_j) and M[j] = SNR(mix₀, ref_j), so the
core scorer (`clip_score_detail`) works on these matrices: jittable, vmappable over clips and over
relabellings.  Labels are ints 0..17; 18 (SILENCE) — or any other value outside 0..17 — means
"no source", which is also how references are padded to the fixed width 3.

Layers:
  matrices     snr, snr_matrix, mixture_snr
  clip         clip_score_detail, ca_sdri_detail, ca_sdri, score_batch
  labels       label_counts, label_counts_padded
  dataset      totals, merge_totals, empty_totals, summarize
  reference    snr_numpy, clip_score_reference, ca_sdri_reference   (plain python/itertools, float32 numpy)
"""
from __future__ import annotations

import itertools
from collections import Counter
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .labels import CLASSES, NUM_CLASSES, NUM_SLOTS, SILENCE, label_index

EPS = float(np.finfo(np.float32).eps)   # torchmetrics signal_noise_ratio uses the dtype's eps
MAX_REFS = 3                            # references are padded (label SILENCE) to this width

# All 3! ways to put the 3 estimate slots onto the 3 (padded) reference slots: _PERMS[p, j] = estimate
# slot paired with reference j.  Any partial one-to-one matching of estimates to references extends to
# one of these, so every official (combination, permutation) candidate of every class is the class-c
# restriction of some row.
_PERMS = np.array(list(itertools.permutations(range(NUM_SLOTS))), dtype=np.int32)   # [6, 3]
_POW3 = np.array([3 ** k for k in range(2 * MAX_REFS)], dtype=np.int32)              # [6]


# ----------------------------------------------------------------------------------------------------
# SNR matrices
# ----------------------------------------------------------------------------------------------------

def snr(est: jax.Array, ref: jax.Array) -> jax.Array:
    """SNR in dB over the last axis, float32, no mean removal; est, ref [..., n] broadcast -> [...]."""
    est = jnp.asarray(est, jnp.float32)
    ref = jnp.asarray(ref, jnp.float32)
    signal = jnp.sum(ref * ref, axis=-1)
    noise = jnp.sum(jnp.square(ref - est), axis=-1)   # direct difference: exact for near-perfect estimates
    return 10.0 * jnp.log10((signal + EPS) / (noise + EPS))


def snr_matrix(stems: jax.Array, refs: jax.Array) -> jax.Array:
    """S[..., i, j] = SNR(stems[..., i, :], refs[..., j, :]); stems [..., E, n], refs [..., R, n] -> [..., E, R]."""
    stems = jnp.asarray(stems, jnp.float32)
    refs = jnp.asarray(refs, jnp.float32)
    return snr(stems[..., :, None, :], refs[..., None, :, :])


def mixture_snr(mix0: jax.Array, refs: jax.Array) -> jax.Array:
    """M[..., j] = SNR(mix0[..., :], refs[..., j, :]); mix0 [..., n], refs [..., R, n] -> [..., R]."""
    return snr(jnp.asarray(mix0, jnp.float32)[..., None, :], refs)


# ----------------------------------------------------------------------------------------------------
# Clip scoring (matrix form)
# ----------------------------------------------------------------------------------------------------

class ClipDetail(NamedTuple):
    """Result of scoring one clip (or a batch: every field gets the leading batch axes).

    score        []    float32  mean of the recorded values; NaN when not valid (the official None)
    valid        []    bool     at least one non-silent class on either side
    class_sum    [18]  float32  sum of the values recorded for each class (SDRi of matches, 0 for misses)
    class_count  [18]  int32    number of values recorded for each class = max(e_c, r_c)
    """
    score: jax.Array
    valid: jax.Array
    class_sum: jax.Array
    class_count: jax.Array


def _pad_refs(ref_labels: jax.Array, S: jax.Array, M: jax.Array):
    """Pad the reference axis to MAX_REFS with absent (SILENCE) references; R > 3 is an error."""
    r = ref_labels.shape[-1]
    if r > MAX_REFS:
        raise ValueError(f"at most {MAX_REFS} references per clip are supported, got {r}")
    if S.shape[-2:] != (NUM_SLOTS, r) or M.shape[-1:] != (r,):
        raise ValueError(f"shape mismatch: ref_labels [{r}], S {S.shape} (want [3, {r}]), M {M.shape}")
    if r < MAX_REFS:
        k = MAX_REFS - r
        ref_labels = jnp.concatenate([ref_labels, jnp.full((k,), SILENCE, ref_labels.dtype)])
        S = jnp.concatenate([S, jnp.zeros((NUM_SLOTS, k), S.dtype)], axis=-1)
        M = jnp.concatenate([M, jnp.zeros((k,), M.dtype)])
    return ref_labels, S, M


def _sum3(x: jax.Array) -> jax.Array:
    """Left-to-right sum over a last axis of size 3 (fixed order = the official comb order; 0.0 adds exactly)."""
    return (x[..., 0] + x[..., 1]) + x[..., 2]


def clip_score_detail(est_labels: jax.Array, ref_labels: jax.Array, S: jax.Array, M: jax.Array) -> ClipDetail:
    """Score one clip from its SNR matrices; jittable and vmappable (vmap over any of the arguments).

    est_labels [3] int (18 = silent slot), ref_labels [R<=3] int (18 / out of range = absent),
    S [3, R] float32 SNR(est_i, ref_j), M [R] float32 SNR(mix0, ref_j) -> ClipDetail (unbatched fields).
    Tie-breaking follows the official enumeration: combinations of the class's references in index
    order (outer) × permutations of its estimates (inner); the first candidate with the maximum mean
    SNR wins, i.e. the lexicographically smallest (reference tuple, estimate tuple) among the maxima.
    """
    est_labels = jnp.asarray(est_labels, jnp.int32)
    ref_labels, S, M = _pad_refs(jnp.asarray(ref_labels, jnp.int32), jnp.asarray(S, jnp.float32),
                                 jnp.asarray(M, jnp.float32))
    perms = jnp.asarray(_PERMS)                                   # [6, 3]
    cls = jnp.arange(NUM_CLASSES, dtype=jnp.int32)                # [18]
    ref_j = jnp.arange(MAX_REFS, dtype=jnp.int32)                 # [3]

    e = jnp.sum(est_labels[None, :] == cls[:, None], axis=-1)     # [18] estimates per class
    r = jnp.sum(ref_labels[None, :] == cls[:, None], axis=-1)     # [18] references per class
    n = jnp.minimum(e, r)                                          # [18] matched pairs per class

    est_lab_p = est_labels[perms]                                  # [6, 3] label of the estimate on ref j
    s_p = S[perms, ref_j[None, :]]                                 # [6, 3] S[perm[p, j], j]
    d_p = s_p - M[None, :]                                         # [6, 3] SDRi of that pair
    # v[c, p, j]: under matching p, reference j and its estimate are both of class c
    v = (ref_labels[None, None, :] == cls[:, None, None]) & (est_lab_p[None] == cls[:, None, None])
    cnt = jnp.sum(v, axis=-1)                                      # [18, 6]
    cand = (cnt == n[:, None]) & (n[:, None] > 0)                  # restriction is a full official candidate

    mean = _sum3(jnp.where(v, s_p[None], 0.0)) / jnp.maximum(n, 1)[:, None].astype(jnp.float32)   # [18, 6]
    best = jnp.max(jnp.where(cand, mean, -jnp.inf), axis=-1, keepdims=True)
    is_best = cand & (mean == best)

    # Official enumeration rank of a candidate = lexicographic (sorted ref indices, paired estimate indices),
    # encoded base 3 with 2n digits: ref digit k has weight 3^(2n-1-k), estimate digit k 3^(n-1-k).
    pos = jnp.cumsum(v, axis=-1) - 1                               # [18, 6, 3] position k of ref j in its tuple
    nn = n[:, None, None]
    w_ref = jnp.asarray(_POW3)[jnp.clip(2 * nn - 1 - pos, 0, 2 * MAX_REFS - 1)]
    w_est = jnp.asarray(_POW3)[jnp.clip(nn - 1 - pos, 0, 2 * MAX_REFS - 1)]
    key = jnp.sum(jnp.where(v, ref_j * w_ref + perms[None] * w_est, 0), axis=-1)   # [18, 6]
    choice = jnp.argmin(jnp.where(is_best, key, jnp.iinfo(jnp.int32).max), axis=-1)  # [18]

    v_best = jnp.take_along_axis(v, choice[:, None, None], axis=1)[:, 0]           # [18, 3]
    d_best = d_p[choice]                                                           # [18, 3]
    class_sum = jnp.where(n > 0, _sum3(jnp.where(v_best, d_best, 0.0)), 0.0)       # misses/false alarms add 0
    class_count = jnp.maximum(e, r).astype(jnp.int32)

    total = jnp.sum(class_count)
    valid = total > 0
    score = jnp.where(valid, jnp.sum(class_sum) / jnp.maximum(total, 1).astype(jnp.float32), jnp.nan)
    return ClipDetail(score.astype(jnp.float32), valid, class_sum.astype(jnp.float32), class_count)


def ca_sdri_detail(est_wf, est_labels, ref_wf, ref_labels, mix0) -> ClipDetail:
    """Waveform form: est_wf [3, n], est_labels [3], ref_wf [R<=3, n], ref_labels [R], mix0 [n] -> ClipDetail."""
    return clip_score_detail(est_labels, ref_labels, snr_matrix(est_wf, ref_wf), mixture_snr(mix0, ref_wf))


def ca_sdri(est_wf, est_labels, ref_wf, ref_labels, mix0):
    """(score, valid) of one clip from waveforms (float32); shapes as in `ca_sdri_detail`; jittable."""
    d = ca_sdri_detail(est_wf, est_labels, ref_wf, ref_labels, mix0)
    return d.score, d.valid


@jax.jit
def score_batch(est_wf, est_labels, ref_wf, ref_labels, mix0) -> ClipDetail:
    """Jitted batch of clips: est_wf [B, 3, n], est_labels [B, 3], ref_wf [B, 3, n] (absent refs: any
    waveform, label 18), ref_labels [B, 3], mix0 [B, n] -> ClipDetail with leading axis B."""
    return jax.vmap(ca_sdri_detail)(est_wf, est_labels, ref_wf, ref_labels, mix0)


# ----------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------

def _class_ids(labels: Sequence[str | int]) -> list[int]:
    """Names or ints -> ints with silence (and out-of-range padding) dropped."""
    ids = [label_index(x) if isinstance(x, str) else int(x) for x in labels]
    return [i for i in ids if 0 <= i < NUM_CLASSES]


class LabelCounts(NamedTuple):
    """tp, fp, fn (int) and mixture-correct (bool) of one clip, or arrays of them for a batch."""
    tp: int | jax.Array
    fp: int | jax.Array
    fn: int | jax.Array
    correct: bool | jax.Array


def label_counts(est_labels: Sequence[str | int], ref_labels: Sequence[str | int]) -> LabelCounts:
    """Label metrics of one clip on multisets, silence dropped; labels as names or ints (any lengths)."""
    est, ref = Counter(_class_ids(est_labels)), Counter(_class_ids(ref_labels))
    tp = sum((est & ref).values())
    return LabelCounts(tp, sum(est.values()) - tp, sum(ref.values()) - tp, est == ref)


def label_counts_padded(est_labels: jax.Array, ref_labels: jax.Array) -> LabelCounts:
    """Jittable label metrics: est_labels [..., E] int, ref_labels [..., R] int (values outside 0..17 =
    absent) -> LabelCounts of int32/bool arrays [...]."""
    he = jnp.sum(jax.nn.one_hot(est_labels, NUM_CLASSES, dtype=jnp.int32), axis=-2)   # [..., 18]; 18 -> zeros
    hr = jnp.sum(jax.nn.one_hot(ref_labels, NUM_CLASSES, dtype=jnp.int32), axis=-2)
    tp = jnp.sum(jnp.minimum(he, hr), axis=-1)
    return LabelCounts(tp, jnp.sum(he, axis=-1) - tp, jnp.sum(hr, axis=-1) - tp, jnp.all(he == hr, axis=-1))


# ----------------------------------------------------------------------------------------------------
# Dataset aggregation (host side, float64, batch by batch)
# ----------------------------------------------------------------------------------------------------

class Totals(NamedTuple):
    """Running sums over clips (numpy; float64 for the dB sums).  Combine with `merge_totals`."""
    clips: int              # clips seen
    scored: int             # clips with a valid CA-SDRi
    score_sum: float        # Σ clip scores over valid clips
    class_sum: np.ndarray   # [18] float64 Σ recorded values per class
    class_count: np.ndarray  # [18] int64 number of recorded values per class
    tp: int
    fp: int
    fn: int
    correct: int            # mixture-correct clips


def empty_totals() -> Totals:
    """Totals of zero clips."""
    return Totals(0, 0, 0.0, np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES, np.int64), 0, 0, 0, 0)


def totals(detail: ClipDetail, counts: LabelCounts) -> Totals:
    """Reduce one clip or a batch (any leading shape, jax or numpy) of ClipDetail + LabelCounts to Totals."""
    valid = np.asarray(detail.valid, bool)
    score = np.asarray(detail.score, np.float64)
    return Totals(
        clips=int(valid.size), scored=int(valid.sum()), score_sum=float(score[valid].sum()),
        class_sum=np.asarray(detail.class_sum, np.float64).reshape(-1, NUM_CLASSES).sum(0),
        class_count=np.asarray(detail.class_count, np.int64).reshape(-1, NUM_CLASSES).sum(0),
        tp=int(np.sum(counts.tp)), fp=int(np.sum(counts.fp)), fn=int(np.sum(counts.fn)),
        correct=int(np.sum(counts.correct)))


def merge_totals(a: Totals, b: Totals) -> Totals:
    """Totals of the union of two disjoint sets of clips."""
    return Totals(*(x + y for x, y in zip(a, b)))


def summarize(t: Totals) -> dict:
    """Dataset metrics from Totals.

    Returns {"ca_sdri": mean over valid clips (None if none), "ca_sdri_per_class": {class: mean of the
    values recorded for it, None if never present}, "accuracy_mixture": 100·mean mixture-correct,
    "accuracy_source": 100·Σtp/Σ(tp+fp+fn) (None if 0/0), "clips", "clips_scored", "clips_excluded",
    "tp", "fp", "fn"}.
    """
    per_class = {name: (float(t.class_sum[c] / t.class_count[c]) if t.class_count[c] else None)
                 for c, name in enumerate(CLASSES)}
    denom = t.tp + t.fp + t.fn
    return {
        "ca_sdri": t.score_sum / t.scored if t.scored else None,
        "ca_sdri_per_class": per_class,
        "accuracy_mixture": 100.0 * t.correct / t.clips if t.clips else None,
        "accuracy_source": 100.0 * t.tp / denom if denom else None,
        "clips": t.clips, "clips_scored": t.scored, "clips_excluded": t.clips - t.scored,
        "tp": t.tp, "fp": t.fp, "fn": t.fn,
    }


# ----------------------------------------------------------------------------------------------------
# Plain reference (itertools, float32 numpy): the spec written out literally, for tests and checks
# ----------------------------------------------------------------------------------------------------

def snr_numpy(est: np.ndarray, ref: np.ndarray) -> np.float32:
    """SNR in dB of one pair of 1-D signals with float32 numpy (same formula as `snr`)."""
    est = np.asarray(est, np.float32)
    ref = np.asarray(ref, np.float32)
    eps = np.float32(EPS)
    num = np.sum(ref * ref, dtype=np.float32) + eps
    den = np.sum(np.square(ref - est), dtype=np.float32) + eps
    return np.float32(np.float32(10.0) * np.log10(num / den))


def _reference_core(est_labels, ref_labels, snr_est: Callable[[int, int], np.float32],
                    snr_mix: Callable[[int], np.float32]):
    """Literal spec; returns (score or None, {class index: [recorded values]}).  Labels: names or ints."""
    est = [label_index(x) if isinstance(x, str) else int(x) for x in est_labels]
    ref = [label_index(x) if isinstance(x, str) else int(x) for x in ref_labels]
    present = sorted({c for c in est + ref if 0 <= c < NUM_CLASSES})
    values: dict[int, list[float]] = {}
    for c in present:
        est_c = [i for i, x in enumerate(est) if x == c]
        ref_c = [j for j, x in enumerate(ref) if x == c]
        e, r = len(est_c), len(ref_c)
        if e == 0 or r == 0:
            values[c] = [0.0] * (e + r)
            continue
        n = min(e, r)
        best, best_pair = None, None
        for comb in itertools.combinations(ref_c, n):
            for perm in itertools.permutations(est_c, n):
                acc = np.float32(0.0)
                for j, i in zip(comb, perm):
                    acc = np.float32(acc + snr_est(i, j))
                mean = np.float32(acc / np.float32(n))
                if best is None or mean > best:        # strict: the first maximum wins
                    best, best_pair = mean, (comb, perm)
        comb, perm = best_pair
        values[c] = [float(np.float32(snr_est(i, j) - snr_mix(j))) for j, i in zip(comb, perm)]
        values[c] += [0.0] * abs(e - r)
    flat = [x for vals in values.values() for x in vals]
    return (float(np.mean(flat)) if flat else None), values


def clip_score_reference(est_labels, ref_labels, S: np.ndarray, M: np.ndarray):
    """Reference score of one clip from matrices S [3, R], M [R] (float32); (score or None, per-class values)."""
    S = np.asarray(S, np.float32)
    M = np.asarray(M, np.float32)
    return _reference_core(est_labels, ref_labels, lambda i, j: S[i, j], lambda j: M[j])


def ca_sdri_reference(est_wf, est_labels, ref_wf, ref_labels, mix0) -> float | None:
    """Reference CA-SDRi of one clip from waveforms: est_wf [3, n], ref_wf [r, n] (r = len(ref_labels)),
    mix0 [n]; SNRs computed pair by pair with float32 numpy. None when nothing is present on either side."""
    return _reference_core(est_labels, ref_labels, lambda i, j: snr_numpy(est_wf[i], ref_wf[j]),
                           lambda j: snr_numpy(mix0, ref_wf[j]))[0]
