"""Read and write PyTorch checkpoint files (`torch.save` zip format) with numpy alone.

PyTorch checkpoints are a zip archive holding a pickle (`<root>/data.pkl`) whose tensors point to raw
storages (`<root>/data/<key>`). Loading one with `pickle` would let the file call any Python function,
so the reader here uses a restricted unpickler:

* tensor and storage rebuilders of torch are mapped onto numpy (never imported, never called);
* plain containers (`collections.OrderedDict`, safe builtins) are rebuilt as themselves;
* any other class or function (Lightning hyper-parameters, callbacks, optimiser classes, ...) becomes
  an inert `Opaque` record of its name and arguments, and is never called;
* a global from a module that can run code (`os`, `subprocess`, `builtins.eval`, ...) is refused with
  a `CheckpointError` naming the file and the global.

So nothing in a checkpoint is ever executed, and torch need not be installed. `save_torch_file` writes
the same format (readable by `torch.load`), used by the tests and the demo to produce official-format
checkpoints from numpy weights.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from ..errors import CheckpointError
from ..files import atomic_writer

# torch storage class name -> numpy dtype
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {  # torch.<dtype> globals (used by UntypedStorage-era files)
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
    "bool": np.bool_,
}
try:  # bfloat16 storages: ml_dtypes ships with jax
    import ml_dtypes

    _STORAGE_DTYPES["BFloat16Storage"] = ml_dtypes.bfloat16
    _TORCH_DTYPES["bfloat16"] = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover
    pass

# Modules whose globals can execute code or touch the system: a checkpoint naming one is refused.
_FORBIDDEN_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "code",
    "codeop", "pty", "ctypes", "pickle", "_pickle", "marshal", "types", "operator",
    "webbrowser", "asyncio", "multiprocessing", "threading", "signal", "tempfile", "io",
    "glob", "inspect", "builtins", "__builtin__", "exec", "eval", "torch.hub", "numpy.testing",
}
# Not listed on purpose: pathlib, functools, ... appear in real Lightning hyper-parameters and are
# harmless here, as nothing a pickle names is ever called; they load as Opaque records.
_SAFE_BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "dict", "list",
                  "tuple", "int", "float", "str", "bool", "bytes"}


class Opaque(dict):
    """An object of a class we do not rebuild (hyper-parameters, callback states, ...): kept inert.

    It absorbs whatever the pickle puts into it (items, appended elements, state) so that container
    types we do not know (defaultdict, DictConfig, ...) load as plain records.
    """

    def __init__(self, name: str, args: tuple = ()):
        super().__init__()
        self.name, self.args, self.state, self.items_appended = name, args, None, []

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.items_appended.append(item)

    def extend(self, items):
        self.items_appended.extend(items)

    def __repr__(self):
        return f"Opaque({self.name})"


class _OpaqueClass:
    """Stands in for an unknown global: 'calling' it records the call instead of running anything."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        return Opaque(self.name, args)

    def __reduce__(self):  # pragma: no cover - never pickled back
        raise TypeError("opaque")


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_):
    """torch._utils._rebuild_tensor_v2 on numpy: a strided view of a flat storage, copied out."""
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    # a damaged or hostile file must not make as_strided read past its storage
    if offset < 0 or any(n < 0 for n in size) or any(st < 0 for st in stride) or (
            all(n > 0 for n in size) and offset + sum((n - 1) * st for n, st in zip(size, stride)) >= storage.size):
        raise ValueError(f"tensor of size {tuple(size)} does not fit its storage of {storage.size} elements")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *_):
    return data


