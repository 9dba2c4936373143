"""Data parallelism over the local devices with `jax.sharding` (the batch axis split over a 1-D device
mesh, the weights replicated), and the traced programs kept on disk beside JAX's compile cache
(jax.export): how the system's pure functions (s5jax.system.pipeline) run, not what they compute.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax import export
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _avals(tree) -> tuple:
    return tuple((tuple(a.shape), np.dtype(a.dtype).str) for a in jax.tree.leaves(tree))


# Programs compiled from kept exports in this process: (export file and its stat, arguments, XLA
# optimisation switch) -> compiled program. Every `DataParallel` of one model config at one shape
# prepares the same export (separators A and B of one config; each command run in one process, e.g.
# `cache` then `infer` of a jax.distributed job): the first compiles it, the others take it here.
# Without it each compiled again, or read JAX's persistent cache back (and a process other than 0
# of a jax.distributed job never writes that cache: it compiled every program anew each time; the
# bundled models at 10 s, 2 processes on 2 CPU cores: 9 model compiles of 7-16 s in process 1 of
# `cache` then `infer --system`, 4 with this). A changed export file (another stat) is a new key.
_COMPILED: dict[tuple, object] = {}
_COMPILED_MAX = 32


class DataParallel:
    """Run a pure function (weights..., batch) over all local devices, batch axis sharded.

    The weights are placed once, replicated on every device; each call pads the batch to a multiple of
    the device count (padding is dropped from the outputs), so any batch size works on any mesh.
    `batch` is one array or a tuple of arrays sharing the leading batch axis.

    `weights` may be a zero-argument callable returning them (e.g. models whose weights are still
    being read): it is called at the first call, or by `weights`. `prepare` compiles the program for
    a batch shape from the weights' shapes alone, so compiling overlaps with reading them.
    """

    def __init__(self, fn: Callable, weights, devices=None):
        devices = list(jax.local_devices() if devices is None else devices)
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.n_devices = len(devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self._weights = weights if callable(weights) else jax.device_put(weights, self.replicated)
        self._fn = jax.jit(fn, in_shardings=(self.replicated, self.batch_sharding),
                           out_shardings=self.batch_sharding)
        # batch avals -> (weight avals it was compiled for, or None once checked; program) from
        # `prepare`; None: it was prepared for other weights than those that came
        self._programs: dict[tuple, tuple | None] = {}

    @property
    def weights(self):
        """The weights, replicated on the mesh (waits for them if they were given as a callable)."""
        if callable(self._weights):
            self._weights = jax.device_put(self._weights(), self.replicated)
        return self._weights

    def padded_size(self, n: int, pad_to: int = 0) -> int:
        """The batch size a call of `n` clips runs at: at least `pad_to`, a multiple of the devices."""
        size = max(n, pad_to)
        return size + (-size) % self.n_devices

    def prepare(self, abstract_weights, batch_shape, dtype=np.float32, key=None) -> None:
        """Trace and compile (or fetch from JAX's persistent cache) the program for batches of
        `batch_shape` (a shape tuple of `dtype`, or a tree of jax.ShapeDtypeStruct for a tuple batch;
        the batch size padded as a call pads it) from `abstract_weights` (jax.ShapeDtypeStruct leaves)
        alone. A call whose weights turn out to differ in shape or dtype compiles anew as usual.

        With `key` (JSON-able: everything `fn` depends on besides the package's code, e.g. the model
        kinds and configs) and JAX's persistent cache on, the traced program is kept there
        (jax.export, `compile_cache.memo_path`): a later run with the same key, shapes and devices
        skips tracing the models (1.5-2 s of a start for the 4-ch tagger + separator on 2 CPU cores)."""
        if isinstance(batch_shape, tuple) and all(isinstance(d, int) for d in batch_shape):
            batch_shape = jax.ShapeDtypeStruct(batch_shape, dtype)
        w = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.replicated),
                         abstract_weights)
        x = jax.tree.map(lambda a: jax.ShapeDtypeStruct((self.padded_size(a.shape[0]),) + tuple(a.shape[1:]),
                                                        a.dtype, sharding=self.batch_sharding), batch_shape)
        program = self._from_export(w, x, key) if key is not None else None
        if program is None:
            program = self._fn.lower(w, x).compile()
        self._programs[_avals(x)] = (_avals(w), program)

    def _from_export(self, w, x, key):
        """The program compiled from the kept export for (key, w, x); exported and kept first when
        there is none. None when the cache is off or the export fails (the caller then traces)."""
        import os

        from .compile_cache import memo_path
        from ..files import write_bytes_atomic

        devices = [(d.platform, d.device_kind, d.id) for d in self.mesh.devices.flat]
        path = memo_path("programs", {"fn": key, "args": [_avals(w), _avals(x)], "devices": devices,
                                      "shardings": [str(self.replicated.spec), str(self.batch_sharding.spec)]},
                         ".jaxexport")
        if path is None:
            return None

        def kept(program=None):
            """The program compiled in this process from the file now at `path` (`program`: keep it)."""
            try:
                st = os.stat(path)
            except OSError:
                return program
            k = (path, st.st_ino, st.st_size, st.st_mtime_ns, _avals(w), _avals(x),
                 bool(jax.config.read("jax_disable_most_optimizations")))
            if program is None:
                return _COMPILED.get(k)
            while len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[k] = program
            return program

        if os.path.isfile(path):
            program = kept()
            if program is not None:
                return program
            try:
                with open(path, "rb") as f:
                    return kept(jax.jit(export.deserialize(bytearray(f.read())).call).lower(w, x).compile())
            except Exception:                  # damaged, or not for these arguments: export it again
                pass
        try:
            exported = export.export(self._fn)(w, x)
            data = exported.serialize()
            program = jax.jit(exported.call).lower(w, x).compile()
        except Exception:                      # e.g. an output type export cannot serialize: trace
            return None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_bytes_atomic(path, data)
        except OSError:
            return program                     # a read-only cache only costs the trace next time
        return kept(program)

    def __call__(self, batch, pad_to: int = 0):
        """batch [b, ...] (or a tuple of such) -> outputs for the b clips. `pad_to` pads a short last
        batch to the usual size so it reuses the compiled program instead of compiling a new shape."""
        n = jax.tree.leaves(batch)[0].shape[0]
        out = self.on_device(self.place(batch, pad_to))
        return jax.tree.map(lambda a: np.asarray(a)[:n], out)

    def place(self, batch, pad_to: int = 0):
        """batch [b, ...] (host arrays, or a tuple of such) -> zero-padded to `padded_size(b, pad_to)`
        and split over the devices: what `on_device` takes."""
        n = jax.tree.leaves(batch)[0].shape[0]
        pad = self.padded_size(n, pad_to) - n
        if pad:
            batch = jax.tree.map(lambda a: np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]), batch)
        return jax.device_put(batch, self.batch_sharding)

    def on_device(self, batch):
        """The program on a batch already on the devices (its size a multiple of the device count,
        e.g. from `place` or another program's output) -> its outputs, left on the devices: programs
        run one after another pass their arrays on without a copy to the host."""
        # a no-op for arrays already split this way; others (a decision program's output) are moved
        batch, weights = jax.device_put(batch, self.batch_sharding), self.weights
        key = _avals(batch)
        prepared = self._programs.get(key)
        if prepared is not None and prepared[0] is not None:
            # first use: the weights are compared with the shapes it was compiled for once; a
            # mismatch leaves this shape to the jit path for good
            prepared = (None, prepared[1]) if prepared[0] == _avals(weights) else None
            self._programs[key] = prepared
        return prepared[1](weights, batch) if prepared is not None else self._fn(weights, batch)
