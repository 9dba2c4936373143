"""Side-by-side speed of two or more source trees of s5jax in one run (e.g. main vs this branch).

    git archive main | tar -x -C /tmp/base       # or: git worktree add /tmp/base main
    python bench/bench_compare.py --tree base=/tmp/base --tree new=. \
        [--models tagger-4ch separator system] [--batches 1 4] [--runs 3] [--rounds 2] [--seconds 10]
    python bench/bench_compare.py --tree base=/tmp/base --tree new=. --startup   # cold vs warm start
    python bench/bench_compare.py --torch-port --tree new=. [--models ...]      # against the official models
    python bench/bench_compare.py --tree xla=. --tree ynn=. --xla ynn=--xla_cpu_experimental_ynn_fusion_type=dot
                                                           # one tree under other XLA_FLAGS

Every (round, model, batch, tree) is a fresh subprocess with PYTHONPATH=tree, so each tree runs its own
code and its own peak RSS is measured; trees alternate inside a round and their order flips between
rounds, so load changes on a shared machine hit all trees alike. A worker converts synthetic weights
of the full-size official model (`s5jax.synthetic_weights.synthetic_state_dict`, the real conversion), jits the
plain forward pass (`system` = 4-ch tagger -> silence last -> separator, the official baseline's three
steps in one program),
compiles and warms up once, then times `--runs` calls: wall (perf_counter), CPU (process_time, all
threads) and minor page faults per call. The process is set up as the `s5jax` CLI sets it up
(`s5jax.runtime.memory.configure_from_env()` when the tree has it), or, with `--malloc keep|default`, with
the same glibc malloc behaviour for every tree (to measure code changes alone).

Printed: per tree, median and spread (min-max over all timed calls of all rounds) of wall s/clip and
CPU s/clip, faults per call, compile s, peak RSS of the whole process and of the timed calls alone
(`calls GB`: after loading, compiling and the first call, the heap's free pages are returned and the
kernel's high-water mark reset — what a run serving its weights mapped and its program compiled holds); and each tree's ratio to the first tree (median over
median: >1 = faster). Prefer the CPU column on a busy machine; note `uptime` with the figures.

--torch-port: the official models in PyTorch (`bench/torch_port.py`, written from the specs, equal to the
official goldens bit for bit; eval, no_grad, `--torch-threads` threads, glibc's default malloc), same
weights and clip, run as one more tree called `torch port` — the first, so every ratio reads as "s5jax
vs official" (>1 = s5jax faster). Its `system` is the official baseline (tag, silence last, separate).

--startup: per tree, two processes with one fresh JAX persistent compilation cache folder (cold, then
warm) time import, model set-up and the first call of the separator on a 1 s clip (compile + run).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

MODELS = ("tagger-4ch", "tagger-1ch", "separator", "system")


# ------------------------------------------------------------------ worker (runs inside one tree)
def _setup_process() -> str:
    """What the CLI does at start, if this tree's s5jax has it."""
    try:
        from s5jax.runtime import memory as runtime
    except ImportError:
        return "n/a"
    return runtime.configure_from_env()


def _apply_fns(model: str):
    """(jittable fn(variables, mixture), variables) for `model`, built from synthetic official weights."""
    import jax.numpy as jnp

    from s5jax.synthetic_weights import synthetic_state_dict
    from s5jax.models.m2d import M2DConfig, M2DTagger
    from s5jax.official.m2d import convert_tagger_state_dict
    from s5jax.models.resunet import ResUNetConfig, ResUNetSeparator
    from s5jax.official.resunet import convert_separator_state_dict

    def load(kind):
        sd = {k[len("model."):]: v for k, v in synthetic_state_dict(kind).items()}
        if kind == "separator":
            cfg, var = convert_separator_state_dict(sd, kind)
            return ResUNetSeparator(ResUNetConfig.from_dict(cfg)), var
        cfg, var = convert_tagger_state_dict(sd, kind, kind)
        return M2DTagger(M2DConfig.from_dict(cfg)), var

    if model in ("tagger-4ch", "tagger-1ch"):
        tagger, tv = load(model)
        return (lambda v, mix: tagger.apply(v, mix)[0]), tv
    sep, sv = load("separator")
    sep_apply = lambda v, mix, q: sep.apply(v, mix, q)[0]
    if model == "separator":
        q = jnp.zeros((1, 54), jnp.float32).at[0, jnp.array([3, 18 + 15, 36 + 17])].set(1.0)
        return (lambda v, mix: sep_apply(v, mix, jnp.broadcast_to(q, (mix.shape[0], 54)))), sv
    from s5jax.separator import query_vector
    from s5jax.system.pipeline import silence_last
    from s5jax.tagger import predict_from_logits

    tagger, tv = load("tagger-4ch")

    def baseline(v, mix):           # the official three steps in one program
        labels, probs, _ = silence_last(*predict_from_logits(tagger.apply(v[0], mix)[0]))
        return labels, probs, sep_apply(v[1], mix, query_vector(labels))

    return baseline, (tv, sv)


