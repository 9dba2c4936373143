"""The official models in PyTorch, written from ../shared/reference, to time them beside s5jax.

The official code is not part of this project, yet issue 10's goals are ratios to it measured side by
side on one machine in one run (machines here differ from day to day by up to 3x). This module builds
the official 4-ch / 1-ch tagger and separator as the specs describe the official code, op for op where
the cost lives: the tagger's nnAudio front end (the STFT as a strided conv1d with the stored
`wcos`/`wsin` kernels, mel matmul), timm's ViT-B blocks (fused qkv Linear,
`scaled_dot_product_attention`, exact GELU), the M2D head; the separator's torchlibrosa STFT (conv1d
with `conv_real`/`conv_imag`) and ISTFT (1x1 conv1d inverse DFT over the full spectrum, overlap-add
with `F.fold`, division by the summed window), the FiLM ResUNet30 with BatchNorm2d / Conv2d /
ConvTranspose2d. Module names follow the official state_dict, so the golden synthetic weights load
with `load_state_dict(strict=True)`; `tests/test_torch_port.py` checks the outputs against the
official goldens (the same tolerances as s5jax's own parity tests). It is a stand-in for timing,
not the official code: a ratio measured against it is labelled "torch port" in every table.

    model = build("separator", state_dict)            # state_dict: official keys without "model."
    stems = model(mixture, query_vector)              # [B, 4, L], [B, 54] -> [B, 3, L]
    logits = build("tagger-4ch", sd)(mixture)         # [B, 4, L] -> [B, 3, 19]

torch is needed only here and in the bench/test that use it; the s5jax library never imports it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------ M2D tagger (m2d_tagger.md)
VIT_WIDTH, VIT_DEPTH, VIT_HEADS, PATCH, CHUNK_FRAMES, GRID_COLUMNS = 768, 12, 12, 16, 1001, 62


class LogMel(nn.Module):
    """nnAudio MelSpectrogram at 32 kHz (n_fft 800, hop 320, 80 mels), log(+2^-23), normalised.
    [B, N] -> [B, 80, F]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mel_basis", torch.zeros(80, 401))
        self.stft = nn.Module()
        for name, shape in (("wsin", (401, 1, 800)), ("wcos", (401, 1, 800)), ("window_mask", (1, 800, 1))):
            self.stft.register_buffer(name, torch.zeros(shape))

    def forward(self, x, norm_stats):
        x = F.pad(x[:, None], (400, 400), mode="reflect")
        re = F.conv1d(x, self.stft.wcos, stride=320)
        im = F.conv1d(x, self.stft.wsin, stride=320)
        power = torch.sqrt(re ** 2 + im ** 2) ** 2          # as nnAudio: magnitude, then squared
        mel = torch.matmul(self.mel_basis, power)
        return (torch.log(mel + torch.finfo(torch.float32).eps) - norm_stats[0]) / norm_stats[1]


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(VIT_WIDTH, 3 * VIT_WIDTH)
        self.proj = nn.Linear(VIT_WIDTH, VIT_WIDTH)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, VIT_HEADS, c // VIT_HEADS).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(VIT_WIDTH, 4 * VIT_WIDTH)
        self.fc2 = nn.Linear(4 * VIT_WIDTH, VIT_WIDTH)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))                 # exact (erf) GELU


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(VIT_WIDTH, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(VIT_WIDTH, eps=1e-6)
        self.mlp = Mlp()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Backbone(nn.Module):
    """ViT-B/16 encoder of one chunk: log-mel [B, 1, 80, l] -> features [B, l // 16, 3840]."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, VIT_WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + 5 * GRID_COLUMNS, VIT_WIDTH))
        self.norm_stats = nn.Parameter(torch.zeros(2), requires_grad=False)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, VIT_WIDTH, PATCH, PATCH)
        self.blocks = nn.Sequential(*[Block() for _ in range(VIT_DEPTH)])
        self.norm = nn.LayerNorm(VIT_WIDTH, eps=1e-6)

    def forward(self, lms):
        x = self.patch_embed.proj(lms)                       # [B, 768, 5, Tt]
        b, c, bands, cols = x.shape
        x = x.flatten(2).transpose(1, 2)                     # frequency-major tokens [B, 5*Tt, 768]
        grid = self.pos_embed[:, 1:].reshape(1, bands, GRID_COLUMNS, c)[:, :, :cols]
        x = x + grid.reshape(1, bands * cols, c)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = self.norm(self.blocks(torch.cat([cls, x], dim=1)))[:, 1:]
        return x.reshape(b, bands, cols, c).permute(0, 2, 1, 3).reshape(b, cols, bands * c)


def encode(to_spec: LogMel, backbone: Backbone, wave):
    """waveform [B, N] -> features [B, S, 3840]: log-mel padded to whole patches (zeros in the
    normalised domain), each 1001-frame chunk encoded on its own, steps concatenated."""
    lms = to_spec(wave, backbone.norm_stats)[:, None]                # [B, 1, 80, F]
    frames = lms.shape[-1]
    lms = F.pad(lms, (0, max(PATCH, frames + -frames % PATCH) - frames))
    chunks = (lms[..., i * CHUNK_FRAMES:(i + 1) * CHUNK_FRAMES] for i in range(math.ceil(frames / CHUNK_FRAMES)))
    return torch.cat([backbone(c) for c in chunks if c.shape[-1] >= PATCH], dim=1)


class M2D(nn.Module):
    """The M2D runtime: waveform [B, N] -> features [B, S, 3840] over 1001-frame chunks."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head_norm = nn.BatchNorm1d(5 * VIT_WIDTH, affine=False)   # in the checkpoint, never used
        self.to_spec = LogMel()

    def forward(self, wave):
        return encode(self.to_spec, self.backbone, wave)


class Head(nn.Module):
    """HeadAvgLinear: features [B, S, D] -> logits [B, 3, 19]."""

    def __init__(self, dim):
        super().__init__()
        self.m2d_out_norm = nn.BatchNorm1d(dim, affine=False)
        self.linear = nn.Sequential(nn.Linear(dim, 3072), nn.LayerNorm(3072, eps=1e-5), nn.ReLU())
        self.tracks = nn.ModuleList(nn.Sequential(nn.Linear(1024, 512), nn.LayerNorm(512, eps=1e-5), nn.ReLU(),
                                                  nn.Linear(512, 19)) for _ in range(3))

    def forward(self, feats):
        z = self.linear(self.m2d_out_norm(feats.mean(dim=1))).reshape(feats.shape[0], 3, 1024)
        return torch.stack([track(z[:, k]) for k, track in enumerate(self.tracks)], dim=1)


class Tagger1ch(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head_norm = nn.BatchNorm1d(5 * VIT_WIDTH, affine=False)
        self.to_spec = LogMel()
        self.head = Head(5 * VIT_WIDTH)

    def forward(self, mixture):                              # [B, C, N] (channel 0) or [B, N]
        wave = mixture[:, 0] if mixture.dim() == 3 else mixture
        return self.head(encode(self.to_spec, self.backbone, wave))


class Tagger4ch(nn.Module):
    def __init__(self):
        super().__init__()
        self.m2d = M2D()
        self.head = Head(4 * 5 * VIT_WIDTH)

    def forward(self, mixture):                              # [B, 4, N]
        b, ch, n = mixture.shape
        feats = self.m2d(mixture.reshape(b * ch, n))         # [B*4, S, 3840]
        feats = feats.reshape(b, ch, *feats.shape[1:]).permute(0, 2, 1, 3).flatten(2)
        return self.head(feats)


# ------------------------------------------------------------------ ResUNet30 separator (resunet_separator.md)
N_FFT, HOP, SLOTS, MASK_PARTS = 1024, 160, 3, 3
CHANNELS = (32, 64, 128, 256, 384, 384)
POOLS = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))


