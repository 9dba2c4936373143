"""The training config: one JSON file, strict (an unknown key is refused), official defaults.

    {"data_root": "data/dev_set", "out": "runs/tagger4_ft",
     "init": "checkpoint", "init_path": "ckpt/tagger4ch",      # or "encoder" (+ the M2D encoder
                                                               #   folder, fresh head) or "scratch"
     "scope": "head", "zero_share": 0.4, "steps": 5000}

Defaults follow the official recipes (reference §5): tagger lr 1e-3, batch 32, head only; separator
lr 1e-4, batch 4, all weights; AdamW+AMSGrad (0.9, 0.999, 1e-8, no decay), clip 0.5, seed 0.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError
from ..synth.scenes import SynthConfig

MODELS = ("tagger", "separator")
INITS = ("checkpoint", "encoder", "scratch")
SCOPES = ("head", "last_n", "all")
BATCHNORM = ("train", "frozen")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
# settings a resumed run may change (everything else must equal the run it continues)
RESUMABLE_CHANGES = ("steps", "workers", "prefetch", "progress", "out")


@dataclass(frozen=True)
class TrainConfig:
    model: str                              # "tagger" or "separator" (the CLI subcommand)
    data_root: str                          # a dev_set folder in the official layout
    out: str = "runs/train"                 # run folder: checkpoints, logs, exports
    train_split: str = "train"
    valid_split: str = "valid"
    valid_metadata: str | None = None       # fixed validation scenes: a SpAudSyn scene list (valid.json) or
                                            #   scene; None = <data_root>/metadata/valid.json when it exists
                                            #   (the official recipe), else drawn:
    valid_scenes: int = 64                  #   from valid_split with valid_seed, written to OUT/valid.json
    valid_seed: int = 1
    init: str = "checkpoint"
    init_path: str | None = None            # s5jax checkpoint folder (checkpoint / encoder)
    model_config: dict = field(default_factory=dict)   # model sizes (scratch; encoder: head overrides)
    in_channels: int = 4                    # tagger input channels for encoder / scratch starts
    scope: str | None = None                # head | last_n | all (default: tagger head, separator all)
    last_n: int = 2                         # blocks unfrozen by scope last_n
    batchnorm: str = "train"                # train: torch train() statistics; frozen: running statistics
    steps: int = 1000
    batch_size: int | None = None           # global batch over all devices and processes
    lr: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    clip: float = 0.5
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    seed: int = 0
    zero_share: float | None = None         # share of target-free scenes (None = the official count)
    zero_share_start: float | None = None   # curriculum: ramp from this share ...
    zero_share_ramp_steps: int = 0          # ... to zero_share over these steps
    synth: dict = field(default_factory=dict)   # SynthConfig overrides (seconds, ref_db, ranges, ...)
    valid_every: int = 100
    save_every: int = 100
    log_every: int = 10
    workers: int = 0                        # grain worker processes building batches (0 = in-process)
    prefetch: int = 2                       # batches built ahead
    progress: bool = True

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ConfigError(msg)
        need(self.model in MODELS, f"model must be one of {MODELS}")
        need(self.init in INITS, f"init must be one of {INITS}, got {self.init!r}")
        need(self.init == "scratch" or self.init_path, f"init {self.init!r} needs init_path")
        need(self.init != "encoder" or self.model == "tagger", "init 'encoder' is for taggers only")
        need(self.scope is None or self.scope in SCOPES, f"scope must be one of {SCOPES}, got {self.scope!r}")
        need(self.batchnorm in BATCHNORM, f"batchnorm must be one of {BATCHNORM}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}")
        need(self.steps >= 1 and (self.batch_size is None or self.batch_size >= 1), "steps and batch_size must be >= 1")
        need(self.warmup_steps >= 0 and (self.schedule != "warmup_cosine" or self.warmup_steps < self.steps),
             f"warmup_steps must lie in [0, steps) for warmup_cosine, got {self.warmup_steps} of {self.steps}")
        need(min(self.valid_every, self.save_every, self.log_every) >= 1, "valid/save/log_every must be >= 1")
        need(self.last_n >= 1 and self.workers >= 0 and self.prefetch >= 1 and self.valid_scenes >= 1,
             "last_n, prefetch and valid_scenes must be >= 1 and workers >= 0")
        for s in (self.zero_share, self.zero_share_start):
            need(s is None or 0.0 <= s <= 1.0, "zero_share values must lie in [0, 1]")
        need(self.model == "tagger" or not self.zero_share,
             "zero_share > 0 is for taggers (the separator recipe always has 1-3 targets)")
        self.synth_config()                  # unknown synth keys fail here, before any work

    # ---------------------------------------------------------------- derived settings
    @property
    def effective_scope(self) -> str:
        return self.scope or ("head" if self.model == "tagger" else "all")

    @property
    def effective_batch(self) -> int:
        return self.batch_size or (32 if self.model == "tagger" else 4)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.model == "tagger" else 1e-4)

    def synth_config(self) -> SynthConfig:
        recipe = SynthConfig.tagger() if self.model == "tagger" else SynthConfig.separator()
        try:
            return SynthConfig.from_dict({"nevent_range": recipe.nevent_range, **self.synth})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"synth: {e}") from None

    def zero_share_at(self, step: int) -> float | None:
        """The curriculum: zero_share_start -> zero_share linearly over zero_share_ramp_steps."""
        if self.zero_share is None:
            return None
        if self.zero_share_start is None or self.zero_share_ramp_steps <= 0:
            return self.zero_share
        t = min(1.0, step / self.zero_share_ramp_steps)
        return self.zero_share_start + t * (self.zero_share - self.zero_share_start)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "config") -> "TrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None


def load_config(path: str | os.PathLike, model: str, **overrides) -> TrainConfig:
    """Read a JSON config for `model` ("tagger"/"separator"); overrides (e.g. out=...) win over the file.
    Relative paths in the file are taken relative to the file's folder."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable JSON config ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the config must be a JSON object")
    if "model" in d and d["model"] != model:
        raise ConfigError(f"{path}: a {d['model']} config, but `s5jax train {model}` was asked")
    base = os.path.dirname(os.path.abspath(path))
    for k in ("data_root", "out", "init_path", "valid_metadata"):
        if isinstance(d.get(k), str):
            d[k] = os.path.join(base, d[k])
    d.update({k: v for k, v in overrides.items() if v is not None})
    d["model"] = model
    return TrainConfig.from_dict(d, path)