def calls_peak_start() -> float:
    """Start measuring the peak RSS of the calls alone: give the heap's free pages back to the kernel
    (what loading and compiling left there: the CLI's malloc setting keeps freed memory, and `s5jax
    infer` maps its weights instead of converting them, so those pages are the bench's, not a run's)
    and reset the kernel's high-water mark (Linux: /proc/self/clear_refs, 5; it resets ru_maxrss too).
    Returns the process's peak RSS (GB) until now."""
    import ctypes
    import gc
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return before


def calls_peak_gb() -> float:
    """Peak RSS (GB) since calls_peak_start (VmHWM), NaN where the kernel does not tell."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def _timed_calls(call, runs: int, batch: int) -> dict:
    """Time `runs` calls of `call()` (after its warm-up): wall and CPU s per clip, minor page faults per
    call, and the peak RSS of the calls alone beside the whole process's."""
    import resource
    import time

    peak_before = calls_peak_start()
    wall, cpu, faults = [], [], []
    for _ in range(runs):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - t0) / batch)
        cpu.append((time.process_time() - c0) / batch)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {"wall": wall, "cpu": cpu, "faults": faults, "calls_peak_gb": calls_peak_gb(),
            "peak_rss_gb": max(peak_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)}


def worker(model: str, batch: int, runs: int, seconds: float, cache_dir: str | None) -> dict:
    import time

    t_start = time.perf_counter()
    c_start = time.process_time()
    malloc = _setup_process()
    import jax
    import numpy as np

    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    fn, variables = _apply_fns(model)
    variables = jax.device_put(variables)
    rng = np.random.default_rng(0)
    mix = jax.device_put((0.1 * rng.standard_normal((batch, 4, int(seconds * 32000)))).astype(np.float32))
    jitted = jax.jit(fn)
    t_ready, c_ready = time.perf_counter(), time.process_time()
    jax.block_until_ready(jitted(variables, mix))              # compile + first run
    first_wall, first_cpu = time.perf_counter() - t_ready, time.process_time() - c_ready
    out = {"model": model, "batch": batch, "malloc": malloc, "setup_wall": t_ready - t_start,
           "setup_cpu": c_ready - c_start, "first_wall": first_wall, "first_cpu": first_cpu}
    try:                                                        # as the programs run their loops
        from s5jax.runtime.memory import HeapGuard
        heap = HeapGuard()
    except ImportError:                                         # a tree from before it
        heap = None

    def call():
        jax.block_until_ready(jitted(variables, mix))
        if heap is not None:
            heap.after_call()

    out.update(_timed_calls(call, runs, batch))
    return out


def torch_port_model(kind: str, gemm: str = "mkl"):
    """The PyTorch port's model of `kind` with the same synthetic official weights as the s5jax workers;
    gemm "onednn": its Linears on oneDNN instead of torch's BLAS (`torch_port.use_onednn_gemm`)."""
    import torch_port
    from s5jax.synthetic_weights import synthetic_state_dict

    model = torch_port.build(kind, {k[len("model."):]: v for k, v in synthetic_state_dict(kind).items()})
    return torch_port.use_onednn_gemm(model) if gemm == "onednn" else model


