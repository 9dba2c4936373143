"""M2D audio taggers (official DCASE 2026 Task 4 baseline) in Flax Linen, with their conversion rules.

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

import re
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..conversion import Rule, abstract_variables, apply_rules, require_fixed
from ..errors import CheckpointError
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


# ---------------------------------------------------------------------------------- conversion
def _encoder_rules(prefix: str) -> list[Rule]:
    """Rules for the bare M2D encoder keys under `prefix` ('' for the .pth, 'backbone.' in a tagger)."""
    p = re.escape(prefix)
    e = "params/encoder"
    return [
        Rule(rf"{p}cls_token", f"{e}/cls_token"),
        Rule(rf"{p}pos_embed", f"{e}/pos_embed"),
        Rule(rf"{p}norm_stats", "fixed/norm_stats"),  # [mean, std] of the log-mel; goes to the config
        Rule(rf"{p}patch_embed\.proj\.weight", f"{e}/patch_embed/kernel", "conv2d"),
        Rule(rf"{p}patch_embed\.proj\.bias", f"{e}/patch_embed/bias"),
        Rule(rf"{p}blocks\.(\d+)\.(norm1|norm2)\.weight", e + "/blocks_{0}/{1}/scale"),
        Rule(rf"{p}blocks\.(\d+)\.(norm1|norm2)\.bias", e + "/blocks_{0}/{1}/bias"),
        Rule(rf"{p}blocks\.(\d+)\.attn\.(qkv|proj)\.weight", e + "/blocks_{0}/attn/{1}/kernel", "linear"),
        Rule(rf"{p}blocks\.(\d+)\.attn\.(qkv|proj)\.bias", e + "/blocks_{0}/attn/{1}/bias"),
        Rule(rf"{p}blocks\.(\d+)\.mlp\.(fc1|fc2)\.weight", e + "/blocks_{0}/mlp/{1}/kernel", "linear"),
        Rule(rf"{p}blocks\.(\d+)\.mlp\.(fc1|fc2)\.bias", e + "/blocks_{0}/mlp/{1}/bias"),
        Rule(rf"{p}norm\.weight", f"{e}/norm/scale"),
        Rule(rf"{p}norm\.bias", f"{e}/norm/bias"),
    ]


def _front_end_rules(prefix: str) -> list[Rule]:
    p = re.escape(prefix)
    return [
        # not learned: we recompute them and only check the checkpoint agrees
        Rule(rf"{p}to_spec\.stft\.(wsin|wcos|window_mask)", "fixed/stft_{0}"),
        Rule(rf"{p}to_spec\.mel_basis", "fixed/mel_basis"),
        # BatchNorm of the generic M2D runtime (`head_norm`): the tagger heads never call it
        Rule(rf"{p}head_norm\.(running_mean|running_var|num_batches_tracked)", None),
    ]


def _head_rules() -> list[Rule]:
    h = "params/head"
    return [
        Rule(r"head\.m2d_out_norm\.running_mean", "batch_stats/head/m2d_out_norm/mean"),
        Rule(r"head\.m2d_out_norm\.running_var", "batch_stats/head/m2d_out_norm/var"),
        Rule(r"head\.m2d_out_norm\.num_batches_tracked", None),  # training counter, no effect at inference
        Rule(r"head\.linear\.0\.weight", f"{h}/linear_0/kernel", "linear"),
        Rule(r"head\.linear\.0\.bias", f"{h}/linear_0/bias"),
        Rule(r"head\.linear\.1\.weight", f"{h}/linear_1/scale"),           # LayerNorm
        Rule(r"head\.linear\.1\.bias", f"{h}/linear_1/bias"),
        Rule(r"head\.tracks\.(\d+)\.(0|3)\.weight", h + "/tracks_{0}_{1}/kernel", "linear"),
        Rule(r"head\.tracks\.(\d+)\.(0|3)\.bias", h + "/tracks_{0}_{1}/bias"),
        Rule(r"head\.tracks\.(\d+)\.1\.weight", h + "/tracks_{0}_1/scale"),  # LayerNorm (2 is ReLU)
        Rule(r"head\.tracks\.(\d+)\.1\.bias", h + "/tracks_{0}_1/bias"),
    ]


def conversion_rules(kind: str) -> list[Rule]:
    """The rule table for a state_dict with the Lightning `model.` prefix removed.

    tagger-1ch: backbone.*, to_spec.*, head_norm.*, head.*   (M2dAt)
    tagger-4ch: m2d.backbone.*, m2d.to_spec.*, m2d.head_norm.*, head.*   (M2dAtSpatial)
    m2d-encoder: bare encoder keys (blocks.0.attn.qkv.weight, ...) of the M2D .pth; strict — any
    decoder / target-encoder key of a pre-training file is refused rather than guessed at.
    """
    if kind == "tagger-1ch":
        return _encoder_rules("backbone.") + _front_end_rules("") + _head_rules()
    if kind == "tagger-4ch":
        return _encoder_rules("m2d.backbone.") + _front_end_rules("m2d.") + _head_rules()
    if kind == "m2d-encoder":
        return _encoder_rules("")
    raise ValueError(f"unknown M2D checkpoint kind {kind!r}")


def official_keys(cfg: M2DConfig, kind: str) -> list[str]:
    """Every key the official state_dict of `kind` holds for `cfg` (Lightning `model.` prefix removed).
    Used to name a missing key in torch terms; for m2d-encoder `norm_stats` is optional, so not listed."""
    enc = {"tagger-1ch": "backbone.", "tagger-4ch": "m2d.backbone.", "m2d-encoder": ""}[kind]
    keys = [f"{enc}cls_token", f"{enc}pos_embed"] + ([f"{enc}norm_stats"] if kind != "m2d-encoder" else [])
    keys += [f"{enc}patch_embed.proj.{w}" for w in ("weight", "bias")]
    for i in range(cfg.depth):
        keys += [f"{enc}blocks.{i}.{m}.{w}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1",
                                                      "mlp.fc2") for w in ("weight", "bias")]
    keys += [f"{enc}norm.{w}" for w in ("weight", "bias")]
    if kind == "m2d-encoder":
        return keys
    bn = ("running_mean", "running_var", "num_batches_tracked")
    rt = "m2d." if kind == "tagger-4ch" else ""
    keys += [f"{rt}head_norm.{b}" for b in bn] + [f"head.m2d_out_norm.{b}" for b in bn]
    keys += [f"head.linear.{j}.{w}" for j in (0, 1) for w in ("weight", "bias")]
    keys += [f"head.tracks.{t}.{j}.{w}" for t in range(cfg.num_tracks) for j in (0, 1, 3) for w in ("weight", "bias")]
    keys += [f"{rt}to_spec.mel_basis"] + [f"{rt}to_spec.stft.{b}" for b in ("wsin", "wcos", "window_mask")]
    return keys


def _infer_config(sd: Mapping[str, np.ndarray], kind: str, source: str) -> M2DConfig:
    enc = {"tagger-1ch": "backbone.", "tagger-4ch": "m2d.backbone.", "m2d-encoder": ""}[kind]

    def get(key):
        if key not in sd:
            raise CheckpointError(f"{source}: missing key {key!r} (not a complete {kind} checkpoint)")
        return np.asarray(sd[key])

    depth = 1 + max((int(m.group(1)) for k in sd
                     if (m := re.fullmatch(re.escape(enc) + r"blocks\.(\d+)\..*", k))), default=-1)
    if depth == 0:
        raise CheckpointError(f"{source}: no encoder blocks ({enc}blocks.N.*) found")
    proj = get(f"{enc}patch_embed.proj.weight")
    if proj.ndim != 4 or proj.shape[1] != 1 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(f"{source}: key {enc + 'patch_embed.proj.weight'!r} has shape {proj.shape}, "
                              "expected [D, 1, P, P]")
    d, patch = proj.shape[0], proj.shape[2]
    fc1 = get(f"{enc}blocks.0.mlp.fc1.weight")
    n_pos = get(f"{enc}pos_embed").shape[1] - 1
    n_mels = 80
    f = n_mels // patch
    if n_pos % f:
        raise CheckpointError(f"{source}: pos_embed has {n_pos} patch positions, not a multiple of {f}")
    # the official grid is 80x1001 frames; only the number of time columns matters to the model
    chunk_frames = 1001 if n_pos // f == 1001 // patch else (n_pos // f) * patch
    kw = dict(embed_dim=int(d), depth=depth, num_heads=max(1, int(d) // 64), mlp_dim=int(fc1.shape[0]),
              patch=int(patch), chunk_frames=chunk_frames, n_mels=n_mels)
    if kind != "m2d-encoder":
        lin0 = get("head.linear.0.weight")
        out = get("head.tracks.0.3.weight")
        tracks = 1 + max(int(m.group(1)) for k in sd if (m := re.fullmatch(r"head\.tracks\.(\d+)\..*", k)))
        in_ch = lin0.shape[1] // (f * d)
        if lin0.shape[1] != in_ch * f * d or in_ch not in (1, 4) or in_ch != (4 if kind == "tagger-4ch" else 1):
            raise CheckpointError(f"{source}: key 'head.linear.0.weight' has shape {lin0.shape}, which does "
                                  f"not fit a {kind} with {f}x{d} encoder features")
        kw.update(in_channels=int(in_ch), head_dim=int(lin0.shape[0]), num_tracks=tracks,
                  track_dim=int(out.shape[1]), num_classes=int(out.shape[0]))
    stats_key = f"{enc}norm_stats"
    if stats_key in sd:
        stats = np.asarray(sd[stats_key], dtype=np.float64).reshape(-1)
        if stats.shape != (2,) or not np.all(np.isfinite(stats)) or stats[1] <= 0:
            raise CheckpointError(f"{source}: key {stats_key!r} must be [mean, std>0], got {stats}")
        # shortest decimal of the float32 value (-7.1, not -7.0999999): same float32 when applied
        kw.update(norm_mean=float(str(np.float32(stats[0]))), norm_std=float(str(np.float32(stats[1]))))
    elif kind != "m2d-encoder":
        raise CheckpointError(f"{source}: missing key {stats_key!r}")
    try:
        return M2DConfig(**kw)
    except ValueError as e:
        raise CheckpointError(f"{source}: unsupported model dimensions ({e})") from None


def convert_tagger_state_dict(state_dict: Mapping[str, np.ndarray], kind: str,
                              source: str = "checkpoint") -> tuple[dict, dict]:
    """Official state_dict (Lightning `model.` prefix removed) -> (config dict, variables).

    kind: "tagger-1ch" | "tagger-4ch" -> variables {"params": {encoder, head}, "batch_stats": {head}};
          "m2d-encoder" -> variables {"params": {"encoder": ...}} (ViTEncoder layout, see module doc).
    Raises CheckpointError naming `source` and the key on any mismatch.
    """
    cfg = _infer_config(state_dict, kind, source)
    missing = [k for k in official_keys(cfg, kind) if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r}" + (f" and {len(missing) - 1} more"
                              if len(missing) > 1 else "") + f" (not a complete {kind} checkpoint)")
    # small concrete examples: abstract_variables traces with them, nothing big is computed
    example_chunk = np.zeros((1, cfg.n_mels, cfg.chunk_frames), np.float32)
    if kind == "m2d-encoder":
        expected = {"params": {"encoder": abstract_variables(ViTEncoder(cfg), example_chunk)["params"]}}
    else:
        wav = np.zeros((1, cfg.in_channels, cfg.hop * 16), np.float32)
        expected = abstract_variables(M2DTagger(cfg), wav)
    variables, fixed = apply_rules(state_dict, conversion_rules(kind), expected, source)
    if kind != "m2d-encoder":
        for name, ours in front_end_buffers(cfg).items():
            require_fixed(fixed, name, ours, source)
    return cfg.to_dict(), variables
