"""The models' programs the refined system is run from, one per model, each compiled once per shape:

    tag4(mixture [b, 4, n])            -> P4 [b, 3, 19]   the 4-ch tagger's softmax
    tag1(x [b, C, n])                  -> P1 [b, 3, 19]   the 1-ch tagger's softmax of channel 0: of a
                                                          mixture, or of stems folded to [3b, 1, n]
                                                          (`retag`)
    separate[i](mixture, queries [b,3]) -> stems [b, 3, n] separator A (i = 0) or B (i = 1)

s5jax.system.pipeline runs them one after another (the decisions between them are small programs of
their own), data-parallel over one device mesh, the arrays staying on the devices. Why stages and not
one program per switch set with the models inlined: XLA's compile time grows with the program, and
that program held the separator once per pass (A, A's second pass, B) and the 1-ch tagger once per
re-tag, compiled again for every switch set, `cache` and `sweep` fill (the bundled world's models, one
10 s clip, 2 CPU cores: system3's one program 82 s of trace + compile; the 4-ch tagger's program 11 s,
the 1-ch tagger's 10 s, the separator's 17 s, shared by every switch set, the baseline and the cache
builder; `python bench/bench_system.py --models world`: first calls of baseline, system1, system3 in
one process 171 s → 67 s). A stage's function is the same object for the same
model config (`_tag_fn`, `_separate_fn`), so separators A and B of one config share one compiled
program, and its program is the same across processes (JAX's persistent compile cache serves it).
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from ..runtime.parallel import DataParallel
from ..separator import query_vector


@functools.lru_cache(maxsize=None)
def _tag_fn(cls, cfg, one_channel: bool):
    """(tagger variables, x [b, C, n]) -> softmax [b, 3, 19]; a 1-ch tagger reads channel 0."""
    def tag(variables, x):
        module = cls.make_module(cfg)          # Flax imported and the module built only when traced
        logits = module.apply(variables, x[:, :1] if one_channel else x)[0]
        return jax.nn.softmax(logits, axis=-1)
    return tag


@functools.lru_cache(maxsize=None)
def _separate_fn(cls, cfg):
    """(separator variables, (mixture [b, 4, n], queries [b, 3] class ids)) -> stems [b, 3, n]."""
    def separate(variables, batch):
        mixture, queries = batch
        return cls.make_module(cfg).apply(variables, mixture, query_vector(queries))[0]
    return separate


@jax.jit
def _fold(stems: jax.Array) -> jax.Array:
    """stems [b, 3, n] -> [3b, 1, n]: each stem a one-channel clip for the 1-ch tagger."""
    b, k, n = stems.shape
    return stems.reshape(b * k, 1, n)


@functools.partial(jax.jit, static_argnums=1)
def _unfold(P: jax.Array, slots: int) -> jax.Array:
    """[3b, 3, 19] -> [b, slot 3, track 3, 19]."""
    return P.reshape(P.shape[0] // slots, slots, *P.shape[1:])


class Stages:
    """The stage programs over loaded models (Tagger/Separator objects; `tagger1` may be None when
    nothing re-tags or fuses with it), on one 1-D mesh of `devices` (default: the local devices).
    Weights may still be being read: each model's are placed at its program's first call."""

    def __init__(self, tagger4, tagger1, separators: list, devices=None):
        def program(fn, model):
            return DataParallel(fn, lambda: model.variables, devices)

        self.models = {"tag4": tagger4, "tag1": tagger1}
        self.tag4 = tagger4 and program(_tag_fn(type(tagger4), tagger4.cfg, False), tagger4)
        self.tag1 = tagger1 and program(_tag_fn(type(tagger1), tagger1.cfg, True), tagger1)
        self.separate = [program(_separate_fn(type(s), s.cfg), s) for s in separators]
        for i, s in enumerate(separators):
            self.models[f"separate{i}"] = s
        self._any = next(p for p in (self.tag4, self.tag1, *self.separate) if p is not None)

    # ---------------------------------------------------------------- placement
    def padded_size(self, n: int, pad_to: int = 0) -> int:
        return self._any.padded_size(n, pad_to)

    def place(self, batch, pad_to: int = 0):
        """Host arrays [b, ...] (or a tuple) -> zero-padded and split over the mesh's devices."""
        return self._any.place(batch, pad_to)

    # ---------------------------------------------------------------- the stages
    def retag(self, stems: jax.Array) -> jax.Array:
        """1-ch tagger softmax of every stem: stems [b, 3, n] (on the devices) -> [b, slot 3, track 3, 19]."""
        return _unfold(self.tag1.on_device(_fold(stems)), stems.shape[1])

    # ---------------------------------------------------------------- before the weights
    def prepare(self, batch_size: int, samples: int, tag1: bool, retag: bool, separators: int) -> None:
        """Compile (or fetch, see `DataParallel.prepare`) the programs a batch of `batch_size` clips of
        `samples` samples will run, from the weights' shapes alone: the 4-ch tagger and separator A
        always, the 1-ch tagger on mixtures if `tag1`, on folded stems if `retag`, and the first
        `separators` separators. Each is kept as an export under its model's kind and config."""
        names = ["tag4"] + (["tag1"] if tag1 else []) + (["retag"] if retag else [])
        self.prepare_programs(batch_size, samples, names + [f"separate{i}" for i in range(max(separators, 1))])

    def prepare_programs(self, batch_size: int, samples: int, names) -> None:
        """`prepare` for the programs `names` (of "tag4", "tag1" on mixtures, "retag" the 1-ch tagger on
        folded stems, "separate0", "separate1"). Whoever runs these models at this shape — infer,
        the cache builder, a sweep filling entries — prepares them so: one kept export and one
        compiled program serve them all (a program jitted directly is another program to XLA, and
        compiles again)."""
        b = self.padded_size(batch_size)
        mixture = jax.ShapeDtypeStruct((b, 4, samples), np.float32)
        queries = jax.ShapeDtypeStruct((b, 3), np.int32)
        stems = jax.ShapeDtypeStruct((3 * b, 1, samples), np.float32)
        programs = {"tag4": ("tag4", self.tag4, mixture), "tag1": ("tag1", self.tag1, mixture),
                    "retag": ("tag1", self.tag1, stems)}
        programs.update({f"separate{i}": (f"separate{i}", p, (mixture, queries)) for i, p in enumerate(self.separate)})
        for name in names:
            model_name, prog, batch = programs[name]
            model = self.models[model_name]
            key = {"stage": model_name.rstrip("0123456789"), "kind": model.kind, "config": model.cfg.to_dict()}
            prog.prepare(model.abstract_variables, batch, key=key)

    def wait(self) -> None:
        """Wait for every model's weights (a read that failed raises its CheckpointError here)."""
        for p in (self.tag4, self.tag1, *self.separate):
            if p is not None:
                p.weights
