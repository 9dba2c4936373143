"""Per-stage time and GFLOP/s of the full-size 4-ch tagger and separator (10 s clips), one or more trees.

    python bench/bench_stages.py [--tree base=/tmp/base --tree new=.] [--batch 1] [--reps 3]

Each stage is jitted on its own and fed the real activation it gets inside the model (captured from
one forward pass with Flax `capture_intermediates`); synthetic full-size weights as in
bench_compare.py. Per stage: median CPU s (process_time, all threads) and wall s of `--reps` calls
after a warm-up, XLA's own FLOP count of the compiled stage (`cost_analysis`), GFLOP/s per wall
second and per CPU second. `whole` is the jitted model; its time is not the sum of the rows (the
rows overlap: an encoder block contains its attention and MLP; the separator rows leave out the
mask head and the small 1x1 convs). Trees run in separate processes, alternating.

Stages — tagger: front end (log-mel), encoder block (x depth), its attention, its MLP, head.
Separator: STFT, FiLM (label embedding + every block's beta Dense), each encoder level, bottleneck,
each decoder level, ISTFT.

--torch-port: the same stages of the official models in PyTorch (`bench/torch_port.py`; activations
captured with forward hooks; FLOPs as torch's FlopCounterMode counts them: matmuls and convolutions
only, so its STFT/ISTFT rows count the DFT convolutions the official code runs), as the first column.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_compare import (MALLOC_ENV, TORCH_TREES, TORCH_GEMMS, _load, machine, torch_port_model,  # noqa: E402
                           worker_env)                                           # (same folder)


def _timed(fn, args, reps: int) -> dict:
    import time

    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", 0.0))
    jax.block_until_ready(compiled(*args))
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu), "gflop": flops / 1e9}


def _captured(inter, *path):
    """Output of the module at `path` from Flax intermediates."""
    node = inter
    for key in path:
        node = node[key]
    return node["__call__"][0]


def tagger_stages(batch: int, reps: int) -> list:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax.synthetic_weights import synthetic_state_dict
    from s5jax.models import m2d

    sd = {k[len("model."):]: v for k, v in synthetic_state_dict("tagger-4ch").items()}
    cfg_d, variables = m2d.convert_tagger_state_dict(sd, "tagger-4ch", "tagger-4ch")
    cfg = m2d.M2DConfig.from_dict(cfg_d)
    variables = jax.device_put(variables)
    wav = jnp.asarray((0.1 * np.random.default_rng(0).standard_normal((batch, 4, 320000))).astype(np.float32))
    model = m2d.M2DTagger(cfg)
    _, state = jax.jit(lambda v, w: model.apply(v, w, capture_intermediates=True, mutable=["intermediates"]))(
        variables, wav)
    inter = state["intermediates"]
    enc_p = variables["params"]["encoder"]
    tokens = _captured(inter, "encoder", "blocks_0")                # [b*4, 1+F*T, D]
    normed = m2d._layer_norm(1e-6, "n").apply({"params": enc_p["blocks_0"]["norm1"]}, tokens)
    feats = _captured(inter, "encoder")                              # [b*4, T, F*D]
    tt = feats.shape[1]
    cat = feats.reshape(batch, 4, tt, -1).transpose(0, 2, 1, 3).reshape(batch, tt, -1)
    head = m2d.TaggerHead(cfg)
    head_v = {"params": variables["params"]["head"], "batch_stats": variables["batch_stats"]["head"]}
    rows = [
        ("front end (log-mel)", lambda w: m2d.log_mel(w.reshape(-1, w.shape[-1]), cfg), (wav,), 1),
        ("encoder block", lambda p, x: m2d.Block(cfg).apply({"params": p}, x), (enc_p["blocks_0"], tokens),
         cfg.depth),
        ("  attention", lambda p, x: m2d.Attention(cfg).apply({"params": p}, x),
         (enc_p["blocks_0"]["attn"], normed), cfg.depth),
        ("  MLP", lambda p, x: m2d.Mlp(cfg).apply({"params": p}, x), (enc_p["blocks_0"]["mlp"], normed), cfg.depth),
        ("head", lambda v, x: head.apply(v, x), (head_v, cat), 1),
        ("whole tagger", lambda v, w: model.apply(v, w)[0], (variables, wav), 1),
    ]
    return [(name, count, _timed(fn, args, reps)) for name, fn, args, count in rows]


def separator_stages(batch: int, reps: int) -> list:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from s5jax import stft as stft_lib
    from s5jax.synthetic_weights import synthetic_state_dict
    from s5jax.models import resunet as ru

    sd = {k[len("model."):]: v for k, v in synthetic_state_dict("separator").items()}
    cfg_d, variables = ru.convert_separator_state_dict(sd, "separator")
    c = ru.ResUNetConfig.from_dict(cfg_d)
    variables = jax.device_put(variables)
    mix = jnp.asarray((0.1 * np.random.default_rng(0).standard_normal((batch, 4, 320000))).astype(np.float32))
    q = jnp.zeros((batch, 54), jnp.float32).at[:, jnp.array([3, 33, 53])].set(1.0)
    model = ru.ResUNetSeparator(c)
    _, state = jax.jit(lambda v, m, q: model.apply(v, m, q, capture_intermediates=True,
                                                   mutable=["intermediates"]))(variables, mix, q)
    inter = state["intermediates"]
    condition = _captured(inter, "label_embedding")
    params, stats = variables["params"], variables["batch_stats"]
    base_p, base_s = params["base"], stats["base"]
    sub = lambda name: {"params": base_p[name], "batch_stats": base_s[name]}
    re, im = stft_lib.stft(mix, c.n_fft, c.hop)
    frames = re.shape[2]
    stem_re = jnp.asarray(np.random.default_rng(1).standard_normal((batch, c.num_slots, frames, re.shape[3])),
                          jnp.float32)

    def film(p, q):
        """The condition and every FiLM Dense (beta1/beta2 of each block: kernel [512, C])."""
        cond = ru.LabelEmbedding(c).apply({"params": p["label_embedding"]}, q)
        betas = []

        def walk(d):
            for k, v in d.items():
                if k.startswith("beta") and "kernel" in v:
                    betas.append(cond @ v["kernel"] + v["bias"])
                elif isinstance(v, dict):
                    walk(v)
        walk(p["base"])
        return cond, betas

    rows = [("STFT", lambda m: stft_lib.stft(m, c.n_fft, c.hop), (mix,), 1),
            ("FiLM (embedding + betas)", film, (params, q), 1)]
    x = _captured(inter, "base", "pre_conv")
    for i, (out, pool) in enumerate(zip(c.channels, c.pools), 1):
        name = f"encoder_block{i}"
        blk = ru.EncoderBlock(c, out, pool)
        rows.append((f"encoder {i} {tuple(x.shape[1:])}", lambda v, x, cd, blk=blk: blk.apply(v, x, cd),
                     (sub(name), x, condition), 1))
        x = _captured(inter, "base", name)[0]
    blk = ru.EncoderBlock(c, c.bottleneck_channels, (1, 1))
    rows.append((f"bottleneck {tuple(x.shape[1:])}", lambda v, x, cd, blk=blk: blk.apply(v, x, cd),
                 (sub("conv_block7a"), x, condition), 1))
    x = _captured(inter, "base", "conv_block7a")[0]
    n = len(c.channels)
    for i in range(1, n + 1):
        j = n - i
        name = f"decoder_block{i}"
        skip = _captured(inter, "base", f"encoder_block{j + 1}")[1]
        blk = ru.DecoderBlock(c, c.channels[j], c.pools[j])
        rows.append((f"decoder {i} {tuple(x.shape[1:])}", lambda v, x, s, cd, blk=blk: blk.apply(v, x, s, cd),
                     (sub(name), x, skip, condition), 1))
        x = _captured(inter, "base", name)
    rows += [("ISTFT", lambda r, i: stft_lib.istft(r, i, mix.shape[-1], c.n_fft, c.hop), (stem_re, stem_re), 1),
             ("whole separator", lambda v, m, q: model.apply(v, m, q)[0], (variables, mix, q), 1)]
    return [(name, count, _timed(fn, args, reps)) for name, fn, args, count in rows]


# ------------------------------------------------------------------ the same stages of the PyTorch port (--torch-port)
def _timed_torch(fn, args, reps: int) -> dict:
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:    # matmul/conv FLOPs, as torch counts them
            fn(*args)                                       # also the warm-up
        wall, cpu = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(*args)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu),
            "gflop": counter.get_total_flops() / 1e9}


def _hooked(model, names, *args) -> dict:
    """(first input, output) of each named submodule of `model` in one forward pass."""
    import torch

    seen, handles = {}, []
    for name in names:
        module = model.get_submodule(name)
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (i[0], o))))
    with torch.no_grad():
        model(*args)
    for h in handles:
        h.remove()
    return seen


def torch_tagger_stages(batch: int, reps: int, gemm: str = "mkl") -> list:
    import numpy as np
    import torch

    model = torch_port_model("tagger-4ch", gemm)
    m2d = model.m2d
    wav = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((batch, 4, 320000))).astype(np.float32))
    seen = _hooked(model, ["m2d.backbone.blocks.0.norm1", "m2d"], wav)
    tokens, normed = seen["m2d.backbone.blocks.0.norm1"]                  # the first block's input, LN1 of it
    feats = seen["m2d"][1]                                                # [b*4, T, 3840]
    cat = feats.reshape(batch, 4, *feats.shape[1:]).permute(0, 2, 1, 3).flatten(2)
    block = m2d.backbone.blocks[0]
    rows = [("front end (log-mel)", lambda w: m2d.to_spec(w.reshape(-1, w.shape[-1]), m2d.backbone.norm_stats),
             (wav,), 1),
            ("encoder block", block, (tokens,), 12),
            ("  attention", block.attn, (normed,), 12),
            ("  MLP", block.mlp, (normed,), 12),
            ("head", model.head, (cat,), 1),
            ("whole tagger", model, (wav,), 1)]
    return [(name, count, _timed_torch(fn, args, reps)) for name, fn, args, count in rows]


def torch_separator_stages(batch: int, reps: int, gemm: str = "mkl") -> list:
    import numpy as np
    import torch

    import torch_port

    model = torch_port_model("separator", gemm)
    base = model.base
    mix = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((batch, 4, 320000))).astype(np.float32))
    q = torch.zeros(batch, 54)
    q[:, [3, 33, 53]] = 1.0
    n = len(torch_port.CHANNELS)
    names = (["base.pre_conv", "base.conv_block7a"] + [f"base.encoder_block{i}" for i in range(1, n + 1)]
             + [f"base.decoder_block{i}" for i in range(1, n + 1)])
    seen = _hooked(model, names, mix, q)
    with torch.no_grad():
        film = model.film(model.label_embedding(q))
        re, _ = base.stft(mix.reshape(-1, mix.shape[-1]))              # [B*C, T, 513]
    stem_re = torch.from_numpy(np.random.default_rng(1).standard_normal((batch * 3, re.shape[1], re.shape[2]))
                               .astype(np.float32))
    shape = lambda x: tuple(x.shape[2:]) + (x.shape[1],)                 # as (T, F, C), the JAX rows' order
    rows = [("STFT", base.stft, (mix.reshape(-1, mix.shape[-1]),), 1),
            ("FiLM (embedding + betas)", lambda q: model.film(model.label_embedding(q)), (q,), 1)]
    x = seen["base.pre_conv"][1]
    for i in range(1, n + 1):
        name = f"encoder_block{i}"
        rows.append((f"encoder {i} {shape(x)}", lambda x, b=getattr(base, name), nm=name: b(x, film, nm), (x,), 1))
        x = seen[f"base.{name}"][1][0]
    rows.append((f"bottleneck {shape(x)}", lambda x: base.conv_block7a(x, film, "conv_block7a"), (x,), 1))
    x = seen["base.conv_block7a"][1][0]
    for i in range(1, n + 1):
        name = f"decoder_block{i}"
        skip = seen[f"base.encoder_block{n + 1 - i}"][1][1]
        rows.append((f"decoder {i} {shape(x)}", lambda x, s, b=getattr(base, name), nm=name: b(x, s, film, nm),
                     (x, skip), 1))
        x = seen[f"base.{name}"][1]
    rows += [("ISTFT", lambda r, i: base.istft(r, i, mix.shape[-1]), (stem_re, stem_re), 1),
             ("whole separator", model, (mix, q), 1)]
    return [(name, count, _timed_torch(fn, args, reps)) for name, fn, args, count in rows]


def worker(model: str, batch: int, reps: int, torch_threads: int = 0, gemm: str = "mkl") -> list:
    if torch_threads:
        import functools

        import torch

        torch.set_num_threads(torch_threads)
        stages = functools.partial(torch_tagger_stages if model == "tagger" else torch_separator_stages, gemm=gemm)
    else:
        stages = tagger_stages if model == "tagger" else separator_stages
    return [{"stage": n, "count": k, **r} for n, k, r in stages(batch, reps)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--models", nargs="+", default=["tagger", "separator"], choices=["tagger", "separator"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--malloc", choices=sorted(MALLOC_ENV), default="keep",
                   help="glibc malloc for every tree (see bench_compare.py); default keep")
    p.add_argument("--torch-port", action="store_true",
                   help="also the official models in PyTorch (bench/torch_port.py), as the first column")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count(), help="torch's intra-op threads")
    p.add_argument("--torch-gemm", choices=sorted(TORCH_GEMMS), default="mkl",
                   help="the port's Linears on torch's BLAS (mkl) or on oneDNN (see bench_compare.py)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.reps, args.torch_threads if args.torch else 0,
                                args.torch_gemm)))
        return 0
    port = TORCH_TREES[args.torch_gemm]
    trees = {port: pathlib.Path(__file__).resolve().parents[1]} if args.torch_port else {}
    for spec in args.tree or ["new=."]:
        name, _, path = spec.partition("=")
        trees[name] = pathlib.Path(path or ".").resolve()
    host = machine([args.torch_gemm] if args.torch_port else [])
    for model in args.models:
        res = {}
        for i, name in enumerate(trees if args.models.index(model) % 2 == 0 else reversed(trees)):
            print(f"  {model} {name} (load {_load()})", file=sys.stderr)
            res[name] = _run_worker_stages(trees[name], model, args.batch, args.reps, args.malloc,
                                           args.torch_threads if name == port else 0, args.torch_gemm)
        print(f"\n{model}, 10 s 4-channel clip(s), batch {args.batch}, median of {args.reps} calls per stage, "
              f"{os.cpu_count()} cores, malloc: {args.malloc} (torch port: glibc's default), load average "
              f"{_load()}\n{host}")
        head = f"{'stage':<34} {'x':>3}"
        for name in trees:
            head += f" | {name + ' CPU s':>12} {'wall s':>7} {'GFLOP':>7} {'GF/s wall':>9} {'GF/CPU s':>8}"
        print(head)
        for k, row in enumerate(res[next(iter(trees))]):
            line = f"{row['stage']:<34} {row['count']:>3}"
            for name in trees:
                r = res[name][k]
                gw = r["gflop"] / r["wall"] if r["wall"] else 0.0
                gc = r["gflop"] / r["cpu"] if r["cpu"] else 0.0
                line += f" | {r['cpu']:>12.4f} {r['wall']:>7.4f} {r['gflop']:>7.2f} {gw:>9.1f} {gc:>8.1f}"
            print(line)
    return 0


def _run_worker_stages(tree: pathlib.Path, model: str, batch: int, reps: int, malloc: str,
                       torch_threads: int = 0, gemm: str = "mkl") -> list:
    """One stage worker; torch_threads > 0: the PyTorch port's (Linears on `gemm`), with glibc's default malloc."""
    import subprocess

    extra = ["--torch", "--torch-threads", str(torch_threads), "--torch-gemm", gemm] if torch_threads else []
    r = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", model,
                        "--batch", str(batch), "--reps", str(reps), *extra], cwd=tree,
                       env=worker_env(tree, "default" if torch_threads else malloc), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"stage worker {model} in {tree} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
