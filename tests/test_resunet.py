"""Fast tests of the separator: STFT/ISTFT, a small ResUNet, the Separator API and its input errors."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5jax import checkpoint, stft
from s5jax.cli import main
from s5jax.errors import CheckpointError, S5Error
from s5jax.models.resunet import ResUNetConfig
from s5jax.official.resunet import official_keys
from s5jax.separator import Separator, query_vector
import tiny_system

SMALL = ResUNetConfig(channels=(4, 8), pools=((2, 2), (1, 2)), bottleneck_channels=8, condition_dim=16)


def random_variables(cfg: ResUNetConfig, seed: int = 0):
    """Random weights for every variable of a Separator under `cfg` (tiny_system.random_variables)."""
    return tiny_system.random_variables(Separator, cfg, seed)


@pytest.fixture(scope="module")
def small_separator():
    return Separator(SMALL, random_variables(SMALL))


def test_random_variables_cover_every_kind_of_weight():
    """The fixture's weights: every variable of the model (the shapes init gives), none constant."""
    variables = random_variables(SMALL)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, Separator.expected_variables(SMALL))
    assert set(variables) == {"params", "batch_stats"}
    leaves = jax.tree.leaves(variables)
    assert len(leaves) > 50 and all(a.dtype == np.float32 and np.ptp(a) > 0 for a in leaves if a.size > 1)


def _noise(batch, samples, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal((batch, 4, samples))).astype(np.float32)


