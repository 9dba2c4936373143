"""`s5jax demo`: the whole user workflow on data and weights made here, with no download.

1. a small synthetic scene set in the official dev-test layout (`s5jax.scenes`);
2. official-format Lightning checkpoints of the 4-ch tagger and the separator, filled with synthetic
   weights (shapes from the official key manifests in `s5jax/data/`, fixed front-end buffers computed
   by our own front ends);
3. conversion of both, 4. inference with oracle scoring, 5. a re-run that resumes — through the
library functions behind `s5jax convert` / `s5jax infer` (the demo does not drive the CLI).

The weights are random, so the scores say nothing about the models; the run shows that every stage
works and what it writes. Replace step 2 by the official checkpoints for real numbers.
"""
from __future__ import annotations

import json
import os
import zlib
from importlib import resources

import numpy as np

from .scenes import SceneConfig, write_scene_set


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
    from .torchfile import save_torch_file

    save_torch_file({"state_dict": synthetic_state_dict(kind), "epoch": 0, "global_step": 0,
                     "hyper_parameters": {"note": "synthetic weights made by s5jax demo"}}, path)
    return path


def run_demo(out: str, clips: int = 6, batch_size: int = 2, seconds: float = 10.0, log=print) -> int:
    """Steps 1-5 in `out` (data/, official_ckpt/, ckpt/, infer/). Returns the exit status (0 = every
    clip processed and scored)."""
    from .infer import run_infer
    from .official import convert_checkpoint

    data = os.path.join(out, "data")
    official = os.path.join(out, "official_ckpt")
    converted = os.path.join(out, "ckpt")
    result = os.path.join(out, "infer")
    os.makedirs(official, exist_ok=True)
    log(f"[1/5] writing {clips} synthetic soundscapes + oracle targets to {data}")
    write_scene_set(data, clips, seed=0, cfg=SceneConfig(seconds=seconds))
    log("[2/5] writing official-format checkpoints with synthetic weights")
    for kind in ("tagger-4ch", "separator"):
        write_synthetic_checkpoint(kind, os.path.join(official, f"{kind}.ckpt"))
    log("[3/5] converting (as `s5jax convert`)")
    for kind in ("tagger-4ch", "separator"):
        convert_checkpoint(os.path.join(official, f"{kind}.ckpt"), os.path.join(converted, kind))
    args = dict(tagger_dir=os.path.join(converted, "tagger-4ch"),
                separator_dir=os.path.join(converted, "separator"), batch_size=batch_size, log=log)
    log(f"[4/5] inferring (as `s5jax infer {data} --out {result}`)")
    report = run_infer(data, result, **args)
    if report.skipped:
        return 1
    log("[5/5] re-run: finished clips are skipped (resume)")
    report = run_infer(data, result, progress=False, **args)
    log(f"resumed {len(report.resumed)} clip(s), processed {len(report.processed)}")
    return 1 if report.skipped or report.processed else 0