class ConvBlockRes(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.has_shortcut = cin != cout
        if self.has_shortcut:
            self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, beta1, beta2):
        y = self.conv1(F.leaky_relu_(self.bn1(x) + beta1, 0.01))
        y = self.conv2(F.leaky_relu_(self.bn2(y) + beta2, 0.01))
        return (self.shortcut(x) if self.has_shortcut else x) + y


class EncoderBlock(nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.conv_block1 = ConvBlockRes(cin, cout)
        self.pool = pool

    def forward(self, x, film, name):
        skip = self.conv_block1(x, film[f"{name}->conv_block1->beta1"], film[f"{name}->conv_block1->beta2"])
        return (F.avg_pool2d(skip, self.pool) if self.pool != (1, 1) else skip), skip


class DecoderBlock(nn.Module):
    def __init__(self, cin, cout, factor):
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, factor, stride=factor, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cin)   # bn2: in the checkpoint, unused
        self.conv_block2 = ConvBlockRes(2 * cout, cout)

    def forward(self, x, skip, film, name):
        x = self.conv1(F.leaky_relu_(self.bn1(x) + film[f"{name}->beta1"], 0.01))
        x = torch.cat([x, skip], dim=1)
        return self.conv_block2(x, film[f"{name}->conv_block2->beta1"], film[f"{name}->conv_block2->beta2"])


