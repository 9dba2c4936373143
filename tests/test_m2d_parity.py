"""Full-size parity with the official PyTorch M2D taggers (goldens in tests/golden/m2d).

Official state_dict (synthetic weights, true front-end buffers) -> its kind detected from the keys ->
`s5jax convert`'s conversion -> Tagger -> log-mel, encoder features, logits and probabilities vs the
official outputs. Three compilations (10 s, 3.7 s and the two-chunk 12.5 s input) per tagger; every
field of every golden case is compared. The conversion runs in this process: what `s5jax convert`
adds around it (the .ckpt read, the folder written and loaded again) is the same code at any size,
run here on the tiny official checkpoints (test_convert_detected_kind); through the files the
full-size one took 30 s per tagger.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_synth
from s5jax import checkpoint
from s5jax.official.convert import convert_state_dict, detect_kind
from s5jax.tagger import Tagger

pytestmark = pytest.mark.slow
RTOL = 1e-4
KINDS = {"1c": "tagger-1ch", "4c": "tagger-4ch"}


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module", params=["1c", "4c"])
def case(request, golden, golden_weights):
    tag = request.param
    sd = golden_weights("m2d", f"manifest_{tag}.json", f"fixed_{tag}.npz")      # official keys, "model." first
    kind = detect_kind(sd)
    assert kind == KINDS[tag]                                   # the full-size key set's kind
    config, variables = convert_state_dict(sd, kind, f"golden {tag}")
    tagger = Tagger(Tagger.CONFIG.from_dict(config), variables, kind)
    assert tagger.cfg.in_channels == (4 if tag == "4c" else 1)
    g = dict(np.load(golden / "m2d" / f"golden_{tag}.npz"))
    synth = load_synth()
    results, inputs = [], []
    for i in range(len(g["seeds"])):
        wav = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))[None]
        results.append(tagger.intermediates(wav))   # logits, lms, features in one compiled call
        inputs.append(wav)
    return tag, tagger, g, results, inputs


@pytest.mark.parametrize("tag", ["1c", "4c"])
def test_convert_detected_kind(tag, request):
    """`s5jax convert` without --kind on an official .ckpt (the tiny ones, conftest.tiny_ckpt /
    tiny_tagger_4ch) writes a folder of the kind its keys say, which loads as that tagger."""
    folder = request.getfixturevalue("tiny_ckpt")["tagger"] if tag == "1c" else request.getfixturevalue("tiny_tagger_4ch")
    assert checkpoint.load(folder)[0] == KINDS[tag]
    tagger = Tagger.from_checkpoint(folder)
    assert tagger.kind == KINDS[tag] and tagger.cfg.in_channels == (4 if tag == "4c" else 1)


def test_golden_covers_three_cases_with_a_two_chunk_one(case):
    _, _, g, _, _ = case
    assert len(g["seeds"]) == 3 and float(g["seconds"][2]) == 12.5 and int(g["case2_n_frames"]) > 1001


@pytest.mark.parametrize("i", [0, 1, 2])
def test_every_golden_field(case, i):
    """n_frames, n_steps, lms_ch0, features (channels concatenated), features_ch0, pooled, logits,
    probs, pred_index, pred_onehot, pred_prob: each compared where the golden holds it."""
    from s5jax.tagger import predict_from_logits

    _, _, g, res, _ = case
    r = res[i]
    feats = np.asarray(r["features"])[0]                       # [ch, time, F*D]
    ours = {"n_frames": r["lms"].shape[-1], "n_steps": feats.shape[1],
            "lms_ch0": np.asarray(r["lms"])[0, 0],
            "features": feats.transpose(1, 0, 2).reshape(feats.shape[1], -1),
            "features_ch0": feats[0], "pooled": np.asarray(r["pooled"])[0],
            "logits": np.asarray(r["logits"])[0]}
    pred = predict_from_logits(r["logits"])
    ours.update(probs=np.asarray(pred.softmax)[0], pred_index=np.asarray(pred.labels)[0],
                pred_prob=np.asarray(pred.probs)[0],
                pred_onehot=np.eye(19, dtype=np.float32)[np.asarray(pred.labels)[0]])
    fields = sorted(k[len(f"case{i}_"):] for k in g if k.startswith(f"case{i}_") and k != f"case{i}_n_samples")
    assert {"logits", "pooled", "n_steps"} <= set(fields)
    for name in fields:
        ref = g[f"case{i}_{name}"]
        if name in ("n_frames", "n_steps", "pred_index", "pred_onehot"):
            np.testing.assert_array_equal(ours[name], ref, err_msg=name)
        else:
            assert np.shape(ours[name]) == ref.shape, name
            assert rel(ours[name], ref) <= RTOL, (name, rel(ours[name], ref))


def test_predict_matches_golden(case, monkeypatch):
    """The user call path (Tagger.predict: input checks, jitted apply_fn) against the golden. The
    forward program is the one the fields were read from; when predict hands it the fixture's very
    inputs (the weights object, the case's waveform) it gets the fixture's outputs for them instead of a
    second full-size run; any other inputs are run."""
    _, tagger, g, res, inputs = case
    wav = load_synth().synth_waveform(int(g["seeds"][1]), 4, float(g["seconds"][1]))[None]
    forward, calls = tagger._forward, []

    def remembered(variables, waveform):
        calls.append(waveform)
        if variables is tagger.variables and np.array_equal(waveform, inputs[1]):
            return res[1]
        return forward(variables, waveform)

    monkeypatch.setattr(tagger, "_forward", remembered)
    pred = tagger.predict(wav)
    assert len(calls) == 1
    np.testing.assert_array_equal(np.asarray(pred.labels[0]), g["case1_pred_index"])
    assert rel(np.asarray(pred.softmax)[0], g["case1_probs"]) <= RTOL
