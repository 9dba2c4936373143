"""PyTorch state_dict -> Flax variables, by an explicit table of rules.

Each model family has its table (official/m2d.py, official/resunet.py): `Rule(pattern, target,
transform)` says that the torch key
matching `pattern` (a regular expression, full match, with the model prefix already removed) becomes
the Flax leaf at `target` (a '/'-path whose first part is the variable collection: `params`,
`batch_stats`, or `fixed` for non-learned buffers we recompute and only check), after `transform`
(the layout change between PyTorch and Flax). `target=None` names a key the official model carries
but never uses; it is skipped on purpose.

`apply_rules` is strict: a key no rule claims, a key two rules claim, a model leaf no key fills, or a
shape that disagrees is a CheckpointError naming the key. Nothing is guessed.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import numpy as np

from ..errors import CheckpointError

# PyTorch layout -> Flax layout
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "id": lambda w: w,
    "linear": lambda w: w.T,                                   # [out, in] -> [in, out]
    "conv2d": lambda w: w.transpose(2, 3, 1, 0),               # [O, I, H, W] -> [H, W, I, O]
    "conv_transpose2d": lambda w: w.transpose(2, 3, 0, 1),     # [I, O, H, W] -> [H, W, I, O]
}


@dataclass(frozen=True)
class Rule:
    """torch key regex (full match) -> Flax path template ('{0}' etc. are the regex groups)."""
    pattern: str
    target: str | None
    transform: str = "id"

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}")


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": {"c": leaf}}} -> {"a/b/c": leaf} (the inverse of `unflatten`)."""
    out = {}
    for k, v in tree.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> dict:
    """{"a/b/c": leaf} -> {"a": {"b": {"c": leaf}}}."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def apply_rules(state_dict: Mapping[str, np.ndarray], rules: list[Rule], expected: Mapping,
                source: str = "checkpoint") -> tuple[dict, dict]:
    """Map a torch state_dict onto the variable tree `expected` (leaves with .shape, e.g. from
    `jax.eval_shape(model.init, ...)`).

    Returns (variables, fixed): `variables` has exactly the structure of `expected` (numpy float32
    leaves); `fixed` maps each `fixed/...` target to its array for the model's own checks.
    Raises CheckpointError naming `source` and the offending key.
    """
    compiled = [(re.compile(r.pattern), r) for r in rules]
    want = {p: tuple(v.shape) for p, v in flatten(expected).items()}
    got: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    fixed: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        hits = [(m, r) for rx, r in compiled if (m := rx.fullmatch(key))]
        if not hits:
            raise CheckpointError(f"{source}: unexpected key {key!r} (no conversion rule; "
                                  "a checkpoint of another model or version?)")
        if len(hits) > 1:  # a table bug, but say which key
            raise CheckpointError(f"{source}: key {key!r} matches {len(hits)} conversion rules")
        m, rule = hits[0]
        if rule.target is None:
            continue
        path = rule.target.format(*m.groups())
        arr = TRANSFORMS[rule.transform](np.asarray(value))
        if path.startswith("fixed/"):
            fixed[path[len("fixed/"):]] = arr
            continue
        if path not in want:
            raise CheckpointError(f"{source}: key {key!r} maps to {path}, which the model does not have")
        if path in got:
            raise CheckpointError(f"{source}: keys {origin[path]!r} and {key!r} both map to {path}")
        if tuple(arr.shape) != want[path]:
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(np.shape(value))}, the model "
                                  f"expects {want[path]} (after {rule.transform}) — another model size?")
        if not np.issubdtype(arr.dtype, np.floating):
            raise CheckpointError(f"{source}: key {key!r} has dtype {arr.dtype}, expected floating point")
        got[path] = np.asarray(arr, dtype=np.float32)
        origin[path] = key
    missing = [p for p in want if p not in got]
    if missing:
        raise CheckpointError(f"{source}: missing weights for {len(missing)} model entries, first "
                              f"{missing[0]} (a key removed or renamed in the checkpoint?)")
    return unflatten(got), fixed


def abstract_variables(module, *example_args, **kwargs) -> dict:
    """The variable tree a Flax module expects, as shapes only (no compute, no memory). Arguments are
    arrays or jax.ShapeDtypeStruct; only their shapes and dtypes matter.

    Tracing a model's init costs 0.5-1 s of CPU (the full-size separator or tagger alike), and one
    process often asks again for the same model (a conversion and its shape check, a series of
    conversions of one checkpoint size): a module whose fields are its config alone (`cfg`, a
    frozen dataclass) is traced once per process for each config and input shapes; each call gets
    its own containers."""
    specs = tuple((tuple(np.shape(a)), np.dtype(a.dtype).str) for a in example_args)
    fields = [f for f in getattr(module, "__dataclass_fields__", {}) if f not in ("parent", "name")]
    if fields == ["cfg"] and not kwargs and module.name is None and module.parent is None and _hashable(module.cfg):
        tree = _abstract_of_config(type(module), module.cfg, specs)
    else:
        tree = _abstract(module, specs, kwargs)
    return jax.tree.map(lambda leaf: leaf, tree)        # new containers: callers may edit their copy


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _abstract(module, specs, kwargs) -> dict:
    args = [jax.ShapeDtypeStruct(shape, np.dtype(dtype)) for shape, dtype in specs]
    return jax.eval_shape(lambda *x: module.init(jax.random.PRNGKey(0), *x, **kwargs), *args)


@functools.lru_cache(maxsize=16)
def _abstract_of_config(module_type, cfg, specs) -> dict:
    return _abstract(module_type(cfg), specs, {})


def require_fixed(fixed: Mapping[str, np.ndarray], name: str, ours: np.ndarray, source: str,
                  rtol: float = 1e-4) -> None:
    """Check a non-learned buffer of the checkpoint against the value our code computes."""
    if name not in fixed:
        raise CheckpointError(f"{source}: missing fixed buffer {name!r}")
    theirs = np.asarray(fixed[name], dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64)
    if theirs.shape != ours.shape:
        raise CheckpointError(f"{source}: buffer {name!r} has shape {theirs.shape}, ours {ours.shape} "
                              "(another front-end setting?)")
    err = np.linalg.norm(theirs - ours) / max(np.linalg.norm(ours), 1e-12)
    if not err <= rtol:
        raise CheckpointError(f"{source}: buffer {name!r} differs from our front end (relative error "
                              f"{err:.2e}): the checkpoint was made with another front-end setting")