# ------------------------------------------------------------------ STFT / ISTFT
def test_stft_matches_numpy_rfft():
    x = np.random.default_rng(1).standard_normal((2, 5000)).astype(np.float32)
    re, im = stft.stft(jnp.asarray(x))
    assert re.shape == (2, 5000 // 160 + 1, 513)
    padded = np.pad(x.astype(np.float64), ((0, 0), (512, 512)), mode="reflect")
    frames = np.stack([padded[:, t * 160:t * 160 + 1024] for t in range(re.shape[1])], axis=1)
    ref = np.fft.rfft(frames * stft.hann_window(1024), axis=-1)
    err = np.linalg.norm(np.asarray(re) + 1j * np.asarray(im) - ref) / np.linalg.norm(ref)
    assert err < 1e-6


def test_istft_equals_official_conv_form():
    """The FFT ISTFT equals torchlibrosa's form (mirrored spectrum, conv kernels, fold, window sum) in
    float64, on an arbitrary spectrum (not the STFT of a signal; imaginary DC/Nyquist parts non-zero)."""
    rng = np.random.default_rng(3)
    t, n_fft, hop, length = 12, 1024, 160, 1500
    real, imag = rng.standard_normal((2, 2, t, n_fft // 2 + 1))
    full_re = np.concatenate([real, real[..., -2:0:-1]], axis=-1)
    full_im = np.concatenate([imag, -imag[..., -2:0:-1]], axis=-1)
    ir, ii = (k[:, :, 0].astype(np.float64) for k in stft.istft_conv_kernels(n_fft))
    frames = full_re @ ir.T - full_im @ ii.T                        # [2, t, n_fft]
    out = np.zeros((2, (t - 1) * hop + n_fft))
    win = np.zeros((t - 1) * hop + n_fft)
    for j in range(t):
        out[:, j * hop:j * hop + n_fft] += frames[:, j]
        win[j * hop:j * hop + n_fft] += stft.ola_window(n_fft)
    ref = (out / np.maximum(win, 1e-11))[:, n_fft // 2:n_fft // 2 + length]
    ours = np.asarray(stft.istft(jnp.asarray(real, jnp.float32), jnp.asarray(imag, jnp.float32), length))
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-6


def test_stft_equals_official_conv_form():
    """The FFT STFT equals the official conv kernels applied to the reflect-padded frames (float64)."""
    x = np.random.default_rng(4).standard_normal((3, 4000))
    re, im = stft.stft(jnp.asarray(x, jnp.float32))
    padded = np.pad(x, ((0, 0), (512, 512)), mode="reflect")
    frames = np.stack([padded[:, t * 160:t * 160 + 1024] for t in range(re.shape[1])], axis=1)
    kr, ki = (k[:, 0, :].astype(np.float64) for k in stft.stft_conv_kernels(1024))
    for ours, kernel in ((re, kr), (im, ki)):
        ref = frames @ kernel.T
        assert np.linalg.norm(np.asarray(ours) - ref) / np.linalg.norm(ref) < 1e-6


@pytest.mark.parametrize("samples", [513, 1000, 4801, 32000])
def test_stft_istft_round_trip(samples):
    # jitted: op by op, each length compiled each of the STFT's and ISTFT's operations on its own
    x = np.random.default_rng(samples).standard_normal((3, samples)).astype(np.float32)
    re, im = jax.jit(stft.stft)(jnp.asarray(x))
    y = np.asarray(jax.jit(stft.istft, static_argnums=2)(re, im, samples))
    assert y.shape == x.shape
    assert np.abs(y - x).max() < 1e-5


def test_overlap_add_equals_naive_sum():
    frames = np.random.default_rng(2).standard_normal((2, 9, 1024)).astype(np.float32)
    ref = np.zeros((2, 8 * 160 + 1024), np.float32)
    for t in range(9):
        ref[:, t * 160:t * 160 + 1024] += frames[:, t]
    np.testing.assert_allclose(np.asarray(stft.overlap_add(jnp.asarray(frames), 160)), ref, atol=1e-5)


def test_front_end_kernels_equal_official_buffers(golden):
    fixed = np.load(golden / "resunet" / "fixed.npz")
    real, imag = stft.stft_conv_kernels(1024)
    ireal, iimag = stft.istft_conv_kernels(1024)
    for key, ours in [("stft.conv_real.weight", real), ("stft.conv_imag.weight", imag),
                      ("istft.conv_real.weight", ireal), ("istft.conv_imag.weight", iimag),
                      ("istft.ola_window", stft.ola_window(1024))]:
        np.testing.assert_allclose(ours, fixed[f"model.base.{key}"], atol=1e-6, err_msg=key)


def test_official_keys_equal_manifest(golden):
    manifest = json.loads((golden / "resunet" / "manifest.json").read_text())
    assert sorted(official_keys(ResUNetConfig())) == sorted(k[len("model."):] for k in manifest)
    assert len(manifest) == 342


# ------------------------------------------------------------------ small model
# The Separator's calls below use two input shapes, [3, 4, 4000] and [1, 4, 4000] (what each checks
# does not depend on the length): one compile of the small model each, shared (six shapes before).
@pytest.mark.parametrize("samples", [1001, 4799, 6403])
def test_shapes_for_odd_lengths(small_separator, samples):
    mix = _noise(2, samples)
    # jitted: applied op by op (eager), each of the model's many primitives was compiled on its own
    stems, aux = jax.jit(small_separator.module.apply)(small_separator.variables, mix,
                                                       query_vector(np.array([[1, 2, 3], [4, 5, 6]])))
    frames = samples // 160 + 1
    assert stems.shape == (2, 3, samples) and stems.dtype == jnp.float32
    assert aux["mag"].shape == (2, 4, frames, 513)
    assert aux["mask_mag"].shape == (2, 3, 4, frames, 513)
    assert np.isfinite(np.asarray(stems)).all()


def test_silent_slot_is_exactly_zero(small_separator):
    stems = np.asarray(small_separator(_noise(3, 4000), np.array([[18, 4, 18], [7, 18, 0], [18, 18, 18]])))
    assert np.all(stems[0, 0] == 0) and np.all(stems[0, 2] == 0) and np.all(stems[1, 1] == 0)
    assert np.all(stems[2] == 0)
    assert np.abs(stems[0, 1]).max() > 0 and np.abs(stems[1, 0]).max() > 0 and np.abs(stems[1, 2]).max() > 0


def test_batch_equals_per_clip(small_separator):
    mix = _noise(3, 4000, seed=5)
    queries = np.array([[3, 15, 18], [15, 15, 0], [1, 2, 3]])
    batched = np.asarray(small_separator(mix, queries))
    for i in range(3):
        single = np.asarray(small_separator(mix[i:i + 1], queries[i:i + 1]))[0]
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_same_class_twice(small_separator):
    q = np.array([[15, 15, 2]])
    qv = np.asarray(query_vector(q))
    assert qv.shape == (1, 54) and qv[0, 15] == 1 and qv[0, 18 + 15] == 1 and qv[0, 36 + 2] == 1 and qv.sum() == 3
    stems = np.asarray(small_separator(_noise(1, 4000), q))
    assert all(np.abs(stems[0, s]).max() > 0 for s in range(3))
    # the slots are separate outputs of the U-Net: same query, different stems
    assert not np.allclose(stems[0, 0], stems[0, 1])


def test_soft_query_vector_and_gradient(small_separator):
    mix = _noise(1, 4000)
    soft = np.zeros((1, 54), np.float32)
    soft[0, 2], soft[0, 7], soft[0, 36 + 5] = 0.6, 0.4, 1.0        # slot 1 all zero: silent
    stems = np.asarray(small_separator.separate_vector(mix, soft))[0]
    assert not stems[1].any() and np.abs(stems[0]).max() > 0 and np.abs(stems[2]).max() > 0
    loss = lambda qv: jnp.sum(small_separator.apply_fn(small_separator.variables, mix, qv) ** 2)
    g = jax.jit(jax.grad(loss))(jnp.full((1, 54), 1 / 18, jnp.float32))
    assert g.shape == (1, 54) and np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0


def test_checkpoint_round_trip(small_separator, tmp_path):
    checkpoint.save(tmp_path / "sep", "separator", SMALL.to_dict(), small_separator.variables)
    loaded = Separator.from_checkpoint(tmp_path / "sep")
    assert loaded.config == SMALL
    mix, q = _noise(1, 4000), np.array([[0, 9, 18]])
    np.testing.assert_array_equal(np.asarray(loaded(mix, q)), np.asarray(small_separator(mix, q)))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("mix, queries, message", [
    (np.zeros((1, 2, 4000), np.float32), [[1, 2, 3]], "2 channels"),
    (np.zeros((4, 4000), np.float32), [[1, 2, 3]], "[batch, 4 channels, samples]"),
    (np.zeros((1, 4, 300), np.float32), [[1, 2, 3]], "too short"),
    (np.full((1, 4, 4000), np.nan, np.float32), [[1, 2, 3]], "NaN"),
    (np.zeros((1, 4, 4000), np.int16), [[1, 2, 3]], "floating point"),
    (np.zeros((1, 4, 4000), np.float32), [[1, 2, 19]], "0..18"),
    (np.zeros((1, 4, 4000), np.float32), [[-1, 2, 3]], "0..18"),
    (np.zeros((1, 4, 4000), np.float32), [[1, 2]], "3 slots"),
    (np.zeros((2, 4, 4000), np.float32), [[1, 2, 3]], "batch=2"),
    (np.zeros((1, 4, 4000), np.float32), [[1.0, 2.0, 3.0]], "integer"),
])
def test_bad_input_is_a_one_line_error(small_separator, mix, queries, message):
    with pytest.raises(S5Error) as e:
        small_separator(mix, np.asarray(queries))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_query_vector(small_separator):
    with pytest.raises(S5Error, match="query vector must be"):
        small_separator.separate_vector(_noise(1, 2000), np.zeros((1, 18), np.float32))
    with pytest.raises(S5Error, match="NaN"):
        small_separator.separate_vector(_noise(1, 2000), np.full((1, 54), np.nan, np.float32))


def test_tagger_checkpoint_is_not_a_separator(tmp_path):
    checkpoint.save(tmp_path / "tagger", "tagger-1ch", {"anything": 1}, {"params": {"w": np.zeros(2, np.float32)}})
    with pytest.raises(CheckpointError, match="holds a tagger-1ch checkpoint, expected separator"):
        Separator.from_checkpoint(tmp_path / "tagger")


def test_convert_tagger_keys_as_separator_fails(tmp_path, capsys):
    from conftest import write_lightning_ckpt

    sd = {"model.backbone.blocks.0.attn.qkv.weight": np.zeros((6, 2), np.float32),
          "model.head.weight": np.zeros((3, 2), np.float32)}
    path = write_lightning_ckpt(sd, tmp_path / "tagger.ckpt", extra=False)
    assert main(["convert", path, str(tmp_path / "out"), "--kind", "separator"]) == 2
    err = capsys.readouterr().err
    assert "not a separator" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_up_conv_is_the_transposed_convolution():
    """UpConv (matmul + pixel shuffle) equals the definition y[t*st+h, f*sf+w] = x[t, f] @ k[h, w]."""
    from s5jax.models.resunet import UpConv

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    for factor in ((2, 2), (1, 2)):
        up = UpConv(SMALL, 6, factor)
        k = rng.standard_normal((*factor, 4, 6)).astype(np.float32)
        y = np.asarray(up.apply({"params": {"kernel": k}}, x))
        want = np.zeros((2, 3 * factor[0], 5 * factor[1], 6), np.float32)
        for h in range(factor[0]):
            for w in range(factor[1]):
                want[:, h::factor[0], w::factor[1]] = x @ k[h, w]
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_channel_mix_is_the_one_by_one_convolution():
    """out_conv as a weighted channel sum equals the official 1x1 conv (C -> 1, bias) on the same
    parameters, over the [B, T, F, S, C] layout the mask head feeds it."""
    from flax import linen as nn

    from s5jax.models.resunet import ChannelMix

    rng = np.random.default_rng(5)
    z = rng.standard_normal((2, 7, 9, 3, 4)).astype(np.float32)
    params = {"kernel": rng.standard_normal((1, 1, 4, 1)).astype(np.float32),
              "bias": rng.standard_normal((1,)).astype(np.float32)}
    got = np.asarray(ChannelMix().apply({"params": params}, z))
    want = np.asarray(nn.Conv(1, (1, 1)).apply({"params": params}, z.reshape(2, 7, 27, 4))).reshape(2, 7, 9, 3)
    assert got.shape == (2, 7, 9, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert jax.tree.map(np.shape, ChannelMix().init(jax.random.PRNGKey(0), z)["params"]) == \
        {"kernel": (1, 1, 4, 1), "bias": (1,)}


@pytest.mark.parametrize("windows", [2, 4])
def test_convolution_in_time_windows_equals_whole(windows):
    """A 3x3 convolution run over time windows stacked on the batch axis equals the plain one."""
    from flax import linen as nn

    from s5jax.models.resunet import conv_in_windows, time_windows

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 16, 6, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    whole = nn.Conv(5, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)
    cut = nn.Conv(5, (3, 3), padding=((0, 0), (1, 1)), use_bias=False)
    want = np.asarray(whole.apply({"params": {"kernel": k}}, x))
    got = np.asarray(cut.apply({"params": {"kernel": k}}, x, method=lambda m, z: conv_in_windows(m, z, windows)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert time_windows(2016, 512) == 4 and time_windows(1008, 256) == 1 and time_windows(2018, 512) == 1