def _rebuild_from_type(func, new_type, args, state):
    """torch._tensor._rebuild_from_type_v2 (tensor subclasses): keep the tensor, drop the type."""
    return func(*args)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str):
        super().__init__(file)
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        # protocol-2 pickles name python-2 globals (__builtin__.long, ...); map them as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if module in ("torch._utils",) and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return _rebuild_from_type
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _StorageType(_TORCH_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        top = module.split(".")[0]
        if module in _FORBIDDEN_MODULES or top in _FORBIDDEN_MODULES:
            raise CheckpointError(f"{self._path}: refused to load: the pickle asks for {full}, which "
                                  "could run code (s5jax never executes code from a checkpoint)")
        return _OpaqueClass(full)

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unsupported persistent id in pickle: {pid!r:.80}")
        stype, key = pid[1], str(pid[2])
        dtype = stype.dtype if isinstance(stype, _StorageType) else np.uint8
        if key not in self._storages:
            name = f"{self._root}/data/{key}"
            try:
                raw = self._archive.read(name)
            except KeyError:
                raise CheckpointError(f"{self._path}: truncated or damaged checkpoint (storage {key} "
                                      "missing from the archive)") from None
            self._storages[key] = np.frombuffer(raw, dtype=dtype)
        return self._storages[key]


def load_torch_file(path: str | os.PathLike) -> Any:
    """Load a `torch.save` zip file into nested python containers with numpy arrays for tensors.

    Raises CheckpointError (one line, naming the file) for anything that is not such a file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise CheckpointError(f"{path}: legacy (pre-1.6, non-zip) torch checkpoint; re-save it with "
                                  "a recent torch.save") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or truncated ({e})") from None
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
        raise CheckpointError(f"{path}: zip file holds no data.pkl: not a PyTorch checkpoint")
    root = pkl[0][: -len("data.pkl")].rstrip("/")
    try:
        with archive:
            up = _Unpickler(io.BytesIO(archive.read(pkl[0])), archive, root, path)
            return up.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            IndexError, KeyError, AttributeError, OSError) as e:
        raise CheckpointError(f"{path}: damaged or truncated checkpoint ({type(e).__name__}: {e})"
                              ) from None


# --------------------------------------------------------------------------------------- writing
class _Global:
    """A reference to a torch global, written as a GLOBAL opcode without importing torch."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Tensor:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


_DTYPE_STORAGE = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}


def _save_global_ref(pickler, obj: _Global):
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    pickler.memoize(obj)


class _Pickler(pickle._Pickler):  # the pure-python pickler lets us emit torch globals by name
    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        if isinstance(obj, _Tensor):
            storage = _Global("torch", _DTYPE_STORAGE[obj.array.dtype])
            return ("storage", storage, obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            key = str(len(self.tensors))
            arr = obj if obj.flags.c_contiguous else obj.copy(order="C")  # keeps 0-d shapes
            self.tensors.append(_Tensor(key, arr))
            stride, acc = [], 1
            for s in reversed(arr.shape):
                stride.insert(0, acc)
                acc *= s
            return (_REBUILD,
                    (self.tensors[-1], 0, tuple(arr.shape), tuple(stride), False,
                     collections.OrderedDict()))
        return NotImplemented


class _GlobalCall(_Global):
    def __call__(self, *args):  # pickle wants the REDUCE target to look callable; never called
        raise TypeError("placeholder")


_Pickler.dispatch[_Global] = _save_global_ref
_Pickler.dispatch[_GlobalCall] = _save_global_ref
_REBUILD = _GlobalCall("torch._utils", "_rebuild_tensor_v2")


def save_torch_file(obj: Any, path: str | os.PathLike) -> None:
    """Write nested dicts/lists of numpy arrays in the `torch.save` zip format (readable by torch.load)."""
    path = os.fspath(path)
    buf = io.BytesIO()
    p = _Pickler(buf, protocol=2)
    p.tensors = []
    p.dump(obj)
    root = "archive"
    with atomic_writer(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{root}/data.pkl", buf.getvalue())
        z.writestr(f"{root}/byteorder", "little")
        for t in p.tensors:
            z.writestr(f"{root}/data/{t.key}", t.array.tobytes())
        z.writestr(f"{root}/version", "3\n")
