"""CA-SDRi and label metrics against the official goldens and against the literal itertools reference."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from s5jax import metric as m
from s5jax.labels import CLASSES, NUM_SLOTS, SILENCE, label_index

TOL = 1e-4   # dB, per the brief; float32 rounding differences are ~1e-5


def label_indices(labels, width: int = NUM_SLOTS, pad: int = SILENCE) -> np.ndarray:
    """Class names or ints -> int32 [width], padded with `pad` (silence); more than `width` labels is an error."""
    idx = [label_index(x) if isinstance(x, str) else int(x) for x in labels]
    if len(idx) > width:
        raise ValueError(f"{len(idx)} labels do not fit in width {width}: {list(labels)}")
    if any(not 0 <= i <= SILENCE for i in idx):
        raise ValueError(f"label index out of range 0..{SILENCE}: {idx}")
    return np.array(idx + [pad] * (width - len(idx)), dtype=np.int32)


def clip_score(est_labels, ref_labels, S, M):
    """(score, valid) of one clip: the two fields of the library's `clip_score_detail`."""
    d = m.clip_score_detail(est_labels, ref_labels, S, M)
    return d.score, d.valid


@pytest.fixture(scope="module")
def cases(golden):
    with open(golden / "metric" / "cases.json") as f:
        meta = json.load(f)
    z = np.load(golden / "metric" / "cases.npz")
    out = []
    for c in meta["cases"]:
        i = c["index"]
        out.append(dict(c, est_wf=z["est_wf"][i], ref_wf=z["ref_wf"][i][: int(z["n_ref"][i])], mix=z["mixture"][i]))
    assert len(out) == meta["summary"]["n_cases"] == 61
    return out, meta["summary"]


def _padded_batch(cs):
    """All cases stacked with references padded to 3 (zero waveforms, label silence)."""
    n = cs[0]["mix"].shape[-1]
    ref_wf = np.zeros((len(cs), 3, n), np.float32)
    for k, c in enumerate(cs):
        ref_wf[k, : len(c["ref_labels"])] = c["ref_wf"]
    est_wf = np.stack([c["est_wf"] for c in cs])
    est_l = np.stack([label_indices(c["est_labels"]) for c in cs])
    ref_l = np.stack([label_indices(c["ref_labels"]) for c in cs])
    mix = np.stack([c["mix"] for c in cs])
    return est_wf, est_l, ref_wf, ref_l, mix


def _check_official(score, valid, official):
    if official is None:
        assert not bool(valid) and np.isnan(float(score))
    else:
        assert bool(valid)
        assert abs(float(score) - official) <= TOL, (float(score), official)


# ---------------------------------------------------------------------------------------------------- SNR

