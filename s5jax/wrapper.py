"""`LoadedModel`: what `Tagger` and `Separator` share — a model with its weights, loaded and checked.

    model = Tagger.from_checkpoint(dir)      # or Separator
    model.apply_fn(model.variables, *arrays)  # the pure function (stable: same object every time)
    model.identity                           # {"path", "kind", "sha256"} (see checkpoint.identity)

At load, the weights' shapes are checked against the shapes the config implies (one CheckpointError
line naming the first difference, never a Flax traceback later), and the weights are placed on the
default device once. Bad call inputs raise AudioError.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

from . import checkpoint
from .errors import CheckpointError


def _shapes(tree, prefix: str = "") -> dict[str, tuple]:
    if isinstance(tree, Mapping):
        out = {}
        for k, v in tree.items():
            out.update(_shapes(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {prefix: tuple(np.shape(tree))}


def check_shapes(variables: Mapping, expected: Mapping, source: str) -> None:
    """CheckpointError naming the first weight that is missing, unexpected or of another shape."""
    got, want = _shapes(variables), _shapes(expected)
    for path in sorted(want):
        if path not in got:
            raise CheckpointError(f"{source}: weights lack {path} that the config implies "
                                  "(config.json does not match the weights)")
        if got[path] != want[path]:
            raise CheckpointError(f"{source}: weight {path} has shape {got[path]}, the config implies "
                                  f"{want[path]} (config.json does not match the weights)")
    extra = sorted(set(got) - set(want))
    if extra:
        raise CheckpointError(f"{source}: weight {extra[0]} is not part of the configured model "
                              "(config.json does not match the weights)")


class LoadedModel:
    """Base of Tagger and Separator. Subclasses set KINDS, CONFIG (a frozen dataclass with from_dict)
    and implement `make_module(cfg)` (a Flax module returning (output, intermediates)) and
    `example_inputs(cfg)` (small arrays for shape tracing)."""

    KINDS: tuple[str, ...] = ()
    CONFIG: Any = None

    def __init__(self, cfg, variables, kind: str = "", source: str | None = None,
                 identity: dict | None = None):
        self.cfg = cfg
        self.kind = kind or self.default_kind(cfg)
        self.source = source or self.kind
        self.module = self.make_module(cfg)
        self.apply_fn: Callable = self._pure(self.module)
        self._identity = identity
        self.variables = jax.device_put(variables)      # once; calls reuse the device arrays

    @property
    def identity(self) -> dict:
        """{"path", "kind", "sha256"}: from the folder it was loaded from, or (built in memory) hashed
        on first use from the config and the weights, path None."""
        if self._identity is None:
            self._identity = checkpoint.make_identity(None, self.kind, self.cfg.to_dict(), self.variables)
        return self._identity

    # ------------------------------------------------------------------ for subclasses
    @classmethod
    def default_kind(cls, cfg) -> str:
        return cls.KINDS[0]

    @staticmethod
    def make_module(cfg):
        raise NotImplementedError

    @staticmethod
    def _pure(module) -> Callable:
        """(variables, *inputs) -> the module's output (intermediates dropped). Pure."""
        def apply_fn(variables, *inputs):
            return module.apply(variables, *inputs)[0]
        return apply_fn

    @staticmethod
    def example_inputs(cfg) -> tuple:
        raise NotImplementedError

    @classmethod
    def check_config(cls, cfg, kind: str, source: str) -> None:
        """Kind-specific consistency of config and kind (CheckpointError)."""

    # ------------------------------------------------------------------ shared
    @classmethod
    def expected_variables(cls, cfg) -> dict:
        """The variable tree the config implies, as shapes only (tracing, no compute)."""
        module = cls.make_module(cfg)
        return jax.eval_shape(lambda *x: module.init(jax.random.PRNGKey(0), *x), *cls.example_inputs(cfg))

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | os.PathLike, precision: str | None = None):
        """Load an s5jax checkpoint folder (`s5jax convert`); CheckpointError if it is another model,
        its config is invalid, or its weights do not fit its config. `precision` ('highest', 'high',
        'default') replaces the config's matmul precision (the identity stays the checkpoint's)."""
        source = os.fspath(ckpt_dir)
        meta = checkpoint.read_meta(source)
        kind = checkpoint.check_meta(source, meta, cls.KINDS)
        try:
            cfg = cls.CONFIG.from_dict(meta["config"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: invalid {kind} config ({e})") from None
        cls.check_config(cfg, kind, source)
        # the weights are read (orbax, its own threads) while the expected shapes are traced here
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            loading = pool.submit(checkpoint.load, source, cls.KINDS, meta)
            try:
                expected = cls.expected_variables(cfg)
            finally:
                _, config, variables = loading.result()
        check_shapes(variables, expected, source)
        if precision is not None:
            cfg = dataclasses.replace(cfg, precision=precision)
        return cls(cfg, variables, kind, source, checkpoint.folder_identity(source, meta, config, variables))

    @property
    def num_params(self) -> int:
        """Learned parameters (BatchNorm running statistics not counted)."""
        return checkpoint.num_params(self.variables)

    @property
    def min_samples(self) -> int:
        """Shortest input: the reflect padding of the STFT needs more than n_fft/2 samples."""
        return self.cfg.n_fft // 2 + 1
