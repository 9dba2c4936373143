"""JAX's persistent compilation cache for the command line: compiled programs are kept on disk, so a
second `s5jax infer` (same models, same clip lengths, same devices) skips XLA compilation.

Folder: $S5JAX_CACHE_DIR, else $XDG_CACHE_HOME/s5jax/jax, else ~/.cache/s5jax/jax. Safe to delete at
any time (it only holds compiled programs; they are rebuilt on demand). `--no-compile-cache` turns it
off. The library never turns it on by itself: only the CLI entry points call `enable`.

Beside JAX's files, when the cache is on, s5jax keeps what it would otherwise re-derive by tracing the
models at every start (`memo_path`): each model's {weight path: shape} table (`s5jax-shapes/`, JSON)
and the traced, lowered inference programs (`s5jax-programs/`, jax.export's serialized StableHLO:
a flatbuffer, no pickled code). Their keys include a digest of the package's source and the jax,
jaxlib and flax versions, so no entry outlives the code that made it. Models loaded by
`from_checkpoint` also keep their weights there as flat files read by mapping them (`s5jax-weights/`,
`weight_cache`; keyed by the checkpoint's weight hash and files, at most six kept).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib


def default_dir() -> str:
    if os.environ.get("S5JAX_CACHE_DIR"):
        return os.path.abspath(os.environ["S5JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "s5jax", "jax")


def enable(path: str | None = None) -> str | None:
    """Point JAX's persistent cache at `path` (default: `default_dir()`); every program is cached,
    however quick its compile (the many small ones add up at start-up). Returns the folder, or None
    when it cannot be created (then the run simply compiles as usual)."""
    import jax

    path = path or default_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the package's source (every .py under s5jax/) and the jax, jaxlib and flax versions:
    what a traced model or program may depend on."""
    from importlib.metadata import version   # not `import flax`: a warm start never needs Flax

    import jax
    import jaxlib

    h = hashlib.sha256(f"jax {jax.__version__} jaxlib {jaxlib.__version__} flax {version('flax')};".encode())
    root = pathlib.Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(f"{path.relative_to(root).as_posix()}:".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def memo_path(kind: str, key, suffix: str, folder: str | None = None) -> str | None:
    """`<cache>/s5jax-<kind>/<sha256 of key and code_digest()><suffix>`; `<cache>` is `folder`, else
    JAX's persistent cache folder when it is on (`jax_compilation_cache_dir`, set by `enable`); None
    when neither. `key`: JSON-able, everything the entry depends on besides the code."""
    import jax

    folder = folder or jax.config.jax_compilation_cache_dir
    if not folder:
        return None
    digest = hashlib.sha256(json.dumps({"key": key, "code": code_digest()}, sort_keys=True,
                                       default=str).encode()).hexdigest()
    return os.path.join(folder, f"s5jax-{kind}", digest + suffix)