def test_snr_matches_numpy_and_broadcasts():
    rng = np.random.default_rng(0)
    est = rng.standard_normal((2, 3, 1000)).astype(np.float32)
    ref = rng.standard_normal((3, 1000)).astype(np.float32)
    got = np.asarray(jax.jit(m.snr)(est, ref))
    assert got.shape == (2, 3) and got.dtype == np.float32
    want = np.array([[m.snr_numpy(est[a, b], ref[b]) for b in range(3)] for a in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # no mean removal: a DC offset on the estimate changes the SNR; a perfect estimate is huge but finite
    assert float(m.snr(ref[0] + 1.0, ref[0])) < 1.0
    perfect = float(m.snr(ref[0], ref[0]))
    assert np.isfinite(perfect) and perfect > 90.0
    # closed form: est = 0.5·ref -> 10·log10(4) (up to the eps terms)
    assert abs(float(m.snr(0.5 * ref[0], ref[0])) - 10 * np.log10(4.0)) < 1e-4


def test_snr_matrix_and_mixture_shapes():
    rng = np.random.default_rng(1)
    stems = rng.standard_normal((4, 3, 500)).astype(np.float32)
    refs = rng.standard_normal((4, 2, 500)).astype(np.float32)
    mix = rng.standard_normal((4, 500)).astype(np.float32)
    S = np.asarray(m.snr_matrix(stems, refs))
    M = np.asarray(m.mixture_snr(mix, refs))
    assert S.shape == (4, 3, 2) and M.shape == (4, 2)
    assert abs(S[2, 1, 0] - m.snr_numpy(stems[2, 1], refs[2, 0])) < 1e-5
    assert abs(M[3, 1] - m.snr_numpy(mix[3], refs[3, 1])) < 1e-5


# ---------------------------------------------------------------------------------------------------- goldens

def test_golden_waveform_form_per_clip(cases):
    cs, _ = cases
    scorer = jax.jit(m.ca_sdri)
    for c in cs:
        r = len(c["ref_labels"])
        score, valid = scorer(c["est_wf"], label_indices(c["est_labels"]), c["ref_wf"],
                              label_indices(c["ref_labels"], width=r), c["mix"])
        _check_official(score, valid, c["ca_sdri"])


def test_golden_reference_per_clip(cases):
    cs, _ = cases
    for c in cs:
        got = m.ca_sdri_reference(c["est_wf"], c["est_labels"], c["ref_wf"], c["ref_labels"], c["mix"])
        if c["ca_sdri"] is None:
            assert got is None
        else:
            assert abs(got - c["ca_sdri"]) <= TOL, (c["name"], got, c["ca_sdri"])


def test_golden_matrix_form_batched(cases):
    cs, _ = cases
    est_wf, est_l, ref_wf, ref_l, mix = _padded_batch(cs)
    S = jax.jit(m.snr_matrix)(est_wf, ref_wf)
    M = jax.jit(m.mixture_snr)(mix, ref_wf)
    assert S.shape == (61, 3, 3) and M.shape == (61, 3)
    score, valid = jax.jit(jax.vmap(clip_score))(est_l, ref_l, S, M)
    assert score.shape == (61,)
    for k, c in enumerate(cs):
        _check_official(score[k], valid[k], c["ca_sdri"])
    # waveform batch scorer gives the same numbers as the matrix form
    d = m.score_batch(est_wf, est_l, ref_wf, ref_l, mix)
    np.testing.assert_array_equal(np.asarray(d.valid), np.asarray(valid))
    np.testing.assert_allclose(np.asarray(d.score), np.asarray(score), atol=1e-6)


def test_matrix_form_equals_waveform_form(cases):
    """Per clip, jitted (one program per reference count): run op by op, the 61 clips' few shapes
    compiled ~230 single operations (12 s of the suite)."""
    cs, _ = cases
    snr_matrix, mixture_snr = jax.jit(m.snr_matrix), jax.jit(m.mixture_snr)
    clip_score_detail, ca_sdri_detail = jax.jit(m.clip_score_detail), jax.jit(m.ca_sdri_detail)
    for c in cs:
        el = label_indices(c["est_labels"])
        rl = label_indices(c["ref_labels"], width=len(c["ref_labels"]))
        S = snr_matrix(c["est_wf"], c["ref_wf"])
        M = mixture_snr(c["mix"], c["ref_wf"])
        dm = clip_score_detail(el, rl, S, M)
        dw = ca_sdri_detail(c["est_wf"], el, c["ref_wf"], rl, c["mix"])
        for a, b in zip(dm, dw):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        # the same from the itertools reference on the same matrices
        ref_score, _ = m.clip_score_reference(el, rl, S, M)
        if ref_score is None:
            assert not bool(dm.valid)
        else:
            assert abs(float(dm.score) - ref_score) < 1e-5


def test_golden_label_metrics(cases):
    cs, _ = cases
    for c in cs:
        lc = m.label_counts(c["est_labels"], c["ref_labels"])
        want = c["label"]
        assert (lc.tp, lc.fp, lc.fn, lc.correct) == (want["tp"], want["fp"], want["fn"], want["acc"]), c["name"]
    _, est_l, _, ref_l, _ = _padded_batch(cs)
    lp = jax.jit(m.label_counts_padded)(est_l, ref_l)
    np.testing.assert_array_equal(np.asarray(lp.tp), [c["label"]["tp"] for c in cs])
    np.testing.assert_array_equal(np.asarray(lp.fp), [c["label"]["fp"] for c in cs])
    np.testing.assert_array_equal(np.asarray(lp.fn), [c["label"]["fn"] for c in cs])
    np.testing.assert_array_equal(np.asarray(lp.correct), [c["label"]["acc"] for c in cs])


def test_golden_dataset_summary(cases):
    cs, summary = cases
    batch = _padded_batch(cs)
    est_l, ref_l = batch[1], batch[3]
    # accumulate batch by batch (as the inference program does), in uneven chunks of two sizes (each
    # size one compile of score_batch; 12 is test_summary_of_one_batch_equals_totals_of_single_clips')
    tot = m.empty_totals()
    label_counts_padded = jax.jit(m.label_counts_padded)        # op by op: ~100 single-op compiles
    for lo, hi in [(0, 12), (12, 13), (13, 25), (25, 37), (37, 49), (49, 61)]:
        part = [x[lo:hi] for x in batch]
        tot = m.merge_totals(tot, m.totals(m.score_batch(*part), label_counts_padded(est_l[lo:hi], ref_l[lo:hi])))
    s = m.summarize(tot)
    assert abs(s["ca_sdri"] - summary["mean_ca_sdri"]) <= TOL
    assert abs(s["accuracy_mixture"] - summary["accuracy_mix"]) <= 1e-9
    assert abs(s["accuracy_source"] - summary["accuracy_src"]) <= 1e-9
    n_null = sum(c["ca_sdri"] is None for c in cs)
    assert (s["clips"], s["clips_scored"], s["clips_excluded"]) == (61, 61 - n_null, n_null)
    assert s["tp"] == sum(c["label"]["tp"] for c in cs)
    # per-class CA-SDRi = mean of the values the literal reference records for that class, over all clips
    per = {c: [] for c in range(len(CLASSES))}
    for c in cs:
        _, vals = m._reference_core(c["est_labels"], c["ref_labels"],
                                    lambda i, j, c=c: m.snr_numpy(c["est_wf"][i], c["ref_wf"][j]),
                                    lambda j, c=c: m.snr_numpy(c["mix"], c["ref_wf"][j]))
        for k, v in vals.items():
            per[k] += v
    for k, name in enumerate(CLASSES):
        got = s["ca_sdri_per_class"][name]
        if per[k]:
            assert abs(got - np.mean(per[k])) < 1e-5, name
        else:
            assert got is None


def test_summary_of_one_batch_equals_totals_of_single_clips(cases):
    cs, _ = cases
    batch = _padded_batch(cs[:12])
    d = m.score_batch(*batch)
    lc = m.label_counts_padded(batch[1], batch[3])
    whole = m.summarize(m.totals(d, lc))
    tot = m.empty_totals()
    for k in range(12):
        dk = m.ClipDetail(*(x[k] for x in d))
        tot = m.merge_totals(tot, m.totals(dk, m.label_counts(cs[k]["est_labels"], cs[k]["ref_labels"])))
    one = m.summarize(tot)
    assert one["ca_sdri"] == pytest.approx(whole["ca_sdri"], abs=1e-9)
    assert one["ca_sdri_per_class"] == pytest.approx(whole["ca_sdri_per_class"], abs=1e-9)
    assert (one["accuracy_source"], one["accuracy_mixture"]) == (whole["accuracy_source"], whole["accuracy_mixture"])


# ---------------------------------------------------------------------------------------------------- tie-breaking

def _detail(est, ref, S, M):
    """m.clip_score_detail jitted (one compile per shape; op by op it compiled each operation)."""
    return _jitted_detail(np.asarray(est, np.int32), np.asarray(ref, np.int32), np.asarray(S, np.float32),
                          np.asarray(M, np.float32))


_jitted_detail = jax.jit(m.clip_score_detail)


def test_ties_first_maximum_wins():
    # one estimate of class 4, two references of class 4 with equal SNR but different mixture SNRs:
    # the official loop keeps the first combination (reference 0)
    S = np.array([[5.0, 5.0, 0.0], [0, 0, 0], [0, 0, 0]], np.float32)
    M = np.array([1.0, 3.0, 0.0], np.float32)
    est, ref = [4, SILENCE, SILENCE], [4, 4, SILENCE]
    d = _detail(est, ref, S, M)
    # values recorded: SDRi 5 - 1 = 4 (reference 0), then one miss (0) -> 2
    assert float(d.score) == pytest.approx(2.0)
    assert float(d.class_sum[4]) == pytest.approx(4.0) and int(d.class_count[4]) == 2
    # swap the references' order: now reference 0 has M = 3 -> 1.0
    d2 = _detail(est, [4, 4, SILENCE], S, M[[1, 0, 2]])
    assert float(d2.score) == pytest.approx(1.0)
    # two estimates, three references, ties between combinations {0,1} and {1,2}, {0,2}
    S3 = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [0, 0, 0]], np.float32)
    M3 = np.array([0.0, 1.0, 5.0], np.float32)
    d3 = _detail([7, 7, SILENCE], [7, 7, 7], S3, M3)
    # first combination (0, 1): SDRi 2 + 1, then a miss -> 3/3
    assert float(d3.score) == pytest.approx(1.0)
    assert m.clip_score_reference([7, 7, SILENCE], [7, 7, 7], S3, M3)[0] == pytest.approx(1.0)


