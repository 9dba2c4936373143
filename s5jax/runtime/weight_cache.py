"""A checkpoint's weights kept as one flat file beside the compilation cache, read by mapping it.

Reading an orbax checkpoint copies every weight into freshly allocated memory (the 4-ch tagger's
513 MB: ≈ 1 s at start-up, mostly the kernel zeroing and faulting in new pages), and placing them on
the CPU device may copy them again. A flat file of the same arrays, each aligned, is instead mapped
(`mmap`, pages prefaulted from the page cache): the arrays are views of the file, and JAX's CPU device
takes aligned, read-only host arrays without a copy. So once a checkpoint has been read, later starts
get its weights in a few milliseconds and never import orbax.

    <cache>/s5jax-weights/<sha256 of the key>.bin     (<cache>: JAX's persistent cache folder)

    b"S5JAXWTS" | u64 header length | header JSON | zero padding | arrays, each at a 64-byte boundary

The key is the checkpoint's stored weight hash (`config.json` "sha256", written by `checkpoint.save`)
together with the name, size and modification time of every file under its `variables/`, so a folder
whose weights changed on disk is read from orbax again. The file is written atomically, in a thread
of its own, after an orbax read, and is only a copy: safe to delete at any time; at most `KEEP` are
kept (the least recently used beyond that are removed when a new one is written). Without a cache
folder, or for a folder without a stored hash, nothing is kept and `load` is `checkpoint.load`.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import struct
import threading
from typing import Mapping

import numpy as np

from .. import checkpoint
from ..official.rules import flatten, unflatten
from ..errors import S5Error
from ..files import atomic_writer, clean_stale_parts

MAGIC = b"S5JAXWTS"
FORMAT = 1
ALIGN = 64          # XLA's CPU buffers are 64-byte aligned: such host arrays are used in place
KEEP = 6            # weight files kept (the refined system loads four models)
WRITER = "s5jax-keep-weights"   # the writing thread's name
_NAME = re.compile(r"^[0-9a-f]{64}\.bin$")


def _signature(ckpt_dir: str) -> list:
    """[relative name, size, mtime_ns] of every file under `variables/`, sorted."""
    root = os.path.join(ckpt_dir, "variables")
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            out.append([os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns])
    return out


def path_for(ckpt_dir: str | os.PathLike, meta: Mapping, folder: str | None = None) -> tuple[str, str] | None:
    """(file path, key digest) for a checkpoint folder, or None when nothing may be kept: no cache
    folder (`folder`, else JAX's persistent cache when on) or no stored weight hash."""
    import jax

    folder = folder or jax.config.jax_compilation_cache_dir
    stored = checkpoint.stored_hash(meta)       # the weights' copy: valid whatever config.json says now
    if not folder or stored is None:
        return None
    try:
        signature = _signature(os.fspath(ckpt_dir))
    except OSError:
        return None
    key = hashlib.sha256(json.dumps({"format": FORMAT, "sha256": stored, "files": signature},
                                    sort_keys=True).encode()).hexdigest()
    return os.path.join(folder, "s5jax-weights", key + ".bin"), key


def _plain_keys(tree: Mapping) -> bool:
    """Every key a string without "/": the tree survives `flatten` / `unflatten` unchanged."""
    return all(isinstance(k, str) and "/" not in k and (not isinstance(v, Mapping) or _plain_keys(v))
               for k, v in tree.items())


def write(path: str, key: str, variables: Mapping) -> bool:
    """Keep `variables` at `path` (atomically); False (nothing written) if a leaf is not a plain
    numeric array or the folder is not writable. Then drops the least recently used files beyond KEEP."""
    if not _plain_keys(variables):
        return False
    leaves = [(p, np.asarray(a)) for p, a in flatten(variables).items()]
    if any(a.dtype.kind not in "biuf" or a.dtype.byteorder == ">" for _, a in leaves):
        return False
    entries, offset = [], 0
    for p, a in leaves:
        offset += -offset % ALIGN
        entries.append({"path": p, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset})
        offset += a.nbytes
    header = json.dumps({"format": FORMAT, "key": key, "arrays": entries, "data_bytes": offset}).encode()
    start = len(MAGIC) + 8 + len(header)
    start += -start % ALIGN
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_writer(path) as f:
            f.write(MAGIC + struct.pack("<Q", len(header)) + header)
            f.write(b"\0" * (start - f.tell()))
            for e, (_, a) in zip(entries, leaves):
                f.write(b"\0" * (start + e["offset"] - f.tell()))
                f.write(np.ascontiguousarray(a).tobytes())
    except (OSError, S5Error):          # a cache that cannot be written only costs the conversion next time
        return False
    _evict(folder, keep=path)
    return True


def _evict(folder: str, keep: str) -> None:
    clean_stale_parts(folder)
    try:
        names = [n for n in os.listdir(folder) if _NAME.match(n)]
        by_age = sorted(names, key=lambda n: os.stat(os.path.join(folder, n)).st_mtime_ns, reverse=True)
    except OSError:
        return
    for name in by_age[KEEP:]:
        if os.path.join(folder, name) != keep:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _header(f, size: int, key: str) -> tuple[dict, int] | None:
    """(header, start of the arrays) of an open kept file, or None if it is not a valid file of `key`."""
    head = f.read(len(MAGIC) + 8)
    if len(head) != len(MAGIC) + 8 or head[:len(MAGIC)] != MAGIC:
        return None
    (n,) = struct.unpack("<Q", head[len(MAGIC):])
    if n > size:
        return None
    header = json.loads(f.read(n))
    start = len(MAGIC) + 8 + n
    start += -start % ALIGN
    if (header.get("format") != FORMAT or header.get("key") != key
            or start + int(header["data_bytes"]) != size):
        return None
    return header, start


def stored_shapes(ckpt_dir: str | os.PathLike, meta: Mapping) -> dict[str, tuple]:
    """{weight path: shape} of a checkpoint folder's weights without reading them: from the kept
    file's header when there is one (microseconds), else from orbax's metadata (`checkpoint.stored_shapes`)."""
    where = path_for(ckpt_dir, meta)
    if where is not None:
        try:
            with open(where[0], "rb") as f:
                found = _header(f, os.fstat(f.fileno()).st_size, where[1])
            if found is not None:
                return {str(e["path"]): tuple(int(d) for d in e["shape"]) for e in found[0]["arrays"]}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, struct.error):
            pass                                 # absent or damaged: ask orbax
    return checkpoint.stored_shapes(ckpt_dir)