def torch_worker(model: str, batch: int, runs: int, seconds: float, threads: int, gemm: str = "mkl") -> dict:
    """worker() for the PyTorch port of the official models (same weights, clip and timing)."""
    import time

    t_start, c_start = time.perf_counter(), time.process_time()
    import numpy as np
    import torch

    import torch_port

    torch.set_num_threads(threads)
    if model == "system":
        tagger, separator = torch_port_model("tagger-4ch", gemm), torch_port_model("separator", gemm)
        fn = lambda mix: torch_port.baseline_system(tagger, separator, mix)[0]
    elif model == "separator":
        separator = torch_port_model("separator", gemm)
        q = torch.zeros(1, 54)
        q[0, [3, 18 + 15, 36 + 17]] = 1.0
        fn = lambda mix: separator(mix, q.expand(mix.shape[0], 54))
    else:
        fn = torch_port_model(model, gemm)
    rng = np.random.default_rng(0)
    mix = torch.from_numpy((0.1 * rng.standard_normal((batch, 4, int(seconds * 32000)))).astype(np.float32))
    t_ready, c_ready = time.perf_counter(), time.process_time()
    with torch.no_grad():
        fn(mix)
        first_wall, first_cpu = time.perf_counter() - t_ready, time.process_time() - c_ready
        timed = _timed_calls(lambda: fn(mix), runs, batch)
    return {"model": model, "batch": batch, "malloc": f"torch {torch.__version__}, {threads} threads, GEMM {TORCH_GEMMS[gemm]}",
            "setup_wall": t_ready - t_start, "setup_cpu": c_ready - c_start, "first_wall": first_wall,
            "first_cpu": first_cpu, **timed}


GEMM = (1244, 768, 3072)        # the tagger's MLP product: 4 channels x 311 tokens, 768 -> 3072


def gemm_worker(framework: str, reps: int = 20) -> dict:
    """fp32 GEMM rate of `framework` ("xla", "torch" (its BLAS, as torch.matmul) or "torch-onednn" (as
    `torch_port.use_onednn_gemm` calls it)) on the GEMM shape, median of `reps` calls."""
    import time

    import numpy as np

    m, k, n = GEMM
    a, b = (np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in ((m, k), (k, n)))
    if framework.startswith("torch"):
        import torch

        torch.set_num_threads(os.cpu_count())
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        if framework == "torch-onednn":               # the product exactly as the port's Linears run it
            import torch_port

            linear = torch.nn.Linear(k, n, bias=False)
            linear.weight.data = b.T.contiguous()
            torch_port.use_onednn_gemm(linear)
            call = torch.no_grad()(lambda: linear(a))
        else:
            call = lambda: torch.matmul(a, b)
    else:
        import jax

        f = jax.jit(lambda x, y: x @ y)
        a, b = jax.device_put(a), jax.device_put(b)
        call = lambda: f(a, b).block_until_ready()
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"gflops": 2 * m * k * n / statistics.median(times[3:]) / 1e9}


