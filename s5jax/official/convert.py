"""Official PyTorch checkpoints -> s5jax checkpoint folders: read, detect the model, convert.

This module knows the official file formats (Lightning `.ckpt`, M2D `.pth`) and which model each key
set belongs to; the conversion tables (official/m2d.py, official/resunet.py) import the models and the
rule engine (official/rules.py); no model imports the converter, so the graph runs one way:
official.convert -> official.{m2d,resunet} -> models, official.rules.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from .. import checkpoint
from ..errors import CheckpointError
from ..files import check_writable
from .m2d import convert_tagger_state_dict
from .resunet import convert_separator_state_dict
from .torchfile import load_torch_file

_ENCODER_PREFIXES = ("module.ar.runtime.backbone.", "runtime.backbone.", "backbone.", "module.")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """The weights of an official checkpoint: a Lightning `.ckpt` (its `state_dict`) or a plain
    state_dict `.pth` (possibly nested under `model`/`state_dict`). Everything else is skipped."""
    obj = load_torch_file(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds no state_dict (found {type(obj).__name__})")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not sd:
        raise CheckpointError(f"{path}: the state_dict holds no tensors")
    return sd


def detect_kind(sd: Mapping[str, np.ndarray]) -> str | None:
    """Which official model a state_dict belongs to, from its keys (None if none fits)."""
    keys = set(sd)
    if any(k.startswith("model.base.") for k in keys) and any(k.startswith("model.film.") for k in keys):
        return "separator"
    if any(k.startswith("model.m2d.backbone.") for k in keys) and any(k.startswith("model.head.") for k in keys):
        return "tagger-4ch"
    if any(k.startswith("model.backbone.") for k in keys) and any(k.startswith("model.head.") for k in keys):
        return "tagger-1ch"
    if any(k.endswith("blocks.0.attn.qkv.weight") for k in keys) and not any(".head." in k for k in keys):
        return "m2d-encoder"
    return None


def convert_state_dict(sd: Mapping[str, np.ndarray], kind: str, source: str) -> tuple[dict, dict]:
    """An official state_dict of `kind` -> (config dict, Flax variables)."""
    if kind == "separator":
        return convert_separator_state_dict(_strip(sd, "model."), source)
    if kind in ("tagger-1ch", "tagger-4ch"):
        return convert_tagger_state_dict(_strip(sd, "model."), kind, source)
    prefix = next((p for p in _ENCODER_PREFIXES if all(k.startswith(p) for k in sd)), "")
    return convert_tagger_state_dict(_strip(sd, prefix), kind, source)


def apply_overrides(config: dict, overrides: Mapping[str, object], kind: str, source: str) -> dict:
    """`config` with fields the checkpoint does not store set by hand (e.g. a small model's
    `num_heads`, a separator's `hop`); then checked against the weights like a loaded folder."""
    out = dict(config)
    for key, value in overrides.items():
        if key not in out:
            raise CheckpointError(f"{source}: --set {key}: no such {kind} config field "
                                  f"(fields: {', '.join(sorted(out))})")
        out[key] = value
    return out


def _model_class(kind: str):
    if kind == "separator":
        from ..separator import Separator
        return Separator
    from ..tagger import Tagger
    return Tagger


def parse_overrides(items) -> dict:
    """['num_heads=4', 'hop=40'] -> {'num_heads': 4, 'hop': 40} (values read as JSON, else strings)."""
    import json

    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CheckpointError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def convert_checkpoint(path: str, out_dir: str, kind: str | None = None,
                       overrides: Mapping[str, object] | None = None, log=None) -> str:
    """Official `.ckpt`/`.pth` -> s5jax checkpoint folder. Returns the kind written.

    `out_dir` must be new, empty, or an s5jax checkpoint (replaced atomically); see `checkpoint.save`.
    `overrides` set config fields that the weights cannot tell (num_heads, hop); the result is checked
    against the weights' shapes. `log(line)` is told each stage as it starts (a full-size checkpoint
    takes tens of seconds).
    """
    log = log or (lambda line: None)
    checkpoint.check_target(out_dir)            # refuse a user's folder before the slow part
    check_writable(out_dir)                     # and a folder we cannot write in
    log(f"reading {path} ({os.path.getsize(path) / 1e6:.0f} MB)")
    sd = read_state_dict(path)
    found = detect_kind(sd)
    if kind is None:
        if found is None:
            raise CheckpointError(f"{path}: keys match none of the official models "
                                  f"({', '.join(checkpoint.KINDS)}); first key {next(iter(sd))!r}")
        kind = found
    elif found is not None and found != kind:
        raise CheckpointError(f"{path}: this is a {found} checkpoint, not a {kind}")
    elif found is None:
        raise CheckpointError(f"{path}: keys do not look like a {kind} checkpoint; first key {next(iter(sd))!r}")
    log(f"converting {len(sd)} tensors ({sum(a.size for a in sd.values()) / 1e6:.1f} M values) "
        f"as a {kind} checkpoint")
    config, variables = convert_state_dict(sd, kind, path)
    if overrides:
        config = apply_overrides(config, overrides, kind, path)
        if kind != "m2d-encoder":
            from ..wrapper import check_shapes

            model = _model_class(kind)
            try:
                cfg = model.CONFIG.from_dict(config)
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{path}: invalid {kind} config after --set ({e})") from None
            check_shapes(variables, model.expected_shapes(cfg), path)
    log(f"writing {out_dir} (hashing and saving the weights)")
    checkpoint.save(out_dir, kind, config, variables, source=os.path.abspath(path))
    return kind


def _strip(sd: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
