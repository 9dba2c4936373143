"""The tiny official checkpoints (made by the official code, tests/golden/*/tiny_lightning*.ckpt)
through `s5jax convert`, against the official outputs in tiny_*golden.npz, field by field. Their
configs (in the npz) set what the weights cannot tell: num_heads and the separator hop."""
from __future__ import annotations

import json

import numpy as np

from conftest import compare_separator_case, load_synth, write_lightning_ckpt
from s5jax.cli import main
from s5jax.official.convert import read_state_dict

RTOL = 1e-4


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def test_tiny_tagger_every_field(golden, tiny_ckpt):
    from s5jax.tagger import Tagger, predict_from_logits

    g = dict(np.load(golden / "m2d" / "tiny_1c_golden.npz"))
    conf = json.loads(str(g["config"]))
    tagger = Tagger.from_checkpoint(tiny_ckpt["tagger"])
    assert (tagger.cfg.embed_dim, tagger.cfg.depth, tagger.cfg.num_heads) == (
        conf["vit"]["embed_dim"], conf["vit"]["depth"], conf["vit"]["num_heads"])
    assert tagger.cfg.track_dim == conf["head_args"]["track_hidden_dim"]
    wav = load_synth().synth_waveform(int(g["seeds"][0]), int(g["channels"]), float(g["seconds"][0]))[None]
    r = tagger.intermediates(wav)
    pred = predict_from_logits(r["logits"])
    feats = np.asarray(r["features"])[0, 0]
    ours = {"n_frames": r["lms"].shape[-1], "n_steps": feats.shape[0], "lms_ch0": np.asarray(r["lms"])[0, 0],
            "features": feats, "pooled": np.asarray(r["pooled"])[0], "logits": np.asarray(r["logits"])[0],
            "probs": np.asarray(pred.softmax)[0], "pred_index": np.asarray(pred.labels)[0],
            "pred_prob": np.asarray(pred.probs)[0],
            "pred_onehot": np.eye(19, dtype=np.float32)[np.asarray(pred.labels)[0]]}
    fields = sorted(k[6:] for k in g if k.startswith("case0_") and k != "case0_n_samples")
    assert set(fields) == set(ours), fields
    for name in fields:
        ref = g[f"case0_{name}"]
        if name in ("n_frames", "n_steps", "pred_index", "pred_onehot"):
            np.testing.assert_array_equal(ours[name], ref, err_msg=name)
        else:
            assert np.shape(ours[name]) == ref.shape and rel(ours[name], ref) <= RTOL, name


def test_non_default_norm_stats_reach_the_model(golden, tiny_ckpt, tmp_path):
    """norm_stats are read from the checkpoint: with (-5.5, 3.25) instead of the defaults the log-mel is
    renormalised accordingly, so a converter ignoring them fails here."""
    from s5jax.tagger import Tagger

    sd = read_state_dict(str(golden / "m2d" / "tiny_lightning_1c.ckpt"))
    sd["model.backbone.norm_stats"] = np.array([-5.5, 3.25], np.float32)
    ckpt = write_lightning_ckpt(sd, tmp_path / "stats.ckpt", extra=False)
    assert main(["convert", ckpt, str(tmp_path / "stats"), "--set", "num_heads=4"]) == 0
    moved = Tagger.from_checkpoint(tmp_path / "stats")
    assert (moved.cfg.norm_mean, moved.cfg.norm_std) == (-5.5, 3.25)
    base = Tagger.from_checkpoint(tiny_ckpt["tagger"])
    wav = load_synth().synth_waveform(1, 1, 1.0)[None]
    a = np.asarray(base.intermediates(wav)["lms"])
    b = np.asarray(moved.intermediates(wav)["lms"])
    raw = a * 4.2 - 7.1
    np.testing.assert_allclose(b, (raw + 5.5) / 3.25, rtol=1e-5, atol=1e-5)


def test_tiny_separator_every_field(golden, tiny_ckpt):
    """stems, STFT magnitude, source mask, conditions, FiLM betas and the bottleneck of the official
    tiny separator. The golden `film` vector holds all 38 FiLM outputs, but the official forward never
    applies the decoder blocks' own `beta2` (6 entries); the 32 it applies are compared.""" 
    from s5jax.separator import Separator

    g = dict(np.load(golden / "resunet" / "tiny_golden.npz"))
    conf = json.loads(str(g["config"]))
    sep = Separator.from_checkpoint(tiny_ckpt["separator"])
    assert (sep.cfg.n_fft, sep.cfg.hop, list(sep.cfg.channels), sep.cfg.condition_dim) == (
        conf["n_fft"], conf["hop"], conf["widths"], conf["cond"])
    compare_separator_case(sep, g, 0)