def machine(torch_gemms=()) -> str:
    """One line naming this CPU and the fp32 GEMM rate of XLA (and torch) on it: ratios to the official
    PyTorch code depend on the host (torch's MKL GEMM ran at XLA's rate on issue 10's machine, at half
    of it on an AMD EPYC Zen 5), so every table says what it was measured on."""
    info = {}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = info.get("flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    cpu = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}), {isa}"
    rates = []
    for framework in ("xla", *(("torch" if g == "mkl" else f"torch-{g}") for g in torch_gemms)):
        r = _run_worker(pathlib.Path(__file__).resolve().parents[1], ["gemm", "0", "--gemm", framework])
        rates.append(f"{framework} {r['gflops']:.0f}")
    return f"{cpu}; fp32 GEMM {'x'.join(map(str, GEMM))} GFLOP/s: {', '.join(rates)}"


# ------------------------------------------------------------------ driver
# --malloc: "cli" = each tree as its own CLI sets the process up; "keep" / "default" = the same glibc
# malloc behaviour for every tree (set through glibc's environment variables before the process starts),
# so a comparison measures the code alone
MALLOC_ENV = {"cli": {},
              "keep": {"S5JAX_MALLOC": "default", "MALLOC_MMAP_MAX_": "0", "MALLOC_ARENA_MAX": "1",
                       "MALLOC_TRIM_THRESHOLD_": str(2 ** 64 - 1)},
              "default": {"S5JAX_MALLOC": "default"}}


def worker_env(tree: pathlib.Path, malloc: str, xla_flags: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    return dict(env, PYTHONPATH=str(tree), **MALLOC_ENV[malloc])


TORCH_PORT = "torch port"       # the name of the pseudo-tree --torch-port adds
TORCH_GEMMS = {"mkl": "BLAS (MKL)", "onednn": "oneDNN"}
TORCH_TREES = {"mkl": TORCH_PORT, "onednn": "torch 1DNN"}   # --torch-gemm's pseudo-trees


def _port_gemm(malloc: str) -> str | None:
    """A pseudo-tree of the PyTorch port is marked by malloc "torch-<gemm>": its gemm, else None."""
    return malloc[len("torch-"):] if malloc.startswith("torch-") else None


def _run_worker(tree: pathlib.Path, args: list[str], malloc: str = "cli", xla_flags: str | None = None) -> dict:
    """One worker process; xla_flags None: XLA_FLAGS as in this environment; malloc "torch-<gemm>": the
    PyTorch port's worker (its Linears on <gemm>), with glibc's default malloc."""
    if _port_gemm(malloc):
        args = [*args, "--torch", "--torch-gemm", _port_gemm(malloc)]
        malloc = "default"
    env = worker_env(tree, malloc, xla_flags)
    r = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", *args],
                       cwd=tree, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"worker {args} in {tree} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _spread(values) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def compare(trees: dict[str, pathlib.Path], models, batches, runs, rounds, seconds, mallocs, xla) -> None:
    results: dict[tuple, list[dict]] = {}
    for rnd in range(rounds):
        order = list(trees) if rnd % 2 == 0 else list(reversed(trees))
        for model in models:
            for batch in batches:
                for name in order:
                    print(f"  round {rnd + 1}: {model} b{batch} {name} (load {_load()})", file=sys.stderr)
                    r = _run_worker(trees[name], [model, str(batch), "--runs", str(runs),
                                                  "--seconds", str(seconds)], mallocs[name], xla.get(name))
                    results.setdefault((model, batch, name), []).append(r)
    first = next(iter(trees))
    host = machine([_port_gemm(m) for m in mallocs.values() if _port_gemm(m)])
    print(f"\n{seconds:g} s 4-channel clips, {os.cpu_count()} cores, {rounds} rounds x {runs} timed calls "
          f"per tree (alternating processes), load average at the end {_load()}\n{host}")
    print(f"{'model':<11} {'b':>2} {'tree':<10} {'wall s/clip med (min-max)':>26} {'CPU s/clip med (min-max)':>26} "
          f"{'faults/call':>11} {'compile s':>9} {'peak GB':>7} {'calls GB':>8} {'x wall':>6} {'x CPU':>6} malloc")
    for model in models:
        for batch in batches:
            base = results[(model, batch, first)]
            bw = statistics.median(w for r in base for w in r["wall"])
            bc = statistics.median(c for r in base for c in r["cpu"])
            for name in trees:
                rs = results[(model, batch, name)]
                label = rs[0]["malloc"] if _port_gemm(mallocs[name]) else mallocs[name]
                wall = [w for r in rs for w in r["wall"]]
                cpu = [c for r in rs for c in r["cpu"]]
                faults = statistics.median(f for r in rs for f in r["faults"])
                comp = statistics.median(r["first_wall"] - statistics.median(r["wall"]) * batch for r in rs)
                peak = max(r["peak_rss_gb"] for r in rs)
                calls = max(r.get("calls_peak_gb", float("nan")) for r in rs)
                print(f"{model:<11} {batch:>2} {name:<10} {_spread(wall):>26} {_spread(cpu):>26} "
                      f"{faults:>11.0f} {comp:>9.1f} {peak:>7.2f} {calls:>8.2f} {bw / statistics.median(wall):>6.2f} "
                      f"{bc / statistics.median(cpu):>6.2f} {label}")


def startup(trees: dict[str, pathlib.Path], rounds: int, mallocs: dict, xla: dict) -> None:
    rows = {}
    for rnd in range(rounds):
        for name in (list(trees) if rnd % 2 == 0 else list(reversed(trees))):
            with tempfile.TemporaryDirectory(prefix="s5jax_bench_cache_") as cache:
                for state in ("cold", "warm"):
                    print(f"  round {rnd + 1}: startup {name} {state} (load {_load()})", file=sys.stderr)
                    r = _run_worker(trees[name], ["separator", "1", "--runs", "1", "--seconds", "1",
                                                  "--cache-dir", cache], mallocs[name], xla.get(name))
                    rows.setdefault((name, state), []).append(r)
    print(f"\nstart-up of the separator on a 1 s clip with a JAX persistent compilation cache, {rounds} "
          f"rounds, load average at the end {_load()}")
    print(f"{'tree':<8} {'cache':<5} {'set-up wall / CPU s':>20} {'first call wall / CPU s':>24} {'total wall / CPU s':>20}")
    for (name, state), rs in rows.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"{name:<8} {state:<5} {med('setup_wall'):>9.2f} / {med('setup_cpu'):<8.2f} "
              f"{med('first_wall'):>11.2f} / {med('first_cpu'):<10.2f} "
              f"{med('setup_wall') + med('first_wall'):>9.2f} / {med('setup_cpu') + med('first_cpu'):<8.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", default=[], metavar="NAME=DIR[@MALLOC]",
                   help="a source tree to measure (repeat; the first is the reference of the ratios); "
                        "@keep / @default / @cli overrides --malloc for it (one tree twice: malloc alone)")
    p.add_argument("--models", nargs="+", default=["tagger-4ch", "separator", "system"], choices=MODELS)
    p.add_argument("--batches", type=int, nargs="+", default=[1])
    p.add_argument("--runs", type=int, default=3, help="timed calls per process")
    p.add_argument("--rounds", type=int, default=2, help="processes per (model, batch, tree)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--malloc", choices=sorted(MALLOC_ENV), default="cli",
                   help="cli: each tree as its CLI sets it up (default); keep/default: the same for all trees")
    p.add_argument("--xla", action="append", default=[], metavar="NAME=FLAGS",
                   help="XLA_FLAGS for the tree called NAME (repeat; e.g. the same tree twice, once with flags)")
    p.add_argument("--torch-port", action="store_true",
                   help="also time the official models in PyTorch (bench/torch_port.py), as the first tree")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count(), help="torch's intra-op threads")
    p.add_argument("--torch-gemm", nargs="+", choices=sorted(TORCH_GEMMS), default=["mkl"],
                   help="with --torch-port: the port's Linears on torch's BLAS (mkl, as the official code "
                        "runs) and/or on oneDNN (reaches XLA's GEMM rate where MKL does not: AMD hosts); "
                        "each one pseudo-tree, the first the reference")
    p.add_argument("--startup", action="store_true", help="measure cold vs warm start instead")
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gemm", help=argparse.SUPPRESS)
    p.add_argument("--gemm-reps", type=int, default=20, help=argparse.SUPPRESS)   # tests: fewer calls
    args = p.parse_args(argv)
    if args.gemm:
        print(json.dumps(gemm_worker(args.gemm, args.gemm_reps)))
        return 0
    if args.worker and args.torch:
        print(json.dumps(torch_worker(args.worker[0], int(args.worker[1]), args.runs, args.seconds,
                                      args.torch_threads, args.torch_gemm[0])))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.runs, args.seconds, args.cache_dir)))
        return 0
    trees, mallocs = {}, {}
    if args.torch_port:
        if args.startup:
            p.error("--torch-port times calls, not start-up")
        for gemm in dict.fromkeys(args.torch_gemm):
            name = TORCH_TREES[gemm]
            trees[name], mallocs[name] = pathlib.Path(__file__).resolve().parents[1], f"torch-{gemm}"
    for spec in args.tree or ["new=."]:
        spec, _, malloc = spec.partition("@")
        name, _, path = spec.partition("=")
        tree = pathlib.Path(path or name).resolve()
        if not (tree / "s5jax" / "__init__.py").is_file():
            p.error(f"--tree {spec}: {tree} holds no s5jax package")
        if malloc and malloc not in MALLOC_ENV:
            p.error(f"--tree {spec}@{malloc}: malloc must be one of {', '.join(MALLOC_ENV)}")
        name = name if path else tree.name
        trees[name], mallocs[name] = tree, malloc or args.malloc
    xla = {}                      # XLA_FLAGS per tree name; a tree without one inherits the environment's
    for spec in args.xla:
        name, _, flags = spec.partition("=")
        if name not in trees:
            p.error(f"--xla {spec}: no --tree called {name!r}")
        xla[name] = flags
    if args.startup:
        startup(trees, args.rounds, mallocs, xla)
    else:
        compare(trees, args.models, args.batches, args.runs, args.rounds, args.seconds, mallocs, xla)
    return 0


if __name__ == "__main__":
    sys.exit(main())
