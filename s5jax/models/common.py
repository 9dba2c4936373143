"""What the model configs share: matmul precision by name, strict construction from JSON dicts."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax

# Configs store the precision as a string so config.json stays JSON; "highest" makes GPU/TPU matmuls
# and convolutions float32-exact like the CPU (and like the PyTorch originals).
PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "high": jax.lax.Precision.HIGH,
              "default": jax.lax.Precision.DEFAULT}


def known_fields(cls, d: Mapping[str, Any], what: str) -> dict:
    """`d` as constructor keywords of dataclass `cls`; an unknown field is a ValueError (a config
    written by another version should fail loudly, not be half-read)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config fields {sorted(unknown)}")
    return dict(d)
