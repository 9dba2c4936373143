"""The M2D taggers' conversion table: official state_dict keys -> our Flax variables (s5jax.models.m2d),
the model size read from the checkpoint, and the check of its fixed front-end buffers."""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from ..errors import CheckpointError
from ..models.configs import M2DConfig
from ..models.m2d import M2DTagger, ViTEncoder, front_end_buffers
from .rules import Rule, abstract_variables, apply_rules, require_fixed

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