def test_best_mean_snr_not_best_sdri():
    # the matching maximises mean SNR, not SDRi: ref 1 has the higher SNR but the lower SDRi
    S = np.array([[4.0, 6.0, 0.0], [0, 0, 0], [0, 0, 0]], np.float32)
    M = np.array([0.0, 5.0, 0.0], np.float32)
    d = _detail([2, SILENCE, SILENCE], [2, 2, SILENCE], S, M)
    assert float(d.score) == pytest.approx((6.0 - 5.0 + 0.0) / 2)


def _random_inputs(rng, n, classes):
    est = rng.choice(classes, size=(n, 3)).astype(np.int32)
    r = rng.integers(0, 4, size=n)
    ref = rng.choice(classes[:-1], size=(n, 3)).astype(np.int32)   # real references are never silence
    ref[np.arange(3)[None, :] >= r[:, None]] = SILENCE                # pad to 3
    S = rng.integers(-2, 3, size=(n, 3, 3)).astype(np.float32)       # small integers: many exact ties
    dup = rng.random(n) < 0.3                                          # duplicated estimate rows
    S[dup, 1] = S[dup, 0]
    frac = rng.random(n) < 0.3                                         # some non-integer matrices too
    S[frac] = rng.normal(0, 10, size=(frac.sum(), 3, 3)).astype(np.float32)
    M = rng.normal(0, 3, size=(n, 3)).astype(np.float32)
    return est, ref, S, M


