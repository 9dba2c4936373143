"""What training holds besides the loop: the task (model, loss, validation metric), the starting weights
and the fine-tuning scope (which parameters train, which stay frozen).

The parameters are split into two trees of the same nesting, `trainable` and `frozen`: gradients,
clipping and the optimiser state cover `trainable` only (as torch with requires_grad=False), and the
backward pass never computes gradients for the frozen part.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from .. import checkpoint
from ..errors import CheckpointError, ConfigError
from ..labels import NUM_CLASSES, NUM_SLOTS
from ..metric import label_counts_padded, score_batch
from ..models.m2d import M2DConfig, M2DTagger
from ..models.resunet import ResUNetConfig, ResUNetSeparator
from . import losses
from .config import TrainConfig


@dataclass(frozen=True)
class Task:
    """One model kind under training."""
    kind: str                          # checkpoint kind written at export
    cfg: Any                           # M2DConfig or ResUNetConfig
    module: Any                        # the Flax module

    @property
    def is_tagger(self) -> bool:
        return self.kind.startswith("tagger")

    def forward(self, variables, batch, train_bn: bool):
        """-> (outputs: logits [B, 3, 19] or stems [B, 3, n], batch_stats after the call)."""
        if self.is_tagger:
            args = (batch["mixture"],)
        else:
            args = (batch["mixture"], query_vector(batch["labels"]))
        if train_bn:
            (out, _), upd = self.module.apply(variables, *args, mutable=["batch_stats"])
            return out, upd["batch_stats"]
        out, _ = self.module.apply(variables, *args)
        return out, variables["batch_stats"]

    def per_clip_loss(self, outputs, batch) -> jax.Array:
        """The official loss per clip [B] (its batch mean is the training loss)."""
        if self.is_tagger:
            target = jax.nn.one_hot(batch["labels"], NUM_CLASSES + 1, dtype=jnp.float32)
            return losses.tagger_pit_per_clip(outputs, target)[0]
        lv = jax.nn.one_hot(batch["labels"], NUM_CLASSES, dtype=jnp.float32)    # silence -> zeros
        return losses.separator_pit_per_clip(outputs, batch["refs"], lv)[0]

    def clip_metrics(self, outputs, batch) -> dict[str, jax.Array]:
        """Per-clip validation quantities for s5jax.metric totals."""
        if self.is_tagger:
            pred = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
            c = label_counts_padded(pred, batch["labels"])
            return {"tp": c.tp, "fp": c.fp, "fn": c.fn, "correct": c.correct}
        d = score_batch(outputs, batch["labels"], batch["refs"], batch["labels"], batch["mixture"][:, 0])
        c = label_counts_padded(batch["labels"], batch["labels"])
        return {"score": d.score, "valid": d.valid, "class_sum": d.class_sum, "class_count": d.class_count,
                "tp": c.tp, "fp": c.fp, "fn": c.fn, "correct": c.correct}


def query_vector(labels: jax.Array) -> jax.Array:
    """labels [B, 3] (18 = silence) -> the separator's 54-dim query (silent slot = zeros)."""
    return jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32).reshape(labels.shape[0], -1)


# XLA options of the init program: it runs once, so its compile time is all that counts, and that is
# mostly LLVM optimising each parameter's own random-number code (threefry + its distribution). Level 1
# halves it (tiny tagger 24.7 -> 12.1 s, tiny separator 149 -> 64 s under load) and gives the same
# parameters bit for bit as the default level (checked on the tests' tiny models and on the scratch
# configs of the bundled models, train/configs/world/: tagger4, tagger1, quick_tagger, separator_a,
# whose recipe starts from them; separator_a 639 -> 142 s); level 0 does not (other float rounding of
# the normal draws). tests/test_train.py checks the equality on the initialisers the models use.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_variables(task: Task, seed: int, samples: int = 16000) -> dict:
    init, args = _init_program(task, samples)
    v = init(jax.random.PRNGKey(seed), *args)
    return jax.tree.map(np.asarray, {"params": v["params"], "batch_stats": v["batch_stats"]})


@functools.lru_cache(maxsize=4)
def _init_program(task: Task, samples: int):
    """-> (the compiled init(key, *args), args), kept per process: a later start of the same model in
    this process (tests, a notebook) neither traces nor lowers it again (the seed is an input)."""
    x = jnp.zeros((1, task.cfg.in_channels if task.is_tagger else task.cfg.input_channels, samples))
    args = (x,) if task.is_tagger else (x, jnp.zeros((1, NUM_SLOTS * NUM_CLASSES)))
    return jax.jit(task.module.init).lower(jax.random.PRNGKey(0), *args).compile(INIT_COMPILER_OPTIONS), args


