"""Small-config unit tests of the M2D tagger: shapes, chunking, pos-embed slicing, channels, batching."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5jax.errors import AudioError
from s5jax.models.m2d import (M2DConfig, ViTEncoder, chunk_layout, front_end_buffers,
                              log_mel)
from s5jax.tagger import Tagger
import tiny_system

# 64-frame chunks (4 time columns), 2 blocks of width 64: compiles and runs in seconds on CPU
SMALL = dict(chunk_frames=64, embed_dim=64, depth=2, num_heads=4, mlp_dim=128, head_dim=96, track_dim=32)


def small_cfg(in_channels: int) -> M2DConfig:
    return M2DConfig(in_channels=in_channels, **SMALL)


def random_variables(cfg: M2DConfig, seed: int = 0):
    """Random weights for every variable of a Tagger under `cfg` (tiny_system.random_variables)."""
    return tiny_system.random_variables(Tagger, cfg, seed)


def test_random_variables_cover_every_weight():
    cfg = small_cfg(4)
    v = random_variables(cfg)
    assert jax.tree.map(np.shape, v) == jax.tree.map(np.shape, Tagger.expected_variables(cfg))
    assert set(v) == {"params", "batch_stats"}
    bs = v["batch_stats"]["head"]["m2d_out_norm"]
    assert np.all((bs["var"] >= 0.5) & (bs["var"] <= 1.5)) and np.ptp(bs["mean"]) > 0
    assert all(a.dtype == np.float32 and np.ptp(a) > 0 for a in jax.tree.leaves(v) if a.size > 1)


def wave(seed: int, batch: int, channels: int, samples: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, channels, samples))).astype(np.float32)


@pytest.fixture(scope="module")
def tagger4():
    cfg = small_cfg(4)
    return Tagger(cfg, random_variables(cfg))


@pytest.fixture(scope="module")
def tagger1():
    cfg = small_cfg(1)
    return Tagger(cfg, random_variables(cfg, 1))


@functools.lru_cache(maxsize=None)
def jitted_encoder(cfg: M2DConfig):
    """ViTEncoder(cfg).apply jitted, one object per config: jax.jit of a new bound method each call
    missed jit's cache, so the same chunk shape compiled again in every call."""
    return jax.jit(ViTEncoder(cfg).apply)


def encode_chunk(tagger: Tagger, lms) -> np.ndarray:
    return np.asarray(jitted_encoder(tagger.cfg)({"params": tagger.variables["params"]["encoder"]}, lms))


def test_front_end_buffers_match_official(golden):
    fixed = np.load(golden / "m2d" / "fixed_1c.npz")
    ours = front_end_buffers(M2DConfig())
    for name, key in [("stft_wsin", "stft.wsin"), ("stft_wcos", "stft.wcos"),
                      ("stft_window_mask", "stft.window_mask"), ("mel_basis", "mel_basis")]:
        theirs = fixed[f"model.to_spec.{key}"]
        assert ours[name].shape == theirs.shape
        assert np.linalg.norm(ours[name] - theirs) / np.linalg.norm(theirs) < 1e-6, name


def test_log_mel_matches_golden(golden):
    from conftest import load_synth

    g = np.load(golden / "m2d" / "golden_1c.npz")
    wav = load_synth().synth_waveform(int(g["seeds"][0]), 4, float(g["seconds"][0]))
    lms = np.asarray(jax.jit(lambda w: log_mel(w, M2DConfig()))(wav[:1]))[0]
    ref = g["case0_lms_ch0"]
    assert lms.shape == ref.shape == (80, 1001)
    assert np.linalg.norm(lms - ref) / np.linalg.norm(ref) < 1e-5


