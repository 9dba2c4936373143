"""How programs run, apart from what they compute: the allocator and heap guard (memory), JAX's
persistent compile cache and kept program exports (compile_cache), the weights kept as flat files
(weight_cache), jax.distributed processes (processes), data parallelism over devices (parallel)."""
