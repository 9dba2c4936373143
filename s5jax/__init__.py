"""s5jax: spatial semantic segmentation of sound scenes (DCASE 2026 Task 4) in JAX/Flax.

Public API (lazy, so `import s5jax` stays cheap for the CLI):
    s5jax.Tagger.from_checkpoint(dir)      M2D audio tagger (1-ch or 4-ch)
    s5jax.Separator.from_checkpoint(dir)   FiLM ResUNet label-queried separator
    s5jax.runtime.memory                   the CLI's process settings (allocator), opt-in
"""
from .labels import CLASSES, LABELS, NUM_CLASSES, SAMPLE_RATE, SILENCE  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):
    if name == "Tagger":
        from .tagger import Tagger
        return Tagger
    if name == "Separator":
        from .separator import Separator
        return Separator
    if name == "runtime":
        import importlib

        importlib.import_module(".runtime.memory", __name__)   # `from . import` would recurse here
        return importlib.import_module(".runtime", __name__)
    raise AttributeError(f"module 's5jax' has no attribute {name!r}")
