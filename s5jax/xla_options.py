"""XLA compiler options of the model programs: given to each `jax.jit` that runs a model, never set
process-wide (a user's own programs and `XLA_FLAGS` are left alone).

On CPU, XLA (jaxlib 0.10) hands convolutions and matmuls to YNNPACK by default. For the separator's
convolutions XLA's own (Eigen) kernels are faster on every level measured (lone 3x3 convolutions of
the ten U-Net shapes 1.05-1.66x, `python bench/bench_stages.py --ab`), and YNNPACK takes its scratch
memory outside malloc: ~79,000 fresh page faults per separator call and a peak RSS of 2.7 GB against
1.8 GB (`python bench/bench_compare.py`, same run). So the model programs are compiled with YNNPACK's
fusions off (`xla_cpu_experimental_ynn_fusion_type` = empty list). Numerics: both are float32 with
float32 accumulation; the separator's stems differ by 2e-6 relative, inside the parity tolerance.

Other backends get no options. A jaxlib that does not know the option gets none either (probed once
per process with a one-line program, so an older or newer jax never fails to compile a model).
"""
from __future__ import annotations

import functools

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.lru_cache(maxsize=None)
def _cpu_accepts() -> bool:
    import jax
    import numpy as np

    try:
        one = jax.device_put(np.float32(1), jax.devices("cpu")[0])
        jax.block_until_ready(jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS)(one))
    except Exception:          # unknown option name or value in this jaxlib
        return False
    return True


def model_options(platform: str | None = None) -> dict | None:
    """`compiler_options` for a model program on `platform` (default: JAX's default backend)."""
    import jax

    platform = platform or jax.default_backend()
    if platform == "cpu" and _cpu_accepts():
        return dict(CPU_OPTIONS)
    return None
