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
import json
import os
from typing import Any, Callable, Mapping

import jax
import numpy as np

from . import checkpoint
from .runtime import compile_cache, weight_cache
from .official.rules import abstract_variables, unflatten
from .errors import CheckpointError
from .files import write_json_atomic


def _shapes(tree, prefix: str = "") -> dict[str, tuple]:
    if isinstance(tree, Mapping):
        out = {}
        for k, v in tree.items():
            out.update(_shapes(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {prefix: tuple(np.shape(tree))}


def check_shapes(variables: Mapping, want: Mapping[str, tuple], source: str) -> None:
    """CheckpointError naming the first weight that is missing, unexpected or of another shape than
    `want` ({path: shape}, `LoadedModel.expected_shapes`)."""
    check_shape_table(_shapes(variables), want, source)


def check_shape_table(got: Mapping[str, tuple], want: Mapping[str, tuple], source: str) -> None:
    """`check_shapes` on a {path: shape} table of the weights (`weight_cache.stored_shapes`)."""
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
                 identity: dict | None = None, expected: Mapping[str, tuple] | None = None):
        """`variables`: the weight tree, or a Future of `checkpoint.load`'s result (a read under way,
        see `from_checkpoint(wait=False)`), checked against `expected` ({path: shape}) when it ends."""
        self.cfg = cfg
        self.kind = kind or self.default_kind(cfg)
        self.source = source or self.kind
        self._module = None
        self.apply_fn: Callable = self._pure(self)
        self._identity = identity
        self._expected = expected
        if isinstance(variables, concurrent.futures.Future):
            self._reading, self._variables = variables, None
        else:
            self._reading, self._variables = None, jax.device_put(variables)   # once; calls reuse them

    @property
    def module(self):
        """The Flax module (`make_module(cfg)`), built on first use: a start served from the kept
        programs never traces a model, so it never imports Flax and the model code (≈ 0.2 s)."""
        if self._module is None:
            self._module = self.make_module(self.cfg)
        return self._module

    @property
    def variables(self):
        """The weights on the default device. Waits for a read still under way; CheckpointError if
        it failed or the weights do not fit the config."""
        if self._variables is None:
            _, _, variables = self._reading.result()
            check_shapes(variables, self._expected, self.source)
            self._variables, self._reading = jax.device_put(variables), None
        return self._variables

    @property
    def abstract_variables(self):
        """The weights as jax.ShapeDtypeStruct leaves: from the shapes the config implies (float32, as
        `s5jax convert` writes them) while they are still being read, else from the weights. Enough to
        trace and compile a program before the weights arrive."""
        if self._variables is not None or self._expected is None:
            return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), self.variables)
        return unflatten({path: jax.ShapeDtypeStruct(shape, np.float32) for path, shape in self._expected.items()})

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
    def _pure(model: "LoadedModel") -> Callable:
        """(variables, *inputs) -> the module's output (intermediates dropped). Pure: the module is
        fixed by the config, only built (and Flax imported) when the function is first traced."""
        def apply_fn(variables, *inputs):
            return model.module.apply(variables, *inputs)[0]
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
        return abstract_variables(cls.make_module(cfg), *cls.example_inputs(cfg))

    @classmethod
    def expected_shapes(cls, cfg) -> dict[str, tuple]:
        """{weight path: shape} the config implies. Tracing the model for it costs 0.3-0.9 s per model
        at every start, so with JAX's persistent cache on the table is kept beside it
        (`compile_cache.memo_path`; a JSON file, rebuilt when missing or unreadable)."""
        memo = compile_cache.memo_path("shapes", {"model": f"{cls.__module__}.{cls.__qualname__}",
                                                  "config": cfg.to_dict()}, ".json")
        if memo is not None:
            try:
                with open(memo) as f:
                    table = json.load(f)
                return {str(k): tuple(int(d) for d in v) for k, v in table.items()}
            except (OSError, ValueError, TypeError, AttributeError):
                pass                       # absent or damaged: trace and (re)write it
        shapes = _shapes(cls.expected_variables(cfg))
        if memo is not None:
            try:
                os.makedirs(os.path.dirname(memo), exist_ok=True)
                write_json_atomic(memo, {k: list(v) for k, v in shapes.items()}, indent=None)
            except OSError:
                pass                       # a read-only cache only costs the trace next time
        return shapes

    @classmethod
    def from_checkpoint(cls, ckpt_dir: str | os.PathLike, precision: str | None = None, wait: bool = True):
        """Load an s5jax checkpoint folder (`s5jax convert`); CheckpointError if it is another model,
        its config is invalid, or its weights do not fit its config. `precision` ('highest', 'high',
        'default') replaces the config's matmul precision (the identity stays the checkpoint's).

        The weights come from the flat copy kept beside the compilation cache when there is one (a
        mapped file, `weight_cache`), else from orbax (and are then kept for the next start).
        `wait=False` returns while the weights are still being read (in a thread of their own), so a
        caller can trace and compile with `abstract_variables` meanwhile; the first use of `variables`
        waits and raises the read's or the shape check's CheckpointError. (A folder without a stored
        hash is read before returning: its identity needs the weights.)"""
        source = os.fspath(ckpt_dir)
        meta = checkpoint.read_meta(source)
        kind = checkpoint.check_meta(source, meta, cls.KINDS)
        try:
            cfg = cls.CONFIG.from_dict(meta["config"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{os.path.join(source, 'config.json')}: invalid {kind} config: {e}") from None
        cls.check_config(cfg, kind, source)
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="s5jax-read")
        reading = pool.submit(weight_cache.load, source, cls.KINDS, meta)
        pool.shutdown(wait=False)              # the thread ends with the read
        expected = cls.expected_shapes(cfg)    # from the memo, or traced here while the read runs
        if precision is not None:
            cfg = dataclasses.replace(cfg, precision=precision)
        if not wait:
            # the caller compiles from `expected` while the read runs: a config.json edited so that it no
            # longer fits the weights must fail now, not after the compile (≈ 25 s for the full models)
            check_shape_table(weight_cache.stored_shapes(source, meta), expected, source)
        identity = checkpoint.stored_identity(source, meta)
        model = cls(cfg, reading, kind, source, identity, expected)
        if wait or identity is None:
            variables = model.variables
            if identity is None:
                model._identity = checkpoint.make_identity(source, kind, meta["config"], variables)
        return model

    @property
    def num_params(self) -> int:
        """Learned parameters (BatchNorm running statistics not counted); known before the read ends."""
        return checkpoint.num_params(self.abstract_variables)

    @property
    def official_num_params(self) -> int:
        """What the official code counts for this model (`sum(p.numel() for p in model.parameters())`,
        the submission's `nparams`): our learned parameters plus what its module registers as
        parameters without learning or using them (`official_only_params` of the config)."""
        return self.num_params + self.cfg.official_only_params

    @property
    def min_samples(self) -> int:
        """Shortest input: the reflect padding of the STFT needs more than n_fft/2 samples."""
        return self.cfg.n_fft // 2 + 1
