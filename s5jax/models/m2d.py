"""M2D audio taggers (official DCASE 2026 Task 4 baseline) in Flax Linen (conversion table: s5jax/official/m2d.py).

    waveform [batch, channels, samples] (32 kHz)
      -> log_mel per channel           [batch*ch, 80, frames]      (pure jnp, fixed numpy kernels)
      -> ViT-base encoder per chunk    [batch*ch, time, 5*768]     (timm semantics, frequency-major)
      -> concat channels per time step [batch, time, ch*3840]      (channel-major; 4-ch only)
      -> mean over time, BatchNorm1d (affine=False, running stats), per-track MLP heads
      -> logits [batch, 3 tracks, 19]  (18 classes + silence)

The 1-ch tagger (`M2dAt`) reads channel 0 of whatever it gets; the 4-ch one (`M2dAtSpatial`) runs
all four channels through one shared encoder (channels folded into the batch).

Variable layout (also what the m2d-encoder conversion writes, under `params/encoder` only):
    params/encoder/{cls_token [1,1,D], pos_embed [1,1+F*Tc,D], patch_embed/{kernel [16,16,1,D], bias},
                    blocks_N/{norm1, attn/{qkv, proj}, norm2, mlp/{fc1, fc2}}, norm}
    params/head/{linear_0, linear_1 (LayerNorm), tracks_T_0, tracks_T_1 (LayerNorm), tracks_T_3}
    batch_stats/head/m2d_out_norm/{mean, var}
"""
from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .batchnorm import TorchBatchNorm
from .configs import M2DConfig
from ..stft import hann_window, stft  # shared with the separator front end

_EPS = float(np.finfo(np.float32).eps)  # the official log offset: float32 machine epsilon


