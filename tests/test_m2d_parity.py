"""Full-size parity with the official PyTorch M2D taggers (goldens in tests/golden/m2d).

Official-format Lightning .ckpt (synthetic weights, true front-end buffers) -> `s5jax convert` ->
Tagger.from_checkpoint -> log-mel, encoder features, logits and probabilities vs the official outputs.
One conversion and three compilations (10 s, 3.7 s and the two-chunk 12.5 s input) per tagger; every
field of every golden case is compared.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_synth, write_lightning_ckpt
from s5jax.cli import main
from s5jax.tagger import Tagger

pytestmark = pytest.mark.slow
RTOL = 1e-4


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module", params=["1c", "4c"])
def case(request, tmp_path_factory, golden, golden_weights):
    tag = request.param
    kind = "tagger-1ch" if tag == "1c" else "tagger-4ch"
    tmp = tmp_path_factory.mktemp(f"m2d_{tag}")
    ckpt = write_lightning_ckpt(golden_weights("m2d", f"manifest_{tag}.json", f"fixed_{tag}.npz"),
                                tmp / "official.ckpt")
    out = str(tmp / "converted")
    assert main(["convert", ckpt, out]) == 0
    tagger = Tagger.from_checkpoint(out)
    assert tagger.kind == kind and tagger.cfg.in_channels == (4 if tag == "4c" else 1)
    g = dict(np.load(golden / "m2d" / f"golden_{tag}.npz"))
    synth = load_synth()
    results = []
    for i in range(len(g["seeds"])):
        wav = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))[None]
        results.append(tagger.intermediates(wav))   # logits, lms, features in one compiled call
    return tag, tagger, g, results


def test_convert_detected_kind(case):
    tag, tagger, _, _ = case
    assert tagger.kind == ("tagger-1ch" if tag == "1c" else "tagger-4ch")


def test_golden_covers_three_cases_with_a_two_chunk_one(case):
    _, _, g, _ = case
    assert len(g["seeds"]) == 3 and float(g["seconds"][2]) == 12.5 and int(g["case2_n_frames"]) > 1001


@pytest.mark.parametrize("i", [0, 1, 2])
def test_every_golden_field(case, i):
    """n_frames, n_steps, lms_ch0, features (channels concatenated), features_ch0, pooled, logits,
    probs, pred_index, pred_onehot, pred_prob: each compared where the golden holds it."""
    from s5jax.tagger import predict_from_logits

    _, _, g, res = case
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


def test_predict_matches_golden(case):
    """The user call path (Tagger.predict: input checks, jitted apply_fn) against the golden."""
    _, tagger, g, _ = case
    wav = load_synth().synth_waveform(int(g["seeds"][1]), 4, float(g["seconds"][1]))[None]
    pred = tagger.predict(wav)
    np.testing.assert_array_equal(np.asarray(pred.labels[0]), g["case1_pred_index"])
    assert rel(np.asarray(pred.softmax)[0], g["case1_probs"]) <= RTOL