def initial_task(cfg: TrainConfig) -> tuple[Task, dict, str]:
    """-> (task, variables {params, batch_stats} as numpy, a one-line description of the start)."""
    where = cfg.init_path or ""
    if cfg.init == "checkpoint":
        kinds = ("tagger-1ch", "tagger-4ch") if cfg.model == "tagger" else ("separator",)
        kind, mcfg, variables = checkpoint.load(where, kinds=kinds)
        if cfg.model_config:
            raise ConfigError("model_config is for init 'scratch' or 'encoder'; a checkpoint brings its own")
        task = make_task(cfg.model, {**mcfg}, kind, where)
        return task, variables, f"checkpoint {where}"
    if cfg.init == "encoder":
        kind, mcfg, enc = checkpoint.load(where, kinds=("m2d-encoder",))
        task = make_task("tagger", {**mcfg, "in_channels": cfg.in_channels, **cfg.model_config},
                     "tagger-4ch" if cfg.in_channels == 4 else "tagger-1ch", where)
        fresh = init_variables(task, cfg.seed)
        got = traverse_util.flatten_dict(enc["params"])
        want = traverse_util.flatten_dict(fresh["params"])
        for k, v in got.items():
            if k not in want or want[k].shape != v.shape:
                raise CheckpointError(f"{where}: encoder weight {'/'.join(k)} {v.shape} does not fit the "
                                      f"tagger config ({want[k].shape if k in want else 'no such weight'})")
            want[k] = v
        missing = [k for k in want if k[0] == "encoder" and k not in got]
        if missing:
            raise CheckpointError(f"{where}: encoder checkpoint lacks {'/'.join(missing[0])}")
        return task, {"params": traverse_util.unflatten_dict(want), "batch_stats": fresh["batch_stats"]}, \
            f"M2D encoder {where} + fresh head (seed {cfg.seed})"
    kind = "separator" if cfg.model == "separator" else ("tagger-4ch" if cfg.in_channels == 4 else "tagger-1ch")
    mc = dict(cfg.model_config)
    if cfg.model == "tagger":
        mc.setdefault("in_channels", cfg.in_channels)
    task = make_task(cfg.model, mc, kind, "model_config")
    return task, init_variables(task, cfg.seed), f"random weights (seed {cfg.seed})"


def make_task(model: str, mcfg: dict, kind: str, where: str) -> Task:
    try:
        if model == "tagger":
            c = M2DConfig.from_dict(mcfg)
            return Task(kind, c, M2DTagger(c))
        c = ResUNetConfig.from_dict(mcfg)
        return Task(kind, c, ResUNetSeparator(c))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: bad {model} config ({e})") from None


# ------------------------------------------------------------------------------------------ scope
def trainable_predicate(task: Task, scope: str, last_n: int) -> Callable[[tuple[str, ...]], bool]:
    """path of a parameter (tuple of names under `params`) -> trains?

    tagger:    head = params/head; last_n = head + the last N encoder blocks + the final encoder norm
    separator: head = the output convolutions (after_conv, out_conv); last_n = those + the last N
               decoder blocks; all = every parameter."""
    if scope == "all":
        return lambda path: True
    if task.is_tagger:
        depth = task.cfg.depth
        if last_n > depth:
            raise ConfigError(f"last_n {last_n} exceeds the encoder's {depth} blocks")
        blocks = {f"blocks_{i}" for i in range(depth - last_n, depth)} if scope == "last_n" else set()

        def tagger_pred(path):
            return path[0] == "head" or (path[0] == "encoder" and (path[1] in blocks or
                                                                   (scope == "last_n" and path[1] == "norm")))
        return tagger_pred
    n_dec = len(task.cfg.channels)
    if last_n > n_dec:
        raise ConfigError(f"last_n {last_n} exceeds the separator's {n_dec} decoder blocks")
    # decoder_block1 is the deepest; the last N applied are the highest-numbered
    dec = {f"decoder_block{i}" for i in range(n_dec - last_n + 1, n_dec + 1)} if scope == "last_n" else set()

    def separator_pred(path):
        return path[0] == "base" and (path[1] in ("after_conv", "out_conv") or path[1] in dec)
    return separator_pred


def split_params(params: dict, pred) -> tuple[dict, dict]:
    """params -> (trainable, frozen): two nested dicts holding complementary leaves."""
    flat = traverse_util.flatten_dict(params)
    train = {k: v for k, v in flat.items() if pred(k)}
    if not train:
        raise ConfigError("the fine-tuning scope selects no parameters")
    frozen = {k: v for k, v in flat.items() if not pred(k)}
    return traverse_util.unflatten_dict(train), traverse_util.unflatten_dict(frozen) if frozen else {}


def merge_params(trainable: dict, frozen: dict) -> dict:
    flat = {**traverse_util.flatten_dict(frozen), **traverse_util.flatten_dict(trainable)}
    return traverse_util.unflatten_dict(flat)


def describe_scope(trainable: dict, frozen: dict) -> str:
    n_t = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(trainable))
    n_f = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(frozen))
    return f"{n_t:,} trainable / {n_f:,} frozen parameters"


def export(out_dir: str | os.PathLike, task: Task, params: dict, batch_stats: dict, source: str) -> None:
    """Write trained weights as an s5jax checkpoint folder (Tagger/Separator.from_checkpoint, infer)."""
    variables = {"params": jax.tree.map(np.asarray, params), "batch_stats": jax.tree.map(np.asarray, batch_stats)}
    checkpoint.save(out_dir, task.kind, task.cfg.to_dict(), variables, source=source)
