"""The models that ship with s5jax: small taggers and separators trained by `s5jax train` on the
bundled world (`s5jax world make`, s5jax/synth/world.py) with the recipe in train/configs/world/
(`bash train/world_recipe.sh` reproduces them). They are s5jax checkpoint folders under
s5jax/data/world/, named on the command line as `world:<name>`:

    s5jax infer runs/world/synthesized/test --tagger world:tagger-4ch --separator world:separator-a --out OUT

They hear the world's 18 procedural classes, not real recordings: they are there so that the whole
system (and every test of it) can be seen acting on stems that mean something, on any machine.
"""
from __future__ import annotations

import os
from importlib import resources

from .errors import S5Error

PREFIX = "world:"
NAMES = ("tagger-4ch", "tagger-1ch", "separator-a", "separator-b")


def path(name: str) -> str:
    """The folder of bundled model `name` (one of NAMES)."""
    if name not in NAMES:
        raise S5Error(f"{PREFIX}{name}: no such bundled model; the bundled models are "
                      f"{', '.join(PREFIX + n for n in NAMES)}")
    folder = str(resources.files("s5jax.data").joinpath("world", name))
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise S5Error(f"{folder}: the bundled model {PREFIX}{name} is missing from this installation")
    return folder


def resolve(arg: str | os.PathLike) -> str:
    """A checkpoint argument: `world:<name>` -> the bundled folder; anything else unchanged."""
    arg = os.fspath(arg)
    return path(arg[len(PREFIX):]) if arg.startswith(PREFIX) else arg
