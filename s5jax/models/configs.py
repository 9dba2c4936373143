"""The models' configs: frozen dataclasses of everything that fixes a model's shapes and numerics,
JSON round-trip (`to_dict` / `from_dict`, unknown fields refused). No Flax here: a start that finds
its programs in the compilation cache builds the models' configs without importing the model code."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .common import PRECISIONS, check_sizes, known_fields, positive_int_tuple


ATTENTION_FORMS = ("auto", "loop", "batched", "dot_product")


@dataclass(frozen=True)
class M2DConfig:
    """Everything that fixes the tagger's shapes and numerics (JSON-serialisable via `to_dict`)."""
    in_channels: int = 1            # 1 (M2dAt) or 4 (M2dAtSpatial)
    sample_rate: int = 32000
    n_fft: int = 800                # also the window length
    hop: int = 320
    n_mels: int = 80
    fmin: float = 50.0
    fmax: float = 16000.0
    norm_mean: float = -7.1         # from the checkpoint's backbone.norm_stats
    norm_std: float = 4.2
    patch: int = 16
    chunk_frames: int = 1001        # frames the encoder sees at once (pos_embed covers this)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    head_dim: int = 3072            # first head layer; split into num_tracks equal parts
    track_dim: int = 512
    num_tracks: int = 3
    num_classes: int = 19
    precision: str = "highest"      # matmul/conv precision: keeps GPU/TPU numerics at float32
    # How the encoder's attention runs its heads (same products, same results to rounding):
    #   "loop"        one head after another (lax.map): fastest on CPU (whole tagger ≈ 1.08x), but
    #                 serial on GPU/TPU
    #   "batched"     the heads as one more batch axis of the two products
    #   "dot_product" jax.nn.dot_product_attention (XLA's fused attention on accelerators)
    #   "auto"        "loop" on CPU, "dot_product" on GPU/TPU (the default backend when traced)
    attention: str = "auto"

    def __post_init__(self):
        check_sizes(self, positive_ints=("sample_rate", "n_fft", "hop", "n_mels", "patch", "chunk_frames",
                                         "embed_dim", "depth", "num_heads", "mlp_dim", "head_dim", "track_dim",
                                         "num_tracks", "num_classes"),
                    positive_floats=("norm_std",), finite_floats=("fmin", "fmax", "norm_mean"))
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"fields 'fmin', 'fmax' need 0 <= fmin < fmax <= sample_rate / 2, got "
                             f"{self.fmin}, {self.fmax} at {self.sample_rate} Hz")
        if self.chunk_frames < self.patch:
            raise ValueError(f"field 'chunk_frames' ({self.chunk_frames}) must be at least one patch ({self.patch})")
        if self.in_channels not in (1, 4):
            raise ValueError(f"in_channels must be 1 or 4, got {self.in_channels}")
        if self.n_mels % self.patch or self.head_dim % self.num_tracks or self.embed_dim % self.num_heads:
            raise ValueError("n_mels % patch, head_dim % num_tracks and embed_dim % num_heads must be 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        if self.attention not in ATTENTION_FORMS:
            raise ValueError(f"field 'attention' must be one of {list(ATTENTION_FORMS)}, got {self.attention!r}")

    @property
    def attention_form(self) -> str:
        """The attention form to trace: `attention`, with "auto" resolved for the default backend."""
        if self.attention != "auto":
            return self.attention
        import jax

        return "loop" if jax.default_backend() == "cpu" else "dot_product"

    @property
    def freq_patches(self) -> int:
        return self.n_mels // self.patch

    @property
    def time_patches(self) -> int:
        """Time columns of the positional-embedding grid (62 for 1001 frames)."""
        return self.chunk_frames // self.patch

    @property
    def feature_dim(self) -> int:
        """Encoder feature per time step and channel: F * D (5 * 768 = 3840)."""
        return self.freq_patches * self.embed_dim

    @property
    def lax_precision(self):
        return PRECISIONS[self.precision]

    @property
    def official_only_params(self) -> int:
        """Values the official module counts in `model.parameters()` that are not learned weights
        here: the backbone's `norm_stats` [mean, std] (an nn.Parameter with requires_grad=False)."""
        return 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "M2DConfig":
        return cls(**known_fields(cls, d, "tagger"))


@dataclass(frozen=True)
class ResUNetConfig:
    """Sizes of the separator. Defaults = the official ResUNet30 (26.8 M values)."""
    input_channels: int = 4                       # microphones of the mixture
    num_slots: int = 3                            # query slots = output stems
    num_classes: int = 18                         # one-hot size of one slot
    channels: tuple[int, ...] = (32, 64, 128, 256, 384, 384)   # encoder blocks (channels[0] = base)
    pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2))  # (time, freq)
    bottleneck_channels: int = 384                # conv_block7a
    condition_dim: int = 512                      # label embedding width
    n_fft: int = 1024
    hop: int = 160
    precision: str = "highest"                    # of convs / matmuls, so GPU/TPU match CPU
    bn_eps: float = 1e-5
    ln_eps: float = 1e-5

    def __post_init__(self):
        check_sizes(self, positive_ints=("input_channels", "num_slots", "num_classes", "bottleneck_channels",
                                         "condition_dim", "n_fft", "hop"),
                    positive_floats=("bn_eps", "ln_eps"))
        object.__setattr__(self, "channels", positive_int_tuple("channels", self.channels))
        if isinstance(self.pools, (str, bytes)) or not hasattr(self.pools, "__iter__"):
            raise ValueError(f"field 'pools' must be a list of [time, freq] pairs, got {self.pools!r}")
        object.__setattr__(self, "pools", tuple(positive_int_tuple("pools", p, 2) for p in self.pools))
        if len(self.channels) != len(self.pools) or not self.channels:
            raise ValueError("channels and pools need one entry per encoder block")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        if (self.n_fft // 2) % self.freq_ratio:
            raise ValueError(f"n_fft // 2 = {self.n_fft // 2} is not divisible by the frequency "
                             f"down-sampling ratio {self.freq_ratio}")

    @property
    def query_dim(self) -> int:
        return self.num_slots * self.num_classes

    @property
    def time_ratio(self) -> int:
        """Frames are padded to a multiple of this (the encoder's total time pooling)."""
        return math.prod(p[0] for p in self.pools)

    @property
    def freq_ratio(self) -> int:
        return math.prod(p[1] for p in self.pools)

    @property
    def lax_precision(self):
        return PRECISIONS[self.precision]

    @property
    def official_only_params(self) -> int:
        """Values the official module counts in `model.parameters()` that are not learned weights here
        (the submission's `nparams` is that count): torchlibrosa's STFT kernels (conv_real/imag,
        [n_fft/2+1, 1, n_fft] each) and ISTFT kernels ([n_fft, n_fft, 1] each) are Conv1d weights,
        frozen but parameters; every decoder block's bn2 (scale + bias of its input channels) and the
        FiLM Linear feeding its beta2 (condition_dim -> those channels), never applied in the
        official forward.  (BatchNorm running statistics and the ISTFT's ola_window are buffers.)"""
        stft = 2 * (self.n_fft // 2 + 1) * self.n_fft + 2 * self.n_fft * self.n_fft
        decoder_in = (self.bottleneck_channels,) + tuple(reversed(self.channels))[:-1]
        return stft + sum(c * (2 + self.condition_dim + 1) for c in decoder_in)

    def to_dict(self) -> dict:
        """JSON-serialisable (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        d["pools"] = [list(p) for p in self.pools]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ResUNetConfig":
        return cls(**known_fields(cls, d, "separator"))      # __post_init__ makes the lists tuples
