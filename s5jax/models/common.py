"""What the model configs share: matmul precision by name, strict construction from JSON dicts."""
from __future__ import annotations

import dataclasses
import math
import numbers
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


def check_sizes(cfg, positive_ints: tuple[str, ...] = (), positive_floats: tuple[str, ...] = (),
                finite_floats: tuple[str, ...] = ()) -> None:
    """A config's sizes as the model code needs them, checked once at construction: a zero, negative,
    fractional or non-numeric value (an edited config.json) is a ValueError naming the field, not a
    ZeroDivisionError deep inside a trace.  Integer fields are stored as Python ints."""
    for name in positive_ints:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"field {name!r} must be a positive integer, got {v!r}")
        object.__setattr__(cfg, name, int(v))
    for name in positive_floats + finite_floats:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"field {name!r} must be a finite number, got {v!r}")
        if name in positive_floats and v <= 0:
            raise ValueError(f"field {name!r} must be positive, got {v!r}")
        object.__setattr__(cfg, name, float(v))


def positive_int_tuple(name: str, values: Any, length: int | None = None) -> tuple[int, ...]:
    """A list field of positive integers (e.g. the separator's channels, one pool), as a tuple."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"field {name!r} must be a list of positive integers, got {values!r}")
    values = tuple(values)
    if (length is not None and len(values) != length) or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0 for v in values):
        what = f"a list of {length} positive integers" if length else "a list of positive integers"
        raise ValueError(f"field {name!r} must be {what}, got {list(values)!r}")
    return tuple(int(v) for v in values)