def read(path: str, key: str) -> dict | None:
    """The weight tree mapped from `path` (read-only arrays viewing the file), or None if the file is
    absent, of another key, or damaged in any way (the caller then reads the checkpoint)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            found = _header(f, size, key)
            if found is None:
                return None
            header, start = found
            # prefault every page now (from the page cache, in the reading thread), not at first use
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            mapped = mmap.mmap(f.fileno(), size, flags=flags, prot=mmap.PROT_READ)
        flat = {}
        for e in header["arrays"]:
            dtype, shape = np.dtype(e["dtype"]), tuple(int(d) for d in e["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            if (not isinstance(e["path"], str) or dtype.kind not in "biuf" or min(shape, default=0) < 0
                    or int(e["offset"]) < 0
                    or start + int(e["offset"]) + count * dtype.itemsize > size):
                return None
            flat[e["path"]] = np.frombuffer(mapped, dtype, count, start + int(e["offset"])).reshape(shape)
        tree = unflatten(flat)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, struct.error):
        return None
    try:
        os.utime(path)                       # most recently used: kept longest
    except OSError:
        pass
    return tree


def load(ckpt_dir: str | os.PathLike, kinds: tuple[str, ...] | None = None,
         meta: Mapping | None = None) -> tuple[str, dict, dict]:
    """`checkpoint.load`, served from the kept flat file when there is one (arrays read-only, mapped),
    else read from orbax and kept for the next start (written by a thread named WRITER)."""
    ckpt_dir = os.fspath(ckpt_dir)
    meta = checkpoint.read_meta(ckpt_dir) if meta is None else meta
    kind = checkpoint.check_meta(ckpt_dir, meta, kinds)
    where = path_for(ckpt_dir, meta)
    if where is not None:
        variables = read(*where)
        if variables is not None:
            return kind, dict(meta["config"]), variables
    kind, config, variables = checkpoint.load(ckpt_dir, kinds, meta)
    if where is not None:
        # kept while the caller computes (writing 600 MB would delay a first run's start by ≈ 1 s);
        # not a daemon: the interpreter waits for it at exit, and a kill leaves only a temporary
        # that the next write here removes
        threading.Thread(target=write, args=(*where, variables), name=WRITER, daemon=False).start()
    return kind, config, variables