def test_shapes_and_intermediates(tagger4):
    n = 16000                                    # 51 frames -> padded to 64 -> one chunk, 4 columns
    out = tagger4.intermediates(wave(0, 2, 4, n))
    assert out["logits"].shape == (2, 3, 19)
    assert out["lms"].shape == (2, 4, 80, 1 + n // 320)
    assert out["features"].shape == (2, 4, 4, 5 * 64)
    assert out["pooled"].shape == (2, 4 * 5 * 64)
    pred = tagger4.predict(wave(0, 2, 4, n))
    assert pred.labels.shape == (2, 3) and pred.labels.dtype == jnp.int32
    np.testing.assert_allclose(pred.softmax.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pred.probs, pred.softmax.max(-1), rtol=1e-6)
    np.testing.assert_allclose(tagger4(wave(0, 2, 4, n)), out["logits"], rtol=1e-5, atol=1e-6)


def test_chunk_layout_follows_the_baseline_runtime():
    """The baseline's portable_m2d: whole axis padded to a multiple of 16, chunk count from the
    unpadded length (m2d_tagger.md section 3 table); not the later M2D release's last-chunk padding."""
    cfg = M2DConfig()
    steps = lambda f: (lambda u, n, r: n * (cfg.chunk_frames // 16) + r // 16)(*chunk_layout(f, cfg))
    # (frames) -> (frames read, full chunks, last partial chunk)
    assert chunk_layout(1001, cfg) == (1001, 1, 0) and steps(1001) == 62      # 10 s
    assert chunk_layout(371, cfg) == (384, 0, 384) and steps(371) == 24        # 3.7 s
    assert chunk_layout(1251, cfg) == (1257, 1, 256) and steps(1251) == 78     # 12.5 s: 1001 + 263 -> 16
    assert chunk_layout(2001, cfg) == (2002, 2, 0) and steps(2001) == 124      # 20 s
    assert chunk_layout(2301, cfg) == (2290, 2, 288) and steps(2301) == 142    # 23 s: 302 frames -> 18
    assert steps(1500) == 62 + 31            # the later release's per-chunk padding would give 62 + 32
    assert chunk_layout(13, cfg) == (16, 0, 16) and steps(13) == 1
    # a last chunk under 16 frames (the official code raises) is dropped: 10.01-10.08 s, 20.02-20.09 s
    for f in range(1002, 1009):
        assert chunk_layout(f, cfg) == (1001, 1, 0), f
    for f in range(2003, 2017):
        assert chunk_layout(f, cfg) == (2002, 2, 0), f
    assert chunk_layout(1009, cfg) == (1017, 1, 16)


def test_last_chunk_under_16_frames_is_dropped():
    """chunk_frames=50 (not a multiple of 16, like 1001): 51 frames -> padded 64 -> a 14-frame last
    chunk, which gives no time step; the features are those of the first chunk alone."""
    cfg = M2DConfig(in_channels=1, **dict(SMALL, chunk_frames=50))
    tagger = Tagger(cfg, random_variables(cfg, 2))
    out = tagger.intermediates(wave(4, 1, 1, 320 * 50))
    lms = np.asarray(out["lms"])[0]                    # [1, 80, 51]
    assert lms.shape[-1] == 51
    feats = np.asarray(out["features"])[0]
    assert feats.shape == (1, 3, 320)
    np.testing.assert_allclose(feats, encode_chunk(tagger, lms[..., :48]), rtol=2e-5, atol=2e-5)


def test_long_input_is_encoded_chunk_by_chunk(tagger4):
    n = 320 * 150                                 # 151 frames: 2 full chunks of 64 + 23 -> 32
    out = tagger4.intermediates(wave(1, 1, 4, n))
    lms = np.asarray(out["lms"])[0]               # [4, 80, 151]
    feats = np.asarray(out["features"])[0]        # [4, time, 320]
    assert feats.shape == (4, 4 + 4 + 2, 320)
    padded = np.pad(lms, ((0, 0), (0, 0), (0, 9)))
    parts = [encode_chunk(tagger4, padded[..., a:b]) for a, b in ((0, 64), (64, 128), (128, 160))]
    np.testing.assert_allclose(feats, np.concatenate(parts, axis=1), rtol=2e-5, atol=2e-5)


def test_short_chunk_uses_first_pos_embed_columns(tagger4):
    params = tagger4.variables["params"]["encoder"]
    lms = jnp.asarray(np.random.default_rng(3).standard_normal((1, 80, 32)), jnp.float32)  # 2 columns
    enc = jitted_encoder(tagger4.cfg)                     # one program for the three calls, not op by op
    base = np.asarray(enc({"params": params}, lms))
    grid = np.asarray(params["pos_embed"][0, 1:]).reshape(5, 4, 64)

    def with_grid(g):
        pe = np.concatenate([np.asarray(params["pos_embed"][0, :1]), g.reshape(20, 64)])[None]
        return np.asarray(enc({"params": {**params, "pos_embed": jnp.asarray(pe)}}, lms))

    kick = np.random.default_rng(4).standard_normal(64).astype(np.float32)  # not constant: LayerNorm
    g = grid.copy()                                                           # would remove a constant
    g[:, 2:] += kick                              # columns a 2-column chunk must not see
    np.testing.assert_array_equal(with_grid(g), base)
    g = grid.copy()
    g[1, 1] += kick                                # frequency row 1, time column 1: it must see this
    assert np.abs(with_grid(g) - base).max() > 1e-3


def test_one_channel_tagger_reads_channel_0(tagger1):
    w = wave(2, 2, 4, 16000)
    ref = np.asarray(tagger1(w))
    w2 = w.copy()
    w2[:, 1:] = wave(9, 2, 3, 16000)
    np.testing.assert_array_equal(np.asarray(tagger1(w2)), ref)
    np.testing.assert_allclose(np.asarray(tagger1(w[:, :1])), ref, rtol=1e-5, atol=1e-6)
    w3 = w.copy()
    w3[:, 0] *= 0.5
    assert np.abs(np.asarray(tagger1(w3)) - ref).max() > 1e-4


def test_four_channel_order_matters(tagger4):
    w = wave(4, 1, 4, 16000)
    a, b = np.asarray(tagger4(w)), np.asarray(tagger4(w[:, ::-1].copy()))
    assert np.abs(a - b).max() > 1e-4             # channel-major concat: channels are not pooled


def test_batch_equals_per_clip(tagger4):
    w = wave(5, 3, 4, 16000)
    batch = np.asarray(tagger4(w))
    single = np.concatenate([np.asarray(tagger4(w[i:i + 1])) for i in range(3)])
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-5)


def test_apply_fn_is_stable_and_reads_only_its_arguments(tagger4):
    """apply_fn is one object (callers may jit it once) and depends only on the variables passed: a
    bias added to one class of the last head layer moves exactly that logit."""
    assert tagger4.apply_fn is tagger4.apply_fn
    w = wave(6, 2, 4, 16000)
    fn = jax.jit(tagger4.apply_fn)
    base = np.asarray(fn(tagger4.variables, w))
    moved = jax.tree.map(lambda a: a, tagger4.variables)
    moved["params"]["head"]["tracks_1_3"]["bias"] = moved["params"]["head"]["tracks_1_3"]["bias"].at[7].add(0.5)
    out = np.asarray(fn(moved, w))
    delta = np.zeros_like(base)
    delta[:, 1, 7] = 0.5
    np.testing.assert_allclose(out, base + delta, rtol=1e-6, atol=1e-6)
    assert tagger4.num_params > 0


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 16000), np.float32), "batch, channels, samples"),
    (np.zeros((1, 2, 16000), np.float32), "needs 4 channels"),
    (np.zeros((1, 4, 100), np.float32), "too short"),
    (np.zeros((1, 4, 16000), np.int16), "floating point"),
    (np.full((1, 4, 16000), np.nan, np.float32), "NaN or infinite"),
])
def test_bad_input_is_a_one_line_error(tagger4, bad, match):
    with pytest.raises(AudioError, match=match) as e:
        tagger4(bad)
    assert "\n" not in str(e.value)


