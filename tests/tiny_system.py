"""Tiny tagger and separator checkpoint folders with random weights, for the system, cache and replay
tests: the real model code at a few hundred kilobytes, so a clip of ~1 s runs in milliseconds.

The taggers' last layers are scaled up so their softmax is peaked (random heads give near-uniform
probabilities, under which every decision would be a tie); each checkpoint differs by its seed.

The weights of the four models the tests use (tagger seeds 1, 2; separator seeds 3, 4) are stored in
tests/tiny_models.npz, made by `python tests/tiny_system.py` from the generators below: Flax's `init`
of these models runs op by op (every primitive its own compiled program), ≈ 45 s per process for the
four (≈ 25 s jitted), where reading the stored file takes milliseconds. Other seeds are generated.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from s5jax import checkpoint
from s5jax.models.m2d import M2DConfig, M2DTagger
from s5jax.models.resunet import ResUNetConfig, ResUNetSeparator

TAGGER = dict(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, head_dim=48, track_dim=16)
SEPARATOR = dict(channels=(4, 4, 4, 4, 4, 4), bottleneck_channels=4, condition_dim=8)


def random_variables(model_cls, cfg, seed: int = 0) -> dict:
    """Random weights for every variable `model_cls` (Tagger or Separator) has under `cfg`: kernels and
    embeddings (≥ 2-D) at unit-variance-preserving scale, biases and BatchNorm means in ±0.1, norm scales
    and BatchNorm variances in 0.5-1.5 (non-trivial statistics, so a mix-up in them would show). Only
    the shapes are traced (eval_shape): XLA's compile of a jitted `init` took 50 s CPU for even a small
    separator, and a model once more per config."""
    shapes = model_cls.expected_variables(cfg)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        shape, name = leaf.shape, str(getattr(path[-1], "key", path[-1]))
        if len(shape) >= 2:
            return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.uniform(-0.1, 0.1, shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _scale_heads(params, factor: float):
    """Multiply the tagger's per-track output layers (tracks_t_3) by `factor`: peaked softmax."""
    def walk(tree, path=()):
        if isinstance(tree, dict):
            return {k: walk(v, path + (k,)) for k, v in tree.items()}
        return tree * factor if any(p.startswith("tracks_") and p.endswith("_3") for p in path) else tree
    return walk(params)


STORED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_models.npz")
_STORED_MODELS = {"tagger-4ch/1": (4, 1), "tagger-1ch/2": (1, 2), "separator/3": (None, 3), "separator/4": (None, 4)}


def _stored(name: str):
    """The stored variables of model `name` ("tagger-4ch/1", "separator/3", ...) or None."""
    if name not in _STORED_MODELS or not os.path.isfile(STORED):
        return None
    from s5jax.official.rules import unflatten

    with np.load(STORED) as z:
        flat = {k[len(name) + 1:]: z[k] for k in z.files if k.startswith(name + "/")}
    return unflatten(flat) if flat else None


def generate_tagger(channels: int, seed: int, head_scale: float = 8.0) -> dict:
    """Fresh random tagger variables (Flax init; slow, see the module docstring)."""
    cfg = M2DConfig(in_channels=channels, **TAGGER)
    variables = M2DTagger(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, channels, 4000)))
    variables = jax.tree.map(np.asarray, dict(variables))
    variables["params"] = _scale_heads(variables["params"], head_scale)
    return variables


def write_tagger(folder: str, channels: int, seed: int, head_scale: float = 8.0) -> str:
    cfg = M2DConfig(in_channels=channels, **TAGGER)
    variables = (_stored(f"tagger-{channels}ch/{seed}") if head_scale == 8.0 else None) \
        or generate_tagger(channels, seed, head_scale)
    checkpoint.save(folder, f"tagger-{channels}ch", cfg.to_dict(), variables)
    return folder


def generate_separator(seed: int) -> dict:
    """Fresh random separator variables (Flax init; slow, see the module docstring)."""
    cfg = ResUNetConfig(**SEPARATOR)
    variables = ResUNetSeparator(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, 4, 4000)),
                                           jnp.zeros((1, cfg.query_dim)))
    return jax.tree.map(np.asarray, dict(variables))


def write_separator(folder: str, seed: int) -> str:
    cfg = ResUNetConfig(**SEPARATOR)
    variables = _stored(f"separator/{seed}") or generate_separator(seed)
    checkpoint.save(folder, "separator", cfg.__dict__.copy(), variables)
    return folder


def write_scenes(root: str, count: int = 4, seed: int = 3, seconds: float = 1.0) -> str:
    """A dev-test-layout scene set of `count` short clips (some silent, some with duplicates)."""
    from s5jax.synth.toy import SceneConfig, write_scene_set

    write_scene_set(root, count, seed=seed, cfg=SceneConfig(seconds=seconds, silent_rate=0.2))
    return root


def baseline_scene(root, paths: dict[str, str]) -> tuple:
    """(root, {"tagger": tiny 4-ch tagger, "separator": tiny separator A}, the wav of one 10 s toy scene
    with no silent slot, written under root/set) from `write_models` paths: the segment tests' clip."""
    from s5jax.synth.toy import SceneConfig, write_scene_set

    models = {"tagger": paths["tagger-4ch"], "separator": paths["separator"]}
    write_scene_set(os.path.join(root, "set"), 1, seed=11, cfg=SceneConfig(seconds=10.0, silent_rate=0.0))
    folder = os.path.join(root, "set", "soundscape")
    return root, models, os.path.join(folder, sorted(os.listdir(folder))[0])


def write_models(root: str) -> dict[str, str]:
    """-> {"tagger-4ch", "tagger-1ch", "separator", "separator2": folder} under `root`."""
    return {"tagger-4ch": write_tagger(os.path.join(root, "t4"), 4, seed=1),
            "tagger-1ch": write_tagger(os.path.join(root, "t1"), 1, seed=2),
            "separator": write_separator(os.path.join(root, "sepA"), seed=3),
            "separator2": write_separator(os.path.join(root, "sepB"), seed=4)}


def load_models(paths: dict[str, str]) -> dict:
    """The models of `write_models` -> {"t4", "t1": Tagger, "A", "B": Separator}."""
    from s5jax.separator import Separator
    from s5jax.tagger import Tagger

    return {"t4": Tagger.from_checkpoint(paths["tagger-4ch"]), "t1": Tagger.from_checkpoint(paths["tagger-1ch"]),
            "A": Separator.from_checkpoint(paths["separator"]), "B": Separator.from_checkpoint(paths["separator2"])}


if __name__ == "__main__":         # (re)write tests/tiny_models.npz from the generators
    from s5jax.official.rules import flatten

    out = {}
    for name, (channels, seed) in _STORED_MODELS.items():
        v = generate_separator(seed) if channels is None else generate_tagger(channels, seed)
        out.update({f"{name}/{k}": np.asarray(a) for k, a in flatten(v).items()})
    np.savez_compressed(STORED, **out)
    print(f"{STORED}: {len(out)} arrays")