@pytest.mark.parametrize("seed,classes", [(0, [0, 1, SILENCE]), (1, [5, SILENCE]), (2, [0, 1, 2, 3, 17, SILENCE])])
def test_jittable_equals_reference_random(seed, classes):
    rng = np.random.default_rng(seed)
    n = 1500
    est, ref, S, M = _random_inputs(rng, n, np.array(classes))
    d = jax.jit(jax.vmap(m.clip_score_detail))(est, ref, S, M)
    score, valid = np.asarray(d.score), np.asarray(d.valid)
    csum, ccount = np.asarray(d.class_sum), np.asarray(d.class_count)
    n_ties = 0
    for k in range(n):
        want, vals = m.clip_score_reference(est[k], [x for x in ref[k] if x != SILENCE], S[k], M[k])
        if want is None:
            assert not valid[k] and np.isnan(score[k])
            continue
        assert valid[k]
        assert abs(score[k] - want) <= 1e-5, (k, est[k], ref[k], S[k], M[k], score[k], want)
        for c in range(len(CLASSES)):
            got_vals = vals.get(c, [])
            assert ccount[k, c] == len(got_vals)
            assert abs(csum[k, c] - sum(got_vals)) <= 1e-5
        # count clips where the tie-break decided the result (several maximising reference sets)
        for c in vals:
            e, r = int((est[k] == c).sum()), int((ref[k] == c).sum())
            if 0 < e < r:
                js = [j for j in range(3) if ref[k, j] == c]
                is_ = [i for i in range(3) if est[k, i] == c]
                if e == 1 and len({S[k, is_[0], j] for j in js}) < len(js):
                    n_ties += 1
    assert n_ties >= 10   # the random set really exercises tie-breaking
    # the whole-array label metric agrees with the multiset version on the same random labels
    lp = m.label_counts_padded(est, ref)
    for k in range(0, n, 7):
        lc = m.label_counts(est[k], ref[k])
        assert (int(lp.tp[k]), int(lp.fp[k]), int(lp.fn[k]), bool(lp.correct[k])) == tuple(lc)


def test_vmap_over_relabellings_of_one_clip():
    # the replay use: one clip's matrices, many slot relabellings (broadcast S, M; vmap the labels)
    rng = np.random.default_rng(3)
    S = rng.normal(5, 5, size=(3, 3)).astype(np.float32)
    M = rng.normal(0, 2, size=(3,)).astype(np.float32)
    ref = np.array([1, 1, 2], np.int32)
    est = rng.choice([1, 2, 3, SILENCE], size=(500, 3)).astype(np.int32)
    score, valid = jax.jit(jax.vmap(clip_score, in_axes=(0, None, None, None)))(est, ref, S, M)
    assert bool(np.all(valid))
    for k in range(0, 500, 11):
        assert abs(float(score[k]) - m.clip_score_reference(est[k], ref, S, M)[0]) <= 1e-5


# ---------------------------------------------------------------------------------------------------- labels / edges

def test_label_indices():
    np.testing.assert_array_equal(label_indices(["Speech", "silence"]), [15, SILENCE, SILENCE])
    np.testing.assert_array_equal(label_indices([], width=3), [SILENCE] * 3)
    np.testing.assert_array_equal(label_indices([0, "Typing"], width=2), [0, 16])
    with pytest.raises(ValueError):
        label_indices(["Speech"] * 4)
    with pytest.raises(ValueError):
        label_indices(["NotAClass"])
    with pytest.raises(ValueError):
        label_indices([19])


def test_false_alarm_on_silent_reference_scores_zero_and_silence_is_none():
    S = np.full((3, 0), 0.0, np.float32)
    M = np.zeros((0,), np.float32)
    score, valid = _detail([3, SILENCE, SILENCE], np.zeros((0,), np.int32), S, M)[:2]
    assert bool(valid) and float(score) == 0.0
    score, valid = _detail([SILENCE] * 3, np.zeros((0,), np.int32), S, M)[:2]
    assert not bool(valid) and np.isnan(float(score))
    with pytest.raises(ValueError):
        clip_score([SILENCE] * 3, np.zeros((4,), np.int32), np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