def test_one_channel_tagger_rejects_no_channels(tagger1):
    with pytest.raises(AudioError):
        tagger1(np.zeros((1, 0, 16000), np.float32))


def test_attention_equals_timm_multi_head_attention_in_float64():
    """The head-by-head form reads qkv as timm lays it out ([3, heads, head_dim] along the last axis)."""
    from s5jax.models.m2d import Attention

    cfg = small_cfg(4)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, cfg.embed_dim)).astype(np.float32)
    params = jax.jit(Attention(cfg).init)(jax.random.PRNGKey(0), jnp.asarray(x))["params"]   # not op by op
    params = jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape).astype(np.float32) * 0.2, params)
    ours = np.asarray(jax.jit(Attention(cfg).apply)({"params": params}, jnp.asarray(x)), np.float64)

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    b, n, d = x.shape
    h, hd = cfg.num_heads, d // cfg.num_heads
    qkv = (x @ p["qkv"]["kernel"] + p["qkv"]["bias"]).reshape(b, n, 3, h, hd).transpose(2, 0, 3, 1, 4)
    att = np.einsum("bhqe,bhke->bhqk", qkv[0], qkv[1]) / np.sqrt(hd)
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bhke->bqhe", att, qkv[2]).reshape(b, n, d)
    want = out @ p["proj"]["kernel"] + p["proj"]["bias"]
    assert np.linalg.norm(ours - want) / np.linalg.norm(want) < 1e-5
