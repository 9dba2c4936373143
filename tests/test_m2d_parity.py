"""Full-size parity with the official PyTorch M2D taggers (goldens in tests/golden/m2d).

Official-format Lightning .ckpt (synthetic weights, true front-end buffers) -> `s5jax convert` ->
Tagger.from_checkpoint -> log-mel, encoder features, logits and probabilities vs the official outputs.
One conversion and at most two compilations (10 s and 3.7 s input) per tagger.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import golden_state_dict, load_synth, write_lightning_ckpt
from s5jax.cli import main
from s5jax.tagger import Tagger

pytestmark = pytest.mark.slow
RTOL = 1e-4


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module", params=["1c", "4c"])
def case(request, tmp_path_factory, golden):
    tag = request.param
    kind = "tagger-1ch" if tag == "1c" else "tagger-4ch"
    tmp = tmp_path_factory.mktemp(f"m2d_{tag}")
    ckpt = write_lightning_ckpt(golden_state_dict("m2d", f"manifest_{tag}.json", f"fixed_{tag}.npz"),
                                tmp / "official.ckpt")
    out = str(tmp / "converted")
    assert main(["convert", ckpt, out]) == 0
    tagger = Tagger.from_checkpoint(out)
    assert tagger.kind == kind and tagger.cfg.in_channels == (4 if tag == "4c" else 1)
    g = dict(np.load(golden / "m2d" / f"golden_{tag}.npz"))
    synth = load_synth()
    results = []
    for i in range(2):
        wav = synth.synth_waveform(int(g["seeds"][i]), 4, float(g["seconds"][i]))[None]
        results.append(tagger.intermediates(wav))   # logits, lms, features in one compiled call
    return tag, tagger, g, results


def test_convert_detected_kind_and_norm_stats(case):
    tag, tagger, _, _ = case
    assert tagger.kind == ("tagger-1ch" if tag == "1c" else "tagger-4ch")
    assert abs(tagger.cfg.norm_mean + 7.1) < 1e-6 and abs(tagger.cfg.norm_std - 4.2) < 1e-6


def test_log_mel(case):
    _, _, g, res = case
    assert res[0]["lms"].shape[-2:] == g["case0_lms_ch0"].shape
    assert rel(res[0]["lms"][0, 0], g["case0_lms_ch0"]) <= RTOL


def test_features(case):
    _, _, g, res = case
    assert res[0]["features"].shape[-2:] == g["case0_features_ch0"].shape
    assert rel(res[0]["features"][0, 0], g["case0_features_ch0"]) <= RTOL


@pytest.mark.parametrize("i", [0, 1])
def test_logits_and_prediction(case, i):
    _, tagger, g, res = case
    logits = np.asarray(res[i]["logits"])[0]
    assert rel(logits, g[f"case{i}_logits"]) <= RTOL
    from s5jax.tagger import predict_from_logits

    pred = predict_from_logits(res[i]["logits"])
    assert rel(pred.softmax[0], g[f"case{i}_probs"]) <= RTOL
    np.testing.assert_array_equal(np.asarray(pred.labels[0]), g[f"case{i}_pred_index"])
    np.testing.assert_allclose(np.asarray(pred.probs[0]), g[f"case{i}_pred_prob"], rtol=1e-4, atol=1e-6)


def test_call_and_predict_agree_with_intermediates(case):
    _, tagger, g, res = case
    wav = load_synth().synth_waveform(int(g["seeds"][1]), 4, float(g["seconds"][1]))[None]
    np.testing.assert_allclose(np.asarray(tagger(wav)), np.asarray(res[1]["logits"]), rtol=1e-5, atol=1e-6)
    pred = tagger.predict(wav)
    np.testing.assert_array_equal(np.asarray(pred.labels[0]), g["case1_pred_index"])
