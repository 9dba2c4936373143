"""The refined system's configuration: one frozen, JSON-serialisable `SystemConfig`.

Every decision of reference/refined_system.md is a field here.  A config splits into
  - `Switches`: static choices (strings and flags; hashable, passed to `jax.jit` as static), and
  - `Params`:   traced thresholds (a pytree of float32 arrays; stack several with `stack_params`
                to get a leading config axis that `jax.vmap` maps over).

Fields (defaults = the `baseline` preset = today's `s5jax infer`):
  use_tagger1        bool   fuse the 1-ch tagger's proposals with the 4-ch tagger's (off: 4-ch alone)
  proposal           str    "argmax": a track proposes its argmax over 19 classes, nothing if that is
                            silence; "best_nonsilence": its best of the 18 classes (always proposes)
  order              str    "confidence": query slots by fused confidence, descending;
                            "track": the kept candidates in the 4-ch tagger's track order (then the
                            1-ch-only candidates in its track order); silence last either way
  solo_conf          str    confidence of a proposal kept by one tagger only: "prob" (its probability)
                            or "weighted" (w_t · probability)
  confirm            str    re-tag confirmation of slot class c: "max_prob" (max over the 3 re-tag
                            tracks of P[c]) or "argmax" (1.0 if some track's argmax is c, else 0.0)
  refine             bool   verify and refine (re-tag, drop, second separation pass)
  energy_gate        bool   energy gate on the kept stems
  prob_gate          bool   probability gate on the fused confidences
  separator_b        bool   dual-separator selection with a second separator
  gate_before_select bool   gate separator A's stems before the selection (default: select, then gate)
  w1, w4             float  fusion weights of a class proposed by both taggers           [0, 2]
  solo1, solo4       float  keep a one-tagger proposal iff its probability >= solo_t      [0, 2]
                            (a value > 1 never keeps one)
  energy_db          float  energy gate: stem power re mixture channel 0 below this -> silence [-200, 100]
  verify, drop, gate [18]   per-class thresholds (JSON: one number for all classes, or a list of 18) [0, 2]

Presets (the report gives no values; these are documented starting points for `s5jax sweep`):
  baseline  4-ch tagger alone, argmax, track order, every later stage off.
  system1   both taggers (w1 = w4 = 0.5; solo1 = 0.8 > solo4 = 0.5, the 1-ch tagger being the weaker),
            confidence order, verify and refine (verify 0.3, drop 0.6), gates (energy −30 dB, gate 0.3).
  system2   system1 with its thresholds as per-class arrays (same values until a sweep tunes them).
  system3   system2 + dual-separator selection.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, NamedTuple

import numpy as np

from ..errors import S5Error
from ..labels import NUM_CLASSES


class ConfigError(S5Error):
    """A system config file that is not valid JSON, has unknown keys or out-of-range values."""


CHOICES = {
    "proposal": ("argmax", "best_nonsilence"),
    "order": ("confidence", "track"),
    "solo_conf": ("prob", "weighted"),
    "confirm": ("max_prob", "argmax"),
}
FLAGS = ("use_tagger1", "refine", "energy_gate", "prob_gate", "separator_b", "gate_before_select")
SCALARS = {"w1": (0.0, 2.0), "w4": (0.0, 2.0), "solo1": (0.0, 2.0), "solo4": (0.0, 2.0),
           "energy_db": (-200.0, 100.0)}
PER_CLASS = {"verify": (0.0, 2.0), "drop": (0.0, 2.0), "gate": (0.0, 2.0)}
PARAM_NAMES = tuple(SCALARS) + tuple(PER_CLASS)


class Switches(NamedTuple):
    """The static (jit-static, hashable) part of a config."""
    use_tagger1: bool
    proposal: str
    order: str
    solo_conf: str
    confirm: str
    refine: bool
    energy_gate: bool
    prob_gate: bool
    separator_b: bool
    gate_before_select: bool

    @property
    def retags(self) -> bool:
        """The 1-ch tagger re-tags separated stems (verify-and-refine or dual-separator selection)."""
        return self.refine or self.separator_b

    @property
    def needs_tagger1(self) -> bool:
        """The 1-ch tagger is used at all: fused with the 4-ch tagger, or re-tagging stems."""
        return self.use_tagger1 or self.retags


class Params(NamedTuple):
    """The traced part of a config: float32 arrays; scalars [] and per-class [18] (add a leading
    config axis [C] / [C, 18] to vmap over configs)."""
    w1: Any
    w4: Any
    solo1: Any
    solo4: Any
    energy_db: Any
    verify: Any
    drop: Any
    gate: Any


def _per_class(v: float) -> tuple[float, ...]:
    return (float(v),) * NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    use_tagger1: bool = False
    proposal: str = "argmax"
    order: str = "track"
    solo_conf: str = "prob"
    confirm: str = "max_prob"
    refine: bool = False
    energy_gate: bool = False
    prob_gate: bool = False
    separator_b: bool = False
    gate_before_select: bool = False
    w1: float = 0.0
    w4: float = 1.0
    solo1: float = 2.0
    solo4: float = 0.0
    energy_db: float = -30.0
    verify: tuple[float, ...] = _per_class(0.3)
    drop: tuple[float, ...] = _per_class(0.6)
    gate: tuple[float, ...] = _per_class(0.3)

    def __post_init__(self):
        _check(dataclasses.asdict(self), "<config>")

    # -- split for jit / vmap ----------------------------------------------------------------------
    def switches(self) -> Switches:
        return Switches(*(getattr(self, f) for f in Switches._fields))

    def params(self) -> Params:
        return Params(*(np.asarray(getattr(self, f), np.float32) for f in Params._fields))

    def with_params(self, params: Params) -> "SystemConfig":
        """This config with its thresholds replaced by one (unbatched) `Params` row."""
        def short(x):   # the shortest decimal that is the same float32 (0.8, not 0.800000011920929)
            return float(np.format_float_positional(np.float32(x), unique=True, trim="0"))

        new = {}
        for name in PARAM_NAMES:
            a = np.asarray(getattr(params, name), np.float32)
            new[name] = tuple(short(x) for x in a) if name in PER_CLASS else short(a)
        return dataclasses.replace(self, **new)

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in PER_CLASS:    # one number when every class has the same value
            v = d[name]
            d[name] = v[0] if len(set(v)) == 1 else list(v)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Any, source: str = "<config>") -> "SystemConfig":
        """Strict: unknown keys, wrong types and out-of-range values raise ConfigError naming `source`
        and the key.  Missing keys take the baseline defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: a system config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        vals = {}
        for k, v in d.items():
            if k in PER_CLASS:
                if isinstance(v, (list, tuple)):
                    if len(v) != NUM_CLASSES:
                        raise ConfigError(f"{source}: key {k!r}: expected one number or a list of "
                                          f"{NUM_CLASSES}, got a list of {len(v)}")
                    vals[k] = tuple(_number(x, source, k) for x in v)
                else:
                    vals[k] = _per_class(_number(v, source, k))
            elif k in SCALARS:
                vals[k] = _number(v, source, k)
            else:
                vals[k] = v
        _check(vals, source)
        return cls(**vals)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SystemConfig":
        """Read a config JSON file (strict; one-line ConfigError naming the file and the key)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read system config ({e.strerror})") from None
        try:
            d = json.loads(text, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, path)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _number(v: Any, source: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{source}: key {key!r}: expected a number, got {json.dumps(v)}")
    return float(v)


def _check(d: dict, source: str) -> None:
    """Types and ranges of the fields present in d."""
    for k, v in d.items():
        if k in CHOICES and v not in CHOICES[k]:
            raise ConfigError(f"{source}: key {k!r}: {v!r} is not one of {', '.join(CHOICES[k])}")
        if k in FLAGS and not isinstance(v, bool):
            raise ConfigError(f"{source}: key {k!r}: expected true or false, got {json.dumps(v)}")
        if k in SCALARS or k in PER_CLASS:
            lo, hi = {**SCALARS, **PER_CLASS}[k]
            for x in (v if k in PER_CLASS else (v,)):
                if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x) or not lo <= x <= hi:
                    raise ConfigError(f"{source}: key {k!r}: value {x!r} out of range [{lo:g}, {hi:g}]")
            if k in PER_CLASS and len(v) != NUM_CLASSES:
                raise ConfigError(f"{source}: key {k!r}: expected {NUM_CLASSES} values, got {len(v)}")


PRESETS: dict[str, SystemConfig] = {
    "baseline": SystemConfig(),
    "system1": SystemConfig(use_tagger1=True, order="confidence", refine=True, energy_gate=True,
                            prob_gate=True, w1=0.5, w4=0.5, solo1=0.8, solo4=0.5, energy_db=-30.0),
}
PRESETS["system2"] = PRESETS["system1"]      # per-class arrays of the same values; a sweep tunes them
PRESETS["system3"] = dataclasses.replace(PRESETS["system2"], separator_b=True)
# what each preset is, in one line (`--help`, README, the error for an unknown name)
PRESET_SUMMARY = {
    "baseline": "the official baseline, 4-ch tagger alone, silence last, one separation",
    "system1": "both taggers fused, stems re-tagged by the 1-ch tagger, verify and refine, energy and "
               "probability gates, needs --tagger2",
    "system2": "system1 with per-class thresholds, the same values until a sweep tunes them",
    "system3": "system2 + separator B chosen per slot, needs --separator2",
}


def presets_text() -> str:
    """'baseline: …; system1: …; …' for help texts and errors."""
    return "; ".join(f"{name}: {what}" for name, what in PRESET_SUMMARY.items())


def preset(name: str) -> SystemConfig:
    """A named preset (baseline, system1, system2, system3)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown system preset {name!r} (known: {', '.join(PRESETS)})") from None


def load_system(spec: str | os.PathLike) -> SystemConfig:
    """A preset name or a JSON file path -> SystemConfig (what `--system` accepts)."""
    spec = os.fspath(spec)
    if spec in PRESETS:
        return PRESETS[spec]
    if not os.path.exists(spec):
        is_name = os.sep not in spec and not spec.endswith(".json")
        raise ConfigError(f"{'unknown system preset' if is_name else 'no such system config file'} "
                          f"{spec!r}; give a config JSON (e.g. a sweep's best.json) or a preset. {presets_text()}")
    return SystemConfig.load(spec)


def stack_params(params: list[Params]) -> Params:
    """Stack unbatched Params rows into one Params with a leading config axis [C] / [C, 18]."""
    return Params(*(np.stack([np.asarray(getattr(p, f), np.float32) for p in params]) for f in Params._fields))


__all__ = ["SystemConfig", "Switches", "Params", "ConfigError", "PRESETS", "PRESET_SUMMARY", "presets_text",
           "preset", "load_system",
           "stack_params", "PARAM_NAMES", "PER_CLASS", "SCALARS"]
