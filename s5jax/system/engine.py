"""The system's wiring: checkpoint folders -> loaded models -> the pure system of s5jax.system.pipeline,
data-parallel over the local devices (s5jax.runtime.parallel) -> an `Engine`, what `s5jax infer`,
`segment` and `submit` run (`baseline_engine` for the official baseline, `system_engine` for a preset
or a config JSON).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np

from ..errors import S5Error
from ..separator import Separator
from ..tagger import Tagger
from .config import PRESETS, load_system
from .pipeline import run_system
from .stages import Stages


@dataclass
class Engine:
    """A system ready to run: `compute(mixture [b, 4, n] float32) -> (labels [b, 3] int, probs [b, 3],
    stems [b, 3, n])` with silent slots last; `settings` = everything that decides the outputs (JSON:
    checkpoint identities, system name and config, precision), recorded with each clip."""
    compute: Callable[[np.ndarray], tuple]
    settings: dict
    nparams: int
    min_samples: int
    # called once before any output is touched, with the first clip's length in samples (None when
    # unknown): may compile for it while the weights are still being read, then waits for them, so a
    # checkpoint that fails to read fails here
    prepare: Callable[[int | None], None] | None = None


class ShardedSystem:
    """The system for `config` (a SystemConfig) over loaded models (Tagger/Separator objects; tagger1
    and separator2 may be None when the config does not use them), its stages data-parallel over
    `devices` (default: the local devices): `(mixture [b, 4, n] float32, pad_to=0) -> SystemOutput`
    (numpy). Weights still being read are waited for at the first call."""

    def __init__(self, config, tagger4, tagger1, separator, separator2=None, devices=None):
        self.switches, self.params = config.switches(), config.params()
        sw = self.switches
        self.stages = Stages(tagger4, tagger1 if sw.needs_tagger1 else None,
                             [separator] + ([separator2] if sw.separator_b and separator2 is not None else []),
                             devices)

    def prepare(self, batch_size: int, samples: int) -> None:
        """Compile the stage programs a batch of `batch_size` clips of `samples` samples runs (from the
        weights' shapes alone, while they are read; kept as exports with JAX's persistent cache on)."""
        sw = self.switches
        self.stages.prepare(batch_size, samples, tag1=sw.use_tagger1, retag=sw.retags,
                            separators=2 if sw.separator_b else 1)

    def __call__(self, mixture: np.ndarray, pad_to: int = 0):
        n = mixture.shape[0]
        out = run_system(self.switches, self.stages, self.params, self.stages.place(mixture, pad_to))
        return jax.tree.map(lambda a: np.asarray(a)[:n], out)


def sharded_system(config, tagger4, tagger1, separator, separator2=None, devices=None) -> ShardedSystem:
    """The system for `config` over loaded models, data-parallel over `devices` (see ShardedSystem)."""
    return ShardedSystem(config, tagger4, tagger1, separator, separator2, devices)


def load_models(tagger_dirs, separator_dir: str, separator2_dir: str | None = None, precision: str | None = None,
                wait: bool = True):
    """Checkpoint folders -> (tagger4, tagger1, separator, separator2); the taggers are given in any
    order (`--tagger`, `--tagger2`) and told apart by their checkpoint kind; absent ones are None.
    `precision` overrides every model's matmul precision (None: the checkpoints' own). `wait=False`:
    return while the weights are still being read (see `LoadedModel.from_checkpoint`)."""
    taggers = {}
    for d in tagger_dirs:
        if d is None:
            continue
        t = Tagger.from_checkpoint(d, precision=precision, wait=wait)
        if t.kind in taggers:
            raise S5Error(f"{d}: a second {t.kind} tagger; give one 4-ch and one 1-ch tagger")
        taggers[t.kind] = t
    separator2 = Separator.from_checkpoint(separator2_dir, precision=precision, wait=wait) if separator2_dir else None
    return (taggers.get("tagger-4ch"), taggers.get("tagger-1ch"),
            Separator.from_checkpoint(separator_dir, precision=precision, wait=wait), separator2)


def check_models(config, name: str, tagger4, tagger1, separator2) -> None:
    """One-line S5Error when `config` needs a model that was not given."""
    sw = config.switches()
    if tagger4 is None:
        raise S5Error(f"system {name} needs a 4-ch tagger (--tagger or --tagger2)")
    if tagger1 is None and sw.needs_tagger1:
        raise S5Error(f"system {name} fuses or re-tags with the 1-ch tagger: give it with --tagger2")
    if separator2 is None and sw.separator_b:
        raise S5Error(f"system {name} selects between two separators: give --separator2")


def _engine(config, models: dict, settings: dict, batch_size: int) -> Engine:
    """An Engine running `config` over `models` {"tagger" (4-ch), "tagger2" (1-ch), "separator",
    "separator2"} (None: not used), data-parallel over the local devices, recording `settings`."""
    t4, t1, sep_a, sep_b = (models[k] for k in ("tagger", "tagger2", "separator", "separator2"))
    run = sharded_system(config, t4, t1, sep_a, sep_b)

    def prepare(samples: int | None) -> None:
        """Compile for the first clip's length while the weights are read, then wait for them."""
        if samples is not None:
            run.prepare(batch_size, samples)
        run.stages.wait()

    def compute(mixture: np.ndarray):
        out = run(mixture, pad_to=batch_size)
        return out.labels, out.probs, out.stems

    used = [m for m in models.values() if m is not None]
    nparams = int(sum(m.official_num_params for m in used))      # as the official writer counts
    return Engine(compute, settings, nparams, max(m.min_samples for m in used), prepare)


def system_engine(system: str, tagger_dirs, separator_dir: str, separator2_dir: str | None,
                  batch_size: int, precision: str | None = None) -> Engine:
    """`s5jax infer --system`: an infer Engine running `system` (preset name or config JSON path)."""
    config = load_system(system)
    t4, t1, sep_a, sep_b = load_models(tagger_dirs, separator_dir, separator2_dir, precision, wait=False)
    check_models(config, system, t4, t1, sep_b)
    sw = config.switches()
    t1 = t1 if sw.needs_tagger1 else None   # loaded but unused: not recorded
    sep_b = sep_b if sw.separator_b else None
    models = {"tagger": t4, "tagger2": t1, "separator": sep_a, "separator2": sep_b}
    settings = {"system": system if system in PRESETS else "custom", "system_config": config.to_dict(),
                **{k: m.identity for k, m in models.items() if m is not None},
                "precision": {k: m.cfg.precision for k, m in models.items() if m is not None}}
    return _engine(config, models, settings, batch_size)


def baseline_engine(tagger_dir: str, separator_dir: str, batch_size: int,
                    precision: str | None = None) -> Engine:
    """The official baseline (tagger -> silence last -> separator): the `baseline` preset over one
    tagger (either kind: it reads the mixture as it reads it) and one separator. `precision` overrides
    both models' matmul precision (None: the checkpoints' own). Returns while the weights are still
    being read; `Engine.prepare` compiles meanwhile and then waits for them. Its settings (what a
    clip record says made it) are plain `s5jax infer`'s: the two checkpoints, no system config."""
    tagger = Tagger.from_checkpoint(tagger_dir, precision=precision, wait=False)
    separator = Separator.from_checkpoint(separator_dir, precision=precision, wait=False)
    settings = {"system": "baseline", "tagger": tagger.identity, "separator": separator.identity,
                "precision": {"tagger": tagger.cfg.precision, "separator": separator.cfg.precision}}
    models = {"tagger": tagger, "tagger2": None, "separator": separator, "separator2": None}
    return _engine(PRESETS["baseline"], models, settings, batch_size)