# ------------------------------------------------------------------------------ front end (numpy)
def stft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nnAudio STFT buffers: wsin, wcos [n_fft//2+1, 1, n_fft] (windowed), window_mask [1, n_fft, 1]."""
    win = hann_window(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2.0 * np.pi * k * np.arange(n_fft)[None, :] / n_fft
    wsin = (np.sin(phase) * win)[:, None, :].astype(np.float32)
    wcos = (np.cos(phase) * win)[:, None, :].astype(np.float32)
    return wsin, wcos, win.reshape(1, n_fft, 1).astype(np.float32)


def _hz_to_mel(f):
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney mel filters with area normalisation [n_mels, n_fft//2+1], float32
    (librosa.filters.mel(htk=False, norm=1/'slaney'), as nnAudio builds `mel_basis`)."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # area normalisation
    return weights.astype(np.float32)


def front_end_buffers(cfg: M2DConfig) -> dict[str, np.ndarray]:
    """The fixed buffers an official checkpoint holds, computed by us (names as `fixed/...` targets)."""
    wsin, wcos, window_mask = stft_kernels(cfg.n_fft)
    return {"stft_wsin": wsin, "stft_wcos": wcos, "stft_window_mask": window_mask,
            "mel_basis": mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)}


# ------------------------------------------------------------------------------- front end (jnp)
def log_mel(waveform: jax.Array, cfg: M2DConfig) -> jax.Array:
    """Normalised log-mel spectrogram: waveform [batch, samples] -> [batch, n_mels, frames],
    frames = 1 + samples // hop. Needs samples > n_fft // 2 (reflect padding)."""
    n_fft, hop = cfg.n_fft, cfg.hop
    # the same centred, reflect-padded, periodic-Hann STFT as the separator's front end (the DFT sign
    # convention differs from nnAudio's wsin, which the power spectrum does not see)
    real, imag = stft(waveform.astype(jnp.float32), n_fft, hop)
    power = real ** 2 + imag ** 2                                          # [batch, frames, bins]
    mel_basis = mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    mel = jnp.einsum("mk,bfk->bmf", jnp.asarray(mel_basis), power, precision=cfg.lax_precision)
    lms = jnp.log(mel + _EPS)
    return (lms - cfg.norm_mean) / cfg.norm_std


# ------------------------------------------------------------------------------------ encoder
class Attention(nn.Module):
    cfg: M2DConfig

    @nn.compact
    def __call__(self, x):
        """x [batch, tokens, D] -> [batch, tokens, D]"""
        cfg = self.cfg
        b, n, d = x.shape
        h = cfg.num_heads
        hd = d // h
        qkv = nn.Dense(3 * d, precision=cfg.lax_precision, name="qkv")(x)
        form = cfg.attention_form
        if form == "batched":                      # [batch, heads, tokens, hd] each
            q, k, v = (qkv.reshape(b, n, 3, h, hd)[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
            att = jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q * hd ** -0.5, k, precision=cfg.lax_precision),
                                 axis=-1)
            out = jnp.einsum("bhqk,bhkd->bhqd", att, v, precision=cfg.lax_precision)
            return nn.Dense(d, precision=cfg.lax_precision, name="proj")(out.transpose(0, 2, 1, 3).reshape(b, n, d))
        if form == "dot_product":                  # [batch, tokens, heads, hd] each
            q, k, v = (qkv.reshape(b, n, 3, h, hd)[:, :, i] for i in range(3))
            with jax.default_matmul_precision(cfg.precision):
                out = jax.nn.dot_product_attention(q, k, v, scale=hd ** -0.5)
            return nn.Dense(d, precision=cfg.lax_precision, name="proj")(out.reshape(b, n, d))
        per_head = qkv.reshape(b, n, 3, h, hd).transpose(3, 2, 0, 1, 4)     # [heads, (q, k, v), batch, tokens, hd]

        def one_head(qkv_h):
            q, k, v = qkv_h[0] * hd ** -0.5, qkv_h[1], qkv_h[2]            # each [batch, tokens, hd]
            att = jax.nn.softmax(jnp.matmul(q, k.swapaxes(-1, -2), precision=cfg.lax_precision), axis=-1)
            return jnp.matmul(att, v, precision=cfg.lax_precision)         # [batch, tokens, hd]

        # one head per step of a loop: on CPU the whole tagger runs ≈ 1.08x faster than
        # with the heads as one more batch axis (which XLA fuses, with the softmax, into one slow library
        # call); the same products in the same order, and a loop (unlike 12 unrolled heads) keeps the
        # compiled program small, so it loads from the compilation cache as fast as before
        out = jax.lax.map(one_head, per_head).transpose(1, 2, 0, 3).reshape(b, n, d)
        return nn.Dense(d, precision=cfg.lax_precision, name="proj")(out)


def gelu(x: jax.Array) -> jax.Array:
    """timm's nn.GELU (exact form) as torch computes it: x/2 * (1 + erf(x/sqrt 2)). jax.nn.gelu's exact
    form uses erfc(-x/sqrt 2) instead, 2.5x slower on CPU (2.5 vs 1.0 ms as a lone op on the
    4-ch tagger's [4, 311, 3072] activations); this is torch's own formula, op for op."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.float32(np.sqrt(0.5))))


class Mlp(nn.Module):
    cfg: M2DConfig

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        x = nn.Dense(cfg.mlp_dim, precision=cfg.lax_precision, name="fc1")(x)
        x = gelu(x)
        return nn.Dense(cfg.embed_dim, precision=cfg.lax_precision, name="fc2")(x)


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    # use_fast_variance=False: mean((x-mu)^2) like torch, not E[x^2]-mu^2
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class Block(nn.Module):
    cfg: M2DConfig

    @nn.compact
    def __call__(self, x):
        x = x + Attention(self.cfg, name="attn")(_layer_norm(1e-6, "norm1")(x))
        return x + Mlp(self.cfg, name="mlp")(_layer_norm(1e-6, "norm2")(x))


class ViTEncoder(nn.Module):
    """M2D's ViT on one chunk: lms [batch, n_mels, frames<=chunk_frames] -> [batch, time, F*D]
    (time = frames // patch; feature index f*D + d)."""
    cfg: M2DConfig

    @nn.compact
    def __call__(self, lms):
        cfg = self.cfg
        f, d = cfg.freq_patches, cfg.embed_dim
        x = nn.Conv(d, (cfg.patch, cfg.patch), strides=(cfg.patch, cfg.patch), padding="VALID",
                    precision=cfg.lax_precision, name="patch_embed")(lms[..., None])  # [b, F, Tt, D]
        b, _, tt, _ = x.shape
        if tt > cfg.time_patches:
            raise ValueError(f"chunk of {tt} time patches exceeds the positional grid {cfg.time_patches}")
        x = x.reshape(b, f * tt, d)                                      # frequency-major tokens
        pos_embed = self.param("pos_embed", nn.initializers.normal(0.02), (1, 1 + f * cfg.time_patches, d))
        cls_token = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
        # a short chunk keeps the first time columns of the [F, Tc] positional grid
        grid = pos_embed[:, 1:].reshape(1, f, cfg.time_patches, d)[:, :, :tt]
        x = x + grid.reshape(1, f * tt, d)
        cls = jnp.broadcast_to(cls_token + pos_embed[:, :1], (b, 1, d))
        x = jnp.concatenate([cls, x], axis=1)
        for i in range(cfg.depth):
            x = Block(cfg, name=f"blocks_{i}")(x)
        x = _layer_norm(1e-6, "norm")(x)[:, 1:]                          # drop cls
        return x.reshape(b, f, tt, d).transpose(0, 2, 1, 3).reshape(b, tt, f * d)


def chunk_layout(frames: int, cfg: M2DConfig) -> tuple[int, int, int]:
    """How the baseline's `encode_lms` (its portable_m2d runtime) cuts `frames`: (frames the encoder
    reads, after right zero-padding; number of full chunks; frames of the last partial chunk, or 0).

    The whole frame axis is zero-padded to a multiple of `patch`, the chunk count is taken from the
    unpadded length (ceil(frames / chunk_frames)), and chunk i is padded frames [i*unit, (i+1)*unit).
    A chunk of l frames gives l // patch time steps, so the last chunk is trimmed to a multiple of
    `patch` (the trimmed frames never reach an output). A last chunk under `patch` frames (10.01-10.08 s,
    20.02-20.09 s, ...) makes the official code raise; here it is dropped (0 steps), so such a clip is
    tagged from its full chunks.
    """
    unit, p = cfg.chunk_frames, cfg.patch
    n_chunk = -(-frames // unit)
    padded = -(-frames // p) * p
    last = min(unit, padded - (n_chunk - 1) * unit)
    n_full = n_chunk if last == unit else n_chunk - 1
    rest = 0 if last == unit else last // p * p        # 0 also when the last chunk is under `patch`
    return n_full * unit + rest, n_full, rest


def encode_lms(encoder: ViTEncoder, lms: jax.Array, cfg: M2DConfig) -> jax.Array:
    """lms [batch, n_mels, frames] -> features [batch, time, F*D], chunks of chunk_frames encoded
    separately (full chunks folded into the batch) and concatenated along time."""
    b, m, frames = lms.shape
    used, n_full, rest = chunk_layout(frames, cfg)
    lms = jnp.pad(lms, ((0, 0), (0, 0), (0, max(0, used - frames))))
    unit = cfg.chunk_frames
    parts = []
    if n_full:
        full = lms[..., : n_full * unit].reshape(b, m, n_full, unit).transpose(0, 2, 1, 3)
        feats = encoder(full.reshape(b * n_full, m, unit))              # [b*n_full, Tc, F*D]
        parts.append(feats.reshape(b, n_full * feats.shape[1], feats.shape[2]))
    if rest:
        start = n_full * unit
        parts.append(encoder(lms[..., start: start + rest]))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)


# -------------------------------------------------------------------------------------- heads
class TaggerHead(nn.Module):
    """`average_linear` / `catchan_average_linear`: features [batch, time, in] -> logits [batch, tracks, classes]."""
    cfg: M2DConfig

    @nn.compact
    def __call__(self, features):
        cfg = self.cfg
        x = features.mean(axis=1)
        x = TorchBatchNorm(use_bias=False, use_scale=False, epsilon=1e-5, name="m2d_out_norm")(x)
        x = nn.Dense(cfg.head_dim, precision=cfg.lax_precision, name="linear_0")(x)
        x = nn.relu(_layer_norm(1e-5, "linear_1")(x))
        x = x.reshape(x.shape[0], cfg.num_tracks, cfg.head_dim // cfg.num_tracks)
        out = []
        for t in range(cfg.num_tracks):
            y = nn.Dense(cfg.track_dim, precision=cfg.lax_precision, name=f"tracks_{t}_0")(x[:, t])
            y = nn.relu(_layer_norm(1e-5, f"tracks_{t}_1")(y))
            out.append(nn.Dense(cfg.num_classes, precision=cfg.lax_precision, name=f"tracks_{t}_3")(y))
        return jnp.stack(out, axis=1)


class M2DTagger(nn.Module):
    """waveform [batch, channels, samples] -> (logits [batch, tracks, classes], intermediates).

    intermediates: lms [batch, ch, n_mels, frames], features [batch, ch, time, F*D],
    pooled [batch, ch*F*D] (time mean before the BatchNorm). ch = cfg.in_channels.
    """
    cfg: M2DConfig

    @nn.compact
    def __call__(self, waveform):
        cfg = self.cfg
        b, c_in, n = waveform.shape
        c = cfg.in_channels
        if c_in < c:
            raise ValueError(f"the {c}-channel tagger got {c_in} channels")
        wav = waveform[:, :c].reshape(b * c, n)            # 1-ch reads channel 0; channels -> batch
        lms = log_mel(wav, cfg)                            # [b*c, M, frames]
        feats = encode_lms(ViTEncoder(cfg, name="encoder"), lms, cfg)     # [b*c, time, F*D]
        tt = feats.shape[1]
        feats = feats.reshape(b, c, tt, cfg.feature_dim)
        cat = feats.transpose(0, 2, 1, 3).reshape(b, tt, c * cfg.feature_dim)  # channel-major
        logits = TaggerHead(cfg, name="head")(cat)
        inter = {"lms": lms.reshape(b, c, cfg.n_mels, -1), "features": feats, "pooled": cat.mean(axis=1)}
        return logits, inter
