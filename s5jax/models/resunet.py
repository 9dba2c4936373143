"""FiLM-conditioned ResUNet30 label-queried separator (the official DCASE 2026 Task 4 separator).

(mixture [batch, channels=4, samples], query_vector [batch, slots*classes = 54])
  -> stems [batch, slots=3, samples]  (one mono stem per query slot; a silent slot is exactly zero)

The query vector (three 18-dim one-hot slots) is embedded to a 512-d condition; every residual block
adds FiLM biases ("betas", Dense 512 -> C) after its BatchNorms. The U-Net maps the 4-channel
magnitude spectrogram to 3 masks (magnitude, phase real, phase imag) per slot and input channel; the
masked complex spectra of the 4 channels are mixed to one by `out_conv` and inverted per slot.

Flax layout is NHWC = [batch, time, freq, channels]; PyTorch's is [batch, channels, time, freq].
BatchNorm reads the `batch_stats` collection (inference mode unless that collection is mutable, see
models/batchnorm.py). Variable names mirror the official module tree (the FiLM betas live inside
the block they feed), so the conversion table (s5jax/official/resunet.py) is a direct, reviewable list.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from .. import stft as stft_lib
from .batchnorm import TorchBatchNorm
from .configs import ResUNetConfig

MASK_PARTS = 3  # K in the official code: magnitude mask, phase real, phase imag


# ------------------------------------------------------------------ building blocks
def _bn(cfg: ResUNetConfig, name: str) -> TorchBatchNorm:
    return TorchBatchNorm(epsilon=cfg.bn_eps, name=name)   # train mode when batch_stats is mutable


def _film(x: jax.Array, beta: jax.Array) -> jax.Array:
    """Add a per-channel FiLM bias [batch, C] to feature maps [batch, T, F, C]."""
    return x + beta[:, None, None, :]


class LabelEmbedding(nn.Module):
    """query_vector [batch, 54] -> condition [batch, 512]: (Linear, LayerNorm, ReLU) x 2."""
    cfg: ResUNetConfig

    @nn.compact
    def __call__(self, q):
        c, p = self.cfg, self.cfg.lax_precision
        x = nn.Dense(c.condition_dim, precision=p, name="linear0")(q)
        x = nn.relu(nn.LayerNorm(epsilon=c.ln_eps, use_fast_variance=False, name="norm1")(x))
        x = nn.Dense(c.condition_dim, precision=p, name="linear3")(x)
        return nn.relu(nn.LayerNorm(epsilon=c.ln_eps, use_fast_variance=False, name="norm4")(x))


# A 3x3 convolution over a large map (the full-resolution level: 2016 x 512 for 10 s) runs as
# TIME_WINDOWS windows of consecutive frames stacked on the batch axis, each with its one-frame halo:
# the same products and sums, but XLA's CPU convolution then works on pieces that stay in cache
# (pre-activation + 32 -> 32 convolution over 2016 x 512 alone: 257 -> 167 ms; 2 windows 191, 8 windows 195).
TIME_WINDOWS = 4
WINDOWED_MIN_PIXELS = 1 << 18     # time x freq from which a map is cut: the full-resolution level of clips
                                  # of 2.5 s and more (the parity goldens, 4 and 2.5 s, are cut too)


def time_windows(frames: int, bins: int) -> int:
    """How many time windows a 3x3 convolution over a [frames, bins] map runs in (1: not cut)."""
    return TIME_WINDOWS if frames * bins >= WINDOWED_MIN_PIXELS and frames % TIME_WINDOWS == 0 else 1


def conv_in_windows(conv: nn.Conv, x: jax.Array, windows: int) -> jax.Array:
    """Apply a 3x3 `conv` (time padding 1 if windows == 1, else 0; frequency padding 1) to
    x [B, T, F, C] -> [B, T, F, out], the time axis cut into `windows` windows (T divisible)."""
    if windows == 1:
        return conv(x)
    b, t, f, ch = x.shape
    length = t // windows
    frames = np.arange(windows)[:, None] * length + np.arange(length + 2)[None, :]   # halo of 1 each side
    stacked = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))[:, frames]               # [B, n, L+2, F, C]
    y = conv(stacked.reshape(b * windows, length + 2, f, ch))                      # [B*n, L, F, out]
    return y.reshape(b, t, f, y.shape[-1])


class ConvBlockRes(nn.Module):
    """Pre-activation residual block with FiLM betas: [B, T, F, Cin] -> [B, T, F, out]."""
    cfg: ResUNetConfig
    out: int

    @nn.compact
    def __call__(self, x, condition):
        c, p = self.cfg, self.cfg.lax_precision
        cin = x.shape[-1]
        beta1 = nn.Dense(cin, precision=p, name="beta1")(condition)
        beta2 = nn.Dense(self.out, precision=p, name="beta2")(condition)
        n = time_windows(x.shape[1], x.shape[2])
        conv = lambda name: nn.Conv(self.out, (3, 3), padding=((1, 1) if n == 1 else (0, 0), (1, 1)),
                                    use_bias=False, precision=p, name=name)
        y = conv_in_windows(conv("conv1"), nn.leaky_relu(_film(_bn(c, "bn1")(x), beta1), 0.01), n)
        y = conv_in_windows(conv("conv2"), nn.leaky_relu(_film(_bn(c, "bn2")(y), beta2), 0.01), n)
        if cin != self.out:
            x = nn.Conv(self.out, (1, 1), precision=p, name="shortcut")(x)
        return x + y


def _avg_pool(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
    """Average pooling [B, T, F, C] by (time, freq); sizes are multiples by construction."""
    if pool == (1, 1):
        return x
    b, t, f, ch = x.shape
    return x.reshape(b, t // pool[0], pool[0], f // pool[1], pool[1], ch).mean(axis=(2, 4))


class EncoderBlock(nn.Module):
    """Residual block then average pooling. Returns (pooled, pre-pool skip)."""
    cfg: ResUNetConfig
    out: int
    pool: tuple[int, int]

    @nn.compact
    def __call__(self, x, condition):
        skip = ConvBlockRes(self.cfg, self.out, name="conv_block1")(x, condition)
        return _avg_pool(skip, self.pool), skip


class UpConv(nn.Module):
    """Transposed conv with kernel = stride (no overlap, no bias): one matmul, then a pixel shuffle.
    [B, T, F, Cin] -> [B, T*st, F*sf, out]. kernel [st, sf, Cin, out] (PyTorch [Cin, out, st, sf])."""
    cfg: ResUNetConfig
    out: int
    factor: tuple[int, int]

    @nn.compact
    def __call__(self, x):
        st, sf = self.factor
        b, t, f, cin = x.shape
        k = self.param("kernel", nn.initializers.lecun_normal(), (st, sf, cin, self.out))
        # [B*T*F, Cin] @ [Cin, st*sf*out] as a plain 2-D matmul: written as the einsum
        # "btfc,hwco->bthfwo", XLA transposed the input and output around the dot (1.5x slower)
        y = jnp.dot(x.reshape(b * t * f, cin), k.transpose(2, 0, 1, 3).reshape(cin, st * sf * self.out),
                    precision=self.cfg.lax_precision)
        y = y.reshape(b, t, f, st, sf, self.out).transpose(0, 1, 3, 2, 4, 5)   # -> [B, T, st, F, sf, out]
        return y.reshape(b, t * st, f * sf, self.out)


class DecoderBlock(nn.Module):
    """Up-sample leaky_relu(bn1(x) + beta1), concatenate the skip (up-sampled first), residual block."""
    cfg: ResUNetConfig
    out: int
    factor: tuple[int, int]

    @nn.compact
    def __call__(self, x, skip, condition):
        beta1 = nn.Dense(x.shape[-1], precision=self.cfg.lax_precision, name="beta1")(condition)
        x = UpConv(self.cfg, self.out, self.factor, name="conv1")(
            nn.leaky_relu(_film(_bn(self.cfg, "bn1")(x), beta1), 0.01))
        x = jnp.concatenate([x, skip], axis=-1)
        return ConvBlockRes(self.cfg, self.out, name="conv_block2")(x, condition)


class ChannelMix(nn.Module):
    """The official `out_conv` (a 1x1 conv, C channels -> 1, with bias): z [..., C] -> [...].

    Written as a weighted sum over the channel axis, not as a conv: a matmul with 4 inputs and 1
    output cannot fuse, so the two [B, T, F, S, C] mask products before it were materialized and read
    again; as elementwise arithmetic XLA fuses the whole mask head into one pass. Same parameters
    (kernel [1, 1, C, 1], bias [1])."""

    @nn.compact
    def __call__(self, z):
        ch = z.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, ch, 1))
        bias = self.param("bias", nn.initializers.zeros, (1,))
        w = kernel[0, 0, :, 0]
        out = z[..., 0] * w[0]
        for i in range(1, ch):
            out = out + z[..., i] * w[i]
        return out + bias[0]


class ResUNetBase(nn.Module):
    """The official `base`: STFT, bn0, U-Net, mask head, out_conv, ISTFT.

    mixture [B, C, L], condition [B, 512] -> (complex stems per slot before the slot mask
    [B, S, L], intermediates)."""
    cfg: ResUNetConfig

    @nn.compact
    def __call__(self, mixture, condition):
        c, p = self.cfg, self.cfg.lax_precision
        b, ch, length = mixture.shape
        re, im = stft_lib.stft(mixture, c.n_fft, c.hop)                   # [B, C, T, F]
        mag, cos, sin = stft_lib.magphase(re, im)
        frames = mag.shape[2]

        x = _bn(c, "bn0")(mag)                        # frequency (last axis) is BatchNorm's channel
        x = x.transpose(0, 2, 3, 1)                   # -> [B, T, F, C]
        pad_t = -frames % c.time_ratio
        x = jnp.pad(x, ((0, 0), (0, pad_t), (0, 0), (0, 0)))[:, :, :-1]   # drop the last bin: F = n_fft/2
        x = nn.Conv(c.channels[0], (1, 1), precision=p, name="pre_conv")(x)

        skips = []
        for i, (out, pool) in enumerate(zip(c.channels, c.pools)):
            x, skip = EncoderBlock(c, out, pool, name=f"encoder_block{i + 1}")(x, condition)
            skips.append(skip)
        x, _ = EncoderBlock(c, c.bottleneck_channels, (1, 1), name="conv_block7a")(x, condition)
        n = len(c.channels)
        for i in range(n):
            j = n - 1 - i                             # mirror of encoder block j
            x = DecoderBlock(c, c.channels[j], c.pools[j], name=f"decoder_block{i + 1}")(
                x, skips[j], condition)

        x = nn.Conv(ch * MASK_PARTS * c.num_slots, (1, 1), precision=p, name="after_conv")(x)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)))[:, :frames]     # restore bin n_fft/2, crop time
        # channel index = ((slot * C) + channel) * K + k, as the official reshape to [B, S, C, K, T, F]
        x = x.reshape(b, frames, x.shape[2], c.num_slots, ch, MASK_PARTS)
        mask_mag = jax.nn.sigmoid(x[..., 0])          # [B, T, F, S, C]
        mask_re, mask_im = jnp.tanh(x[..., 1]), jnp.tanh(x[..., 2])
        mask_abs = jnp.maximum(jnp.sqrt(mask_re ** 2 + mask_im ** 2), 1e-10)
        mask_cos, mask_sin = mask_re / mask_abs, mask_im / mask_abs

        to_tfc = lambda a: a.transpose(0, 2, 3, 1)[:, :, :, None, :]      # [B, C, T, F] -> [B, T, F, 1, C]
        cos_in, sin_in, mag_in = to_tfc(cos), to_tfc(sin), to_tfc(mag)
        out_cos = cos_in * mask_cos - sin_in * mask_sin   # rotate the mixture phase by the mask phase
        out_sin = sin_in * mask_cos + cos_in * mask_sin
        out_mag = nn.relu(mag_in * mask_mag)
        out_conv = ChannelMix(name="out_conv")                 # mixes the C channels, per slot
        mix = lambda z: out_conv(z).transpose(0, 3, 1, 2)      # [B, T, F, S, C] -> [B, S, T, F]
        stem_re, stem_im = mix(out_mag * out_cos), mix(out_mag * out_sin)
        stems = stft_lib.istft(stem_re, stem_im, length, c.n_fft, c.hop)  # [B, S, L]
        return stems, {"mag": mag, "mask_mag": mask_mag.transpose(0, 3, 4, 1, 2)}


class ResUNetSeparator(nn.Module):
    """mixture [B, C, L], query_vector [B, S*classes] -> (stems [B, S, L], intermediates dict:
    `mag` [B, C, T, F], `mask_mag` [B, S, C, T, F], `condition` [B, 512], `source_mask` [B, S])."""
    cfg: ResUNetConfig

    @nn.compact
    def __call__(self, mixture, query_vector):
        c = self.cfg
        mixture = jnp.asarray(mixture, jnp.float32)
        query_vector = jnp.asarray(query_vector, jnp.float32)
        condition = LabelEmbedding(c, name="label_embedding")(query_vector)
        stems, aux = ResUNetBase(c, name="base")(mixture, condition)
        slots = query_vector.reshape(query_vector.shape[0], c.num_slots, c.num_classes)
        source_mask = (slots.sum(-1) != 0).astype(stems.dtype)   # an all-zero slot is silence
        aux = dict(aux, condition=condition, source_mask=source_mask)
        return stems * source_mask[:, :, None], aux