class STFT(nn.Module):
    """torchlibrosa STFT as conv1d: [B, L] -> real, imag [B, T, 513]."""

    def __init__(self):
        super().__init__()
        self.conv_real = nn.Conv1d(1, N_FFT // 2 + 1, N_FFT, stride=HOP, bias=False)
        self.conv_imag = nn.Conv1d(1, N_FFT // 2 + 1, N_FFT, stride=HOP, bias=False)

    def forward(self, x):
        x = F.pad(x[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")
        return self.conv_real(x).transpose(1, 2), self.conv_imag(x).transpose(1, 2)


class ISTFT(nn.Module):
    """torchlibrosa ISTFT: real, imag [B, T, 513] -> [B, length] (inverse DFT as 1x1 conv1d, overlap-add)."""

    def __init__(self):
        super().__init__()
        self.conv_real = nn.Conv1d(N_FFT, N_FFT, 1, bias=False)
        self.conv_imag = nn.Conv1d(N_FFT, N_FFT, 1, bias=False)
        self.register_buffer("ola_window", torch.zeros(N_FFT))

    def forward(self, re, im, length):
        re, im = re.transpose(1, 2), im.transpose(1, 2)                 # [B, 513, T]
        full_re = torch.cat([re, torch.flip(re[:, 1:-1], dims=[1])], dim=1)
        full_im = torch.cat([im, -torch.flip(im[:, 1:-1], dims=[1])], dim=1)
        frames = self.conv_real(full_re) - self.conv_imag(full_im)      # [B, n_fft, T]
        t = frames.shape[-1]
        size = (1, N_FFT + HOP * (t - 1))
        y = F.fold(frames, size, kernel_size=(1, N_FFT), stride=(1, HOP))[:, 0, 0]
        env = F.fold(self.ola_window[None, :, None].expand(1, N_FFT, t), size, kernel_size=(1, N_FFT),
                     stride=(1, HOP))[:, 0, 0]
        y = y / torch.clamp(env, min=1e-11)
        y = y[:, N_FFT // 2:]
        return F.pad(y, (0, max(0, length - y.shape[-1])))[:, :length]


class Base(nn.Module):
    def __init__(self, channels_in=4):
        super().__init__()
        self.stft, self.istft = STFT(), ISTFT()
        self.bn0 = nn.BatchNorm2d(N_FFT // 2 + 1)
        self.pre_conv = nn.Conv2d(channels_in, CHANNELS[0], 1)
        cin = CHANNELS[0]
        for i, (cout, pool) in enumerate(zip(CHANNELS, POOLS)):
            self.add_module(f"encoder_block{i + 1}", EncoderBlock(cin, cout, pool))
            cin = cout
        self.conv_block7a = EncoderBlock(cin, 384, (1, 1))
        cin = 384
        for i in range(len(CHANNELS)):
            j = len(CHANNELS) - 1 - i
            self.add_module(f"decoder_block{i + 1}", DecoderBlock(cin, CHANNELS[j], POOLS[j]))
            cin = CHANNELS[j]
        self.after_conv = nn.Conv2d(CHANNELS[0], channels_in * MASK_PARTS * SLOTS, 1)
        self.out_conv = nn.Conv2d(channels_in, 1, 1)

    def forward(self, mixture, film):
        b, ch, length = mixture.shape
        re, im = self.stft(mixture.reshape(b * ch, length))             # [B*C, T, 513]
        mag = torch.sqrt(torch.clamp(re ** 2 + im ** 2, min=1e-10))
        cos, sin = re / mag, im / mag
        t = mag.shape[1]
        mag, cos, sin = (z.reshape(b, ch, t, -1) for z in (mag, cos, sin))
        x = self.bn0(mag.transpose(1, 3)).transpose(1, 3)               # frequency is bn0's channel
        x = F.pad(x, (0, 0, 0, -t % 32))[..., :-1]
        x = self.pre_conv(x)
        skips = []
        for i in range(len(CHANNELS)):
            x, skip = getattr(self, f"encoder_block{i + 1}")(x, film, f"encoder_block{i + 1}")
            skips.append(skip)
        x, _ = self.conv_block7a(x, film, "conv_block7a")
        for i in range(len(CHANNELS)):
            x = getattr(self, f"decoder_block{i + 1}")(x, skips[-1 - i], film, f"decoder_block{i + 1}")
        x = self.after_conv(x)
        x = F.pad(x, (0, 1))[:, :, :t]
        x = x.reshape(b, SLOTS, ch, MASK_PARTS, t, x.shape[-1])
        mask_mag = torch.sigmoid(x[:, :, :, 0])
        mask_re, mask_im = torch.tanh(x[:, :, :, 1]), torch.tanh(x[:, :, :, 2])
        mask_abs = torch.clamp((mask_re ** 2 + mask_im ** 2) ** 0.5, 1e-10, math.inf)
        mask_cos, mask_sin = mask_re / mask_abs, mask_im / mask_abs
        cos, sin, mag = cos[:, None], sin[:, None], mag[:, None]        # [B, 1, C, T, F]
        out_cos = cos * mask_cos - sin * mask_sin
        out_sin = sin * mask_cos + cos * mask_sin
        out_mag = F.relu_(mag * mask_mag)
        fb = x.shape[-1]
        mix = lambda z: self.out_conv(z.reshape(b * SLOTS, ch, t, fb))[:, 0]   # [B*S, T, F]
        stems = self.istft(mix(out_mag * out_cos), mix(out_mag * out_sin), length)
        return stems.reshape(b, SLOTS, length)


class FiLM(nn.Module):
    """One Linear 512 -> C per conditioned BatchNorm, named by the block path ('->' joins it)."""

    def __init__(self, base: Base):
        super().__init__()
        for name, module in base.named_children():
            if isinstance(module, EncoderBlock):
                for k, c in (("beta1", module.conv_block1.bn1), ("beta2", module.conv_block1.bn2)):
                    self.add_module(f"{name}->conv_block1->{k}", nn.Linear(512, c.num_features))
            elif isinstance(module, DecoderBlock):
                self.add_module(f"{name}->beta1", nn.Linear(512, module.bn1.num_features))
                self.add_module(f"{name}->beta2", nn.Linear(512, module.bn2.num_features))   # unused
                for k, c in (("beta1", module.conv_block2.bn1), ("beta2", module.conv_block2.bn2)):
                    self.add_module(f"{name}->conv_block2->{k}", nn.Linear(512, c.num_features))

    def forward(self, condition):
        return {name: layer(condition)[:, :, None, None] for name, layer in self.named_children()}


class Separator(nn.Module):
    def __init__(self):
        super().__init__()
        self.base = Base()
        self.label_embedding = nn.Sequential(nn.Linear(54, 512), nn.LayerNorm(512), nn.ReLU(),
                                             nn.Linear(512, 512), nn.LayerNorm(512), nn.ReLU())
        self.film = FiLM(self.base)

    def forward(self, mixture, query_vector):
        stems = self.base(mixture, self.film(self.label_embedding(query_vector)))
        source_mask = (query_vector.reshape(-1, SLOTS, 18).sum(-1) != 0).to(stems.dtype)
        return stems * source_mask[:, :, None]


# ------------------------------------------------------------------ building and the baseline system
KINDS = {"tagger-4ch": Tagger4ch, "tagger-1ch": Tagger1ch, "separator": Separator}


def build(kind: str, state_dict: dict) -> nn.Module:
    """The model of `kind` in eval mode with `state_dict` (numpy or torch values, official keys without
    `model.`) loaded strictly: a missing or unexpected key is an error."""
    with torch.device("meta"):     # no random initialisation of what the state_dict replaces (seconds)
        model = KINDS[kind]()
    own = model.state_dict()       # once: a call per key made the build quadratic (10 s for a tagger)
    sd = {k: _copy(v).to(own[k].dtype).reshape(own[k].shape) if k in own else torch.as_tensor(v)
          for k, v in state_dict.items()}
    model.load_state_dict(sd, strict=True, assign=True)       # the copies become the model's tensors
    return model.eval()


def _copy(value) -> torch.Tensor:
    """A writable tensor of its own from a numpy array (a read-only memory map too) or a tensor."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))


def baseline_system(tagger: nn.Module, separator: nn.Module, mixture):
    """The official S5 baseline: tag, map argmax to one-hot without silence, silence last (stable),
    separate. mixture [B, 4, N] -> (stems [B, 3, N], query_vector [B, 54])."""
    logits = tagger(mixture)
    index = logits.softmax(-1).argmax(-1)                               # [B, 3], 18 = silence
    onehot = F.one_hot(index, 19)[..., :18].to(mixture.dtype)
    order = torch.argsort((index == 18).to(torch.int64), dim=1, stable=True)
    onehot = torch.take_along_dim(onehot, order[..., None], dim=1)
    query = onehot.reshape(mixture.shape[0], SLOTS * 18)
    return separator(mixture, query), query


def use_onednn_gemm(model: nn.Module) -> nn.Module:
    """Route every nn.Linear of `model` through oneDNN (`torch.ops.mkldnn._linear_pointwise`) instead of
    torch's BLAS (MKL), in place. A timing device, not the official code: torch's MKL sgemm runs at
    about half of XLA's fp32 GEMM rate on AMD Zen 5 hosts (MKL takes its AVX2 path on non-Intel CPUs),
    while on issue 10's host the two ran at parity; oneDNN (inside the same torch wheel) reaches XLA's
    rate here, so a port with its Linears on oneDNN stands in for the official code on a host where
    torch's GEMM is as fast as XLA's. Convolutions already run on oneDNN; the attention products
    (`scaled_dot_product_attention`, ~3 % of the tagger's FLOPs) stay on BLAS. Outputs differ from the
    BLAS path by rounding only (relative ~4e-7)."""
    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")

    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.forward = forward.__get__(m, nn.Linear)
    return model
