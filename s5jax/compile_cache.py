"""JAX's persistent compilation cache for the command line: compiled programs are kept on disk, so a
second `s5jax infer` (same models, same clip lengths, same devices) skips XLA compilation.

Folder: $S5JAX_CACHE_DIR, else $XDG_CACHE_HOME/s5jax/jax, else ~/.cache/s5jax/jax. Safe to delete at
any time (it only holds compiled programs; they are rebuilt on demand). `--no-compile-cache` turns it
off. The library never turns it on by itself: only the CLI entry points call `enable`.
"""
from __future__ import annotations

import os


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
