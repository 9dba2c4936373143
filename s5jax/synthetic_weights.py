"""Official-format checkpoints filled with synthetic weights, for tests and benchmarks that need the
full-size official models' shapes without the official weights (no torch, no download).

    sd = synthetic_state_dict("separator")          # every key and shape of the official checkpoint
    write_synthetic_checkpoint("tagger-4ch", "t.ckpt")   # a Lightning .ckpt `s5jax convert` reads

Learned weights are drawn at unit-variance-preserving scale, seeded by the key name; the fixed
buffers (STFT kernels, mel basis, normalisation stats) are the true values, from our own front ends.
"""
from __future__ import annotations

import json
import zlib
from importlib import resources

import numpy as np


def _manifest(kind: str) -> dict:
    with resources.files("s5jax.data").joinpath(f"manifest_{kind}.json").open() as f:
        return json.load(f)


def _fixed_buffers(kind: str) -> dict[str, np.ndarray]:
    """The non-learned buffers of an official checkpoint, from our own front ends."""
    if kind == "separator":
        from .stft import istft_conv_kernels, ola_window, stft_conv_kernels

        sr, si = stft_conv_kernels(1024)
        ir, ii = istft_conv_kernels(1024)
        return {"model.base.stft.conv_real.weight": sr, "model.base.stft.conv_imag.weight": si,
                "model.base.istft.conv_real.weight": ir, "model.base.istft.conv_imag.weight": ii,
                "model.base.istft.ola_window": ola_window(1024)}
    from .models.m2d import M2DConfig, front_end_buffers

    b = front_end_buffers(M2DConfig())
    pre = "model.m2d." if kind == "tagger-4ch" else "model."
    return {pre + "to_spec.stft.wsin": b["stft_wsin"], pre + "to_spec.stft.wcos": b["stft_wcos"],
            pre + "to_spec.stft.window_mask": b["stft_window_mask"], pre + "to_spec.mel_basis": b["mel_basis"],
            pre + "backbone.norm_stats": np.array([-7.1, 4.2], np.float32)}


def synthetic_state_dict(kind: str) -> dict[str, np.ndarray]:
    """A state_dict with every key and shape of the official `kind` checkpoint: learned weights drawn
    at unit-variance-preserving scale (seeded by the key name), fixed buffers at their true values."""
    fixed = _fixed_buffers(kind)
    out = {}
    for key, spec in _manifest(kind).items():
        shape = tuple(spec["shape"])
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key in fixed:
            out[key] = fixed[key]
        elif "int" in spec.get("dtype", "float32"):
            out[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith(("running_mean", "bias")):
            out[key] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
        elif len(shape) <= 1:
            out[key] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:
            bound = np.sqrt(3.0 / np.prod(shape[1:]))
            out[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def write_synthetic_checkpoint(kind: str, path: str) -> str:
    """An official-format Lightning `.ckpt` of `kind` with synthetic weights (torch not needed)."""
    from .official.torchfile import save_torch_file

    save_torch_file({"state_dict": synthetic_state_dict(kind), "epoch": 0, "global_step": 0,
                     "hyper_parameters": {"note": "synthetic weights made by s5jax demo"}}, path)
    return path
