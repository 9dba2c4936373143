"""`s5jax` command line: one console command with subcommands.

    s5jax convert CKPT OUT_DIR [--kind ...]   official PyTorch checkpoint -> s5jax checkpoint folder
    s5jax infer INPUT --tagger T --separator S --out OUT [--oracle DIR]
                                             the baseline system over a folder of soundscapes
    s5jax infer ... --system CONFIG|PRESET [--tagger2 T1] [--separator2 B]
                                             the refined system (s5jax.system) instead of the baseline
    s5jax cache INPUT --tagger T --tagger2 T1 --separator S [--separator2 B] --out CACHE [--system ...]
                                             per-clip model outputs for exact replay of system configs
    s5jax submit --dev-test DEV --eval EVAL --tagger T --separator S [--system ...] --author A --affiliation F
                 --number K --out D          the DCASE submission package D/A_F_task4_K(.zip)
    s5jax submit --check PACKAGE [--dev-test DEV] [--eval EVAL]   check a package folder or zip
    s5jax sweep CACHE --out DIR [--system START] [--margin M] [--folds K] [--oracle]
                                             tune a system config by exact CA-SDRi replay over the cache
    s5jax segment RECORDING --tagger T --separator S [--system ...] --out DIR [--window S --hop S]
                                             one recording of any length, in overlapping windows: a stem
                                             per detected source, events.csv, timeline.png
    s5jax demo [--out DIR] [--clips N]       Table 1 in miniature on the bundled world and models
    s5jax train tagger|separator CONFIG [--out DIR]   train on scenes synthesised from a dev-set folder
    s5jax world make OUT                     the bundled procedural sound world (a dev set + test split)
    s5jax scenes render --data DEV_SET --metadata M.json|valid.json --out DIR
                                             SpAudSyn scenes -> DIR/soundscape + DIR/oracle_target (dev-test layout)
    s5jax scenes draw --data DEV_SET --split S --count N --out LIST.json   draw scenes (SpAudSyn metadata)

Errors in the user's input are printed as one line (`s5jax: error: ...`) with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .runtime import memory as runtime
from .errors import S5Error


def _cmd_convert(args) -> int:
    from .official.convert import convert_checkpoint

    from .official.convert import parse_overrides

    log = None if args.quiet else (lambda line: print(line, flush=True))   # stderr: errors only
    kind = convert_checkpoint(args.ckpt, args.out_dir, args.kind, parse_overrides(args.set), log=log)
    print(f"wrote {kind} checkpoint to {args.out_dir}")
    return 0


def _join_processes(args) -> tuple[int, int]:
    from .runtime.processes import initialize

    return initialize(args.coordinator, args.num_processes, args.process_id)


def _compile_cache(args) -> None:
    if not args.no_compile_cache:
        from .runtime import compile_cache

        compile_cache.enable()


def _engine(args):
    """The engine factory of infer/submit: the refined system for --system, else the baseline."""
    if args.system is not None:
        from .system.config import load_system
        from .system.engine import system_engine

        load_system(args.system)             # an unknown preset or a bad config fails before any work

        return lambda batch_size: system_engine(args.system, [args.tagger, args.tagger2], args.separator,
                                                args.separator2, batch_size, args.precision)
    if args.tagger2 or args.separator2:
        raise S5Error("--tagger2 and --separator2 are used by a refined system: give --system CONFIG|PRESET")
    from .system.engine import baseline_engine

    return lambda batch_size: baseline_engine(args.tagger, args.separator, batch_size, args.precision)


def _cmd_infer(args) -> int:
    from .infer import run_infer

    if args.zip is not None:
        raise S5Error("infer --zip is gone: make the DCASE submission package with `s5jax submit` "
                      "(see `s5jax submit --help`)")
    _compile_cache(args)
    process = _join_processes(args)
    report = run_infer(args.input, args.out, oracle_dir=args.oracle, batch_size=args.batch_size,
                       progress=not args.quiet, engine=_engine(args), process=process, resample=args.resample,
                       out_rate=args.out_rate)
    print(f"done: {len(report.processed)} clip(s) processed, {len(report.resumed)} resumed, "
          f"{len(report.skipped)} skipped; outputs in {args.out}")
    unscored = report.scores["skipped"] if report.scores else {}
    return 1 if report.skipped or unscored else 0


def _cmd_segment(args) -> int:
    from .segment import SegmentConfig, run_segment

    _compile_cache(args)
    config = SegmentConfig(window_seconds=args.window, hop_seconds=args.hop, resample=args.resample,
                           out_rate=args.out_rate, batch_size=args.batch_size)
    r = run_segment(args.recording, args.out, args.tagger, args.separator, args.system,
                    tagger2_dir=args.tagger2, separator2_dir=args.separator2, precision=args.precision,
                    config=config, progress=not args.quiet)
    print(f"done: {r.windows} window(s) ({r.computed} computed, {r.resumed} resumed), {len(r.stems)} stem(s), "
          f"{len(r.events)} event(s); outputs in {args.out}")
    return 0


def _resample_options(p, out_rate: bool = True) -> None:
    p.add_argument("--resample", action="store_true",
                   help="resample input at another rate to 32 kHz on load (soxr, VHQ); without it such "
                        "input is an error. Recorded in the run records")
    if out_rate:
        p.add_argument("--out-rate", choices=("model", "input"), default="model",
                       help="rate of the written stems: the models' 32 kHz (default) or the input's own "
                            "(resampled back, same length as the input)")


def _cmd_submit(args) -> int:
    from .submit import check_package, run_submit

    if args.check:
        given = [f"--{k.replace('_', '-')}" for k in _SUBMIT_MAKE if getattr(args, k) is not None]
        if given:
            raise S5Error(f"submit --check takes only --dev-test and --eval, not {' '.join(given)}")
        s = check_package(args.check, args.dev_test, args.eval)
        if s.warning():
            print(f"s5jax: {s.warning()}", file=sys.stderr)
        print(f"{args.check}: OK ({s.describe()})")
        return 0
    missing = [f"--{k.replace('_', '-')}" for k in ("dev_test", "eval", *_SUBMIT_MAKE)
               if getattr(args, k) is None and k not in _SUBMIT_OPTIONAL]
    if missing:
        raise S5Error(f"submit needs {' '.join(missing)} (or --check PACKAGE to check one)")
    _compile_cache(args)
    run_submit(args.dev_test, args.eval, args.out, args.tagger, args.separator, args.author, args.affiliation,
               args.number, batch_size=args.batch_size, progress=not args.quiet, engine=_engine(args),
               dev_resample=args.resample)
    return 0


_SUBMIT_MAKE = ("tagger", "separator", "author", "affiliation", "number", "out", "system", "tagger2",
                "separator2")
_SUBMIT_OPTIONAL = ("system", "tagger2", "separator2")


def _cmd_cache(args) -> int:
    from .replay.cache import run_cache

    process = _join_processes(args)
    _compile_cache(args)
    builder = run_cache(args.input, args.out, [args.tagger, args.tagger2], args.separator, args.separator2,
                        systems=args.system, oracle_dir=args.oracle, batch_size=args.batch_size,
                        progress=not args.quiet, process=process, resample=args.resample)
    return 1 if builder.bad else 0          # bad clips: each reported, the others cached


def _cmd_sweep(args) -> int:
    from .files import check_writable
    from .replay.sweep import GRIDS, check_out_dir, run_sweep
    from .system.config import load_system

    start = load_system(args.system) if args.system else None     # bad config / OUT: fail before any work
    check_out_dir(args.out)
    check_writable(args.out)
    _compile_cache(args)          # the replay's programs and, with models, the models' (as infer/cache)
    fill, made_by, names, optimum = None, {}, None, None
    if args.synthetic:
        if args.cache:
            raise S5Error("give either a CACHE folder or --synthetic N, not both")
        from .replay.planted import SyntheticWorld

        world = SyntheticWorld(args.synthetic, seed=args.seed)
        cache, fill, made_by = world.cache(), world.fill, {"synthetic": {"clips": args.synthetic, "seed": args.seed}}
        optimum = world.optimum()
        has_b = True
    elif not args.cache:
        raise S5Error("give a CACHE folder (made by `s5jax cache`) or --synthetic N")
    else:
        from .replay.cache import CacheBuilder, load, read_manifest

        names, cache = load(args.cache)
        made_by = read_manifest(args.cache)["models"]
        has_b = made_by.get("separator2") is not None
        if args.input:
            from .system.engine import load_models

            t4, t1, sep_a, sep_b = load_models([args.tagger, args.tagger2], args.separator, args.separator2)
            builder = CacheBuilder.open(args.cache, args.input, t4, t1, sep_a, sep_b, args.oracle_dir,
                                        batch_size=args.batch_size,
                                        resample=bool(read_manifest(args.cache).get("resample")))

            def fill(missing):
                from tqdm.auto import tqdm

                with tqdm(total=sum(len(k) for k in missing.values()), desc="sweep: entries", unit="entry",
                          disable=args.quiet) as bar:
                    builder.fill({names[i]: keys for i, keys in missing.items()}, progress=bar.update)
                return builder.load(names)[1]
    if start is None:
        start = load_system("system3" if has_b else "system1")
    run_sweep(cache, start, args.out, fill=fill, grids=GRIDS[args.grid], margin=args.margin, folds=args.folds,
              oracle=args.oracle, bootstrap=args.bootstrap, seed=args.seed, progress=not args.quiet,
              made_by=made_by, names=names, known_optimum=optimum)
    return 0


def _add_process_options(parser) -> None:
    g = parser.add_argument_group("several processes (jax.distributed; each process takes every N-th clip)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator, or 'auto' on a cluster JAX detects (SLURM, MPI, TPU)")
    g.add_argument("--num-processes", type=_positive_int, default=None)
    g.add_argument("--process-id", type=int, default=None)


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, clips=args.clips, world=args.world, folds=args.folds, grid=args.grid,
             batch_size=args.batch_size, quiet=args.quiet)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _precision_option(p) -> None:
    p.add_argument("--precision", choices=("highest", "high", "default"), default=None,
                   help="matmul/conv precision of both models (default: the checkpoints' own, 'highest': "
                        "float32-exact everywhere; 'high'/'default' allow TF32/bf16 passes on GPU/TPU; "
                        "no effect on CPU). Recorded with the results")


def _cache_option(p) -> None:
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache ($S5JAX_CACHE_DIR, else "
                        "$XDG_CACHE_HOME/s5jax/jax, else ~/.cache/s5jax/jax; safe to delete)")


def _cmd_world(args) -> int:
    from .synth.world import WorldConfig, make_world

    cfg = WorldConfig(seed=args.seed, test_clips=args.test_clips)
    make_world(args.out, cfg, log=(lambda m: None) if args.quiet else print, progress=not args.quiet)
    print(f"world in {args.out} (test split: {args.out}/synthesized/test)")
    return 0


def _cmd_train(args) -> int:
    from .training.launch import train_main

    _compile_cache(args)          # init, training and validation programs: a second run or a resume skips XLA
    return train_main(args)


def _cmd_scenes(args) -> int:
    from .synth import testset

    if args.action == "render":
        n = testset.render_set(args.data, args.metadata, args.out, progress=not args.quiet)
        print(f"rendered {n} scene(s) into {args.out} (soundscape/, oracle_target/)")
        return 0
    from .synth.scenes import SynthConfig

    cfg = SynthConfig.tagger if args.recipe == "tagger" else SynthConfig.separator
    kw = {} if args.seconds is None else {"seconds": args.seconds}
    names = testset.draw_set(args.data, args.split, args.count, args.out, cfg(**kw), seed=args.seed,
                             zero_share=args.zero_share, prefix=args.prefix, absolute_paths=args.absolute_paths)
    print(f"wrote {len(names)} scene(s): {args.out}")
    return 0


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {v}")
    return v


def _add_scenes(sub) -> None:
    sc = sub.add_parser("scenes", help="SpAudSyn scene metadata: render a list into the dev-test layout, or draw one")
    act = sc.add_subparsers(dest="action", required=True)
    r = act.add_parser("render", help="render scenes (a SpAudSyn scene JSON or a valid.json list) into "
                                      "OUT/soundscape/<name>.wav + OUT/oracle_target/<name>[_<k>]_<Label>.wav")
    r.add_argument("--data", required=True, help="the dev set folder the scenes' files are in (data/dev_set)")
    r.add_argument("--metadata", required=True, help="a scene JSON or a list [{\"metadata_path\": ...}]")
    r.add_argument("--out", required=True, help="output folder (new, empty, or an earlier rendering to resume)")
    r.add_argument("--quiet", action="store_true", help="no per-scene lines")
    r.set_defaults(func=_cmd_scenes)
    d = act.add_parser("draw", help="draw scenes as the official recipe does and write their metadata")
    d.add_argument("--data", required=True, help="the dev set folder (data/dev_set)")
    d.add_argument("--split", default="valid", help="the split to draw from (default valid)")
    d.add_argument("--count", type=_positive_int, required=True, help="number of scenes")
    d.add_argument("--out", required=True, help="the list to write, e.g. metadata/valid.json (scenes go to "
                                                 "metadata/valid/<prefix>_<i>.json)")
    d.add_argument("--recipe", choices=("tagger", "separator"), default="tagger",
                   help="target count range: tagger [0, 3] (default), separator [1, 3]")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--zero-share", type=_share, default=None, help="share of scenes without targets (default: "
                                                                   "the official uniform count)")
    d.add_argument("--seconds", type=float, default=None, help="scene length (default 10)")
    d.add_argument("--prefix", default="soundscape", help="scene name prefix (default soundscape)")
    d.add_argument("--absolute-paths", action="store_true",
                   help="name folders by absolute paths instead of the baseline's data/dev_set/...")
    d.set_defaults(func=_cmd_scenes)


def build_parser() -> argparse.ArgumentParser:
    from .checkpoint import KINDS
    from .system.config import presets_text

    presets = presets_text()

    p = argparse.ArgumentParser(prog="s5jax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert an official checkpoint (.ckpt / .pth) to an s5jax folder")
    c.add_argument("ckpt", help="official Lightning .ckpt or M2D .pth")
    c.add_argument("out_dir", help="output folder (orbax variables + config.json)")
    c.add_argument("--kind", choices=KINDS, default=None, help="model kind (detected from the keys if omitted)")
    c.add_argument("--set", action="append", metavar="FIELD=VALUE", default=[],
                   help="set a config field the checkpoint does not store (repeatable), e.g. "
                        "num_heads=4 for a non-base M2D, hop=40 for a separator trained with another hop")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    c.set_defaults(func=_cmd_convert)

    i = sub.add_parser("infer", help="tag, separate and (with oracle targets) score a folder of soundscapes")
    i.add_argument("input", help="a set folder with soundscape/ (dev test) or a folder of .wav mixtures (eval)")
    i.add_argument("--tagger", required=True,
                   help="s5jax tagger checkpoint folder; a 1-ch or 4-ch tagger (its kind decides)")
    i.add_argument("--separator", required=True, help="s5jax separator checkpoint folder")
    i.add_argument("--out", required=True, help="output folder for stems, results.json, labels.csv, scores")
    i.add_argument("--oracle", default=None,
                   help="oracle_target folder (default: INPUT/oracle_target when present) -> scores")
    i.add_argument("--batch-size", type=_positive_int, default=None,
                   help="clips per batch, split over all local devices (default: 1 per device on CPU, "
                        "where bigger batches are slower per clip; 4 per accelerator)")
    i.add_argument("--zip", default=None, help=argparse.SUPPRESS)   # gone: says to use `s5jax submit`
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.add_argument("--system", default=None, metavar="CONFIG|PRESET",
                   help="run the refined system: a config JSON (e.g. a sweep's best.json) or a preset. "
                        f"{presets}")
    i.add_argument("--tagger2", default=None, help="the second tagger of the system (the taggers' kinds tell "
                                                   "which is the 1-ch one)")
    i.add_argument("--separator2", default=None, help="separator B for the dual-separator selection")
    _add_process_options(i)
    _precision_option(i)
    _cache_option(i)
    _resample_options(i)
    i.set_defaults(func=_cmd_infer)

    s = sub.add_parser("submit", help="run the system on the dev-test and evaluation sets and write the "
                                      "DCASE submission package (folder + zip), or --check one",
                       usage="s5jax submit --dev-test DEV --eval EVAL --tagger T --separator S --author A "
                             "--affiliation F --number K --out D [options]\n"
                             "       s5jax submit --check PACKAGE [--dev-test DEV] [--eval EVAL]",
                       description="Make the DCASE submission package D/A_F_task4_K/ and D/A_F_task4_K.zip "
                                   "(every argument of the first group is required), or check one (--check).")
    r = s.add_argument_group("required to make a package")
    r.add_argument("--dev-test", default=None, metavar="DEV",
                   help="dev-test set folder (soundscape/ + oracle_target/): scored into dev_set_test_results.json")
    r.add_argument("--eval", default=None, metavar="EVAL", help="evaluation set folder: stems into eval_out/")
    r.add_argument("--tagger", default=None, metavar="T", help="s5jax tagger checkpoint folder")
    r.add_argument("--separator", default=None, metavar="S", help="s5jax separator checkpoint folder")
    r.add_argument("--author", default=None, metavar="A", help="author surname (letters, digits, '-')")
    r.add_argument("--affiliation", default=None, metavar="F",
                   help="affiliation abbreviation (letters, digits, '-')")
    r.add_argument("--number", default=None, metavar="K", help="submission number K (1, 2, ...)")
    r.add_argument("--out", default=None, metavar="D", help="writes D/A_F_task4_K/ and D/A_F_task4_K.zip "
                                                           "(work files in D/.s5jax-submit/)")
    o = s.add_argument_group("options when making a package")
    o.add_argument("--system", default=None, metavar="CONFIG|PRESET", help="as for infer: the refined system, "
                                                                          f"a config JSON or a preset. {presets}")
    o.add_argument("--tagger2", default=None, help="as for infer: the system's second tagger")
    o.add_argument("--separator2", default=None, help="as for infer: separator B of the system")
    o.add_argument("--batch-size", type=_positive_int, default=None, help="as for infer")
    _precision_option(o)
    _cache_option(o)
    o.add_argument("--resample", action="store_true",
                   help="resample a dev-test set at another rate to 32 kHz on load (soxr; scores at 32 kHz); "
                        "the evaluation set must be 32 kHz as the package requires")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    c = s.add_argument_group("checking a package instead")
    c.add_argument("--check", default=None, metavar="PACKAGE",
                   help="only check an existing package folder or zip (with --dev-test/--eval: against those "
                        "sets; no other argument)")
    s.set_defaults(func=_cmd_submit)
    g = sub.add_parser("segment", help="one recording of any length in overlapping windows: a stem per "
                                       "detected source, events.csv, timeline.png (bounded memory, resumable)")
    g.add_argument("recording", help="a 4-channel audio file (any length)")
    g.add_argument("--tagger", required=True, help="as for infer")
    g.add_argument("--separator", required=True, help="as for infer")
    g.add_argument("--out", required=True, help="new or empty folder (or one of an earlier segment run: resume)")
    g.add_argument("--system", default=None, metavar="CONFIG|PRESET", help="as for infer: the refined system")
    g.add_argument("--tagger2", default=None, help="as for infer")
    g.add_argument("--separator2", default=None, help="as for infer")
    g.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10, the "
                                                               "models' training length)")
    g.add_argument("--hop", type=float, default=5.0, help="hop between windows in seconds, window/2..window "
                                                         "(default 5)")
    g.add_argument("--batch-size", type=_positive_int, default=None, help="windows per batch (as for infer)")
    _resample_options(g)
    _precision_option(g)
    _cache_option(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_segment)

    k = sub.add_parser("cache", help="cache per-clip model outputs so system configs replay exactly without audio")
    k.add_argument("input", help="a dev-test set folder (soundscape/ and oracle_target/)")
    k.add_argument("--tagger", required=True, help="a tagger checkpoint folder (4-ch or 1-ch)")
    k.add_argument("--tagger2", required=True, help="the other tagger (one 4-ch, one 1-ch; kinds tell which)")
    k.add_argument("--separator", required=True, help="separator A")
    k.add_argument("--separator2", default=None, help="separator B (dual-separator selection)")
    k.add_argument("--out", required=True, help="cache folder (new, or a cache of the same checkpoints to extend)")
    k.add_argument("--system", action="append", default=None, metavar="CONFIG|PRESET",
                   help="also cache every entry this system config reaches (repeatable; default: the presets "
                        "system1, plus system3 with --separator2)")
    k.add_argument("--oracle", default=None, help="oracle_target folder (default: INPUT/oracle_target)")
    k.add_argument("--batch-size", type=_positive_int, default=None)
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_process_options(k)
    _cache_option(k)
    _resample_options(k, out_rate=False)
    k.set_defaults(func=_cmd_cache)

    w = sub.add_parser("sweep", help="tune a system config over a cache by exact CA-SDRi replay (staged grids, "
                                     "coordinate descent, per-class thresholds)")
    w.add_argument("cache", nargs="?", default=None, help="a cache folder made by `s5jax cache`")
    w.add_argument("--out", required=True, help="new or empty folder for best.json, report.md, tables, plots")
    w.add_argument("--system", default=None, metavar="CONFIG|PRESET",
                   help="start config (its switches stay fixed; default system3 if the cache has separator B, "
                        "else system1)")
    w.add_argument("--margin", type=float, default=0.01,
                   help="a per-class change is accepted only if it gains more than this (dB, default 0.01)")
    w.add_argument("--folds", type=int, default=0, help="also tune on K-1 folds and score the held-out fold (K>=2)")
    w.add_argument("--oracle", action="store_true",
                   help="also score ground-truth labels as queries through separator A (the labelling bound)")
    w.add_argument("--bootstrap", type=_positive_int, default=1000, help="resamples for the 95%% interval of the gain")
    w.add_argument("--grid", choices=("default", "small"), default="default", help="threshold grids")
    w.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap")
    w.add_argument("--synthetic", type=_positive_int, default=None, metavar="N",
                   help="instead of a cache: a synthetic cache world of N clips with a known optimum")
    g = w.add_argument_group("computing missing entries (else configs that need them are reported unscored)")
    g.add_argument("--input", default=None, help="the dev-test folder the cache was made from")
    g.add_argument("--oracle-dir", default=None, help="oracle_target folder (default: INPUT/oracle_target)")
    g.add_argument("--tagger", default=None)
    g.add_argument("--tagger2", default=None)
    g.add_argument("--separator", default=None)
    g.add_argument("--separator2", default=None)
    g.add_argument("--batch-size", type=_positive_int, default=None, help="clips per batch of a fill (as for cache)")
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    _cache_option(w)
    w.set_defaults(func=_cmd_sweep)

    d = sub.add_parser("demo", help="the report's Table 1 in miniature: the bundled world and models, trivial "
                                    "references, baseline, System 1, System 3, a sweep with folds and the "
                                    "oracle bound, the tuned system")
    d.add_argument("--out", default="runs/demo", help="working folder (default runs/demo)")
    d.add_argument("--clips", type=int, default=None,
                   help="use the first N clips of the world's 200-clip test split (default: all)")
    d.add_argument("--world", default=None, help="the world folder (default OUT/world; made if absent)")
    d.add_argument("--folds", type=int, default=5, help="held-out folds of the sweep (0: none; default 5)")
    d.add_argument("--grid", choices=("default", "small"), default="default", help="the sweep's threshold grids")
    d.add_argument("--batch-size", type=_positive_int, default=None, help="as for infer")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train", help="train or fine-tune a tagger or the separator (see s5jax/training/loop.py)")
    t.add_argument("model", choices=("tagger", "separator"))
    t.add_argument("config", help="JSON training config (s5jax/training/config.py lists the keys)")
    t.add_argument("--out", default=None, help="run folder (overrides the config's out)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host: jax.distributed coordinator address (same on every process)")
    t.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    t.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index")
    _cache_option(t)
    t.set_defaults(func=_cmd_train)

    wd = sub.add_parser("world", help="the bundled procedural sound world (official dev-set layout, rooms, "
                                      "a rendered test split)")
    wsub = wd.add_subparsers(dest="world_command", required=True)
    wm = wsub.add_parser("make", help="make the world in OUT (deterministic; about a minute on 2 cores)")
    wm.add_argument("out", help="new or empty folder (a complete world of the same settings is kept)")
    wm.add_argument("--seed", type=int, default=2026, help="the world's seed (default 2026, the bundled models')")
    wm.add_argument("--test-clips", type=_positive_int, default=200, help="clips of the rendered test split")
    wm.add_argument("--quiet", action="store_true", help="no progress lines")
    wm.set_defaults(func=_cmd_world)
    _add_scenes(sub)
    return p


def _resolve_bundled(args) -> None:
    """Checkpoint arguments may name a bundled model, `world:tagger-4ch` (s5jax/bundled.py)."""
    from .bundled import resolve

    for name in ("tagger", "tagger2", "separator", "separator2"):
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, resolve(getattr(args, name)))


def _chain(e: BaseException):
    """`e` and the exceptions it was raised from or during."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _resolve_bundled(args)
        runtime.configure_from_env()      # before JAX allocates anything; S5JAX_MALLOC=default opts out
        return args.func(args)
    except S5Error as e:
        print(f"s5jax: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        # a full disk (quota, read-only file system, permissions) that no writer named: still one line
        from .errors import WriteError
        from .files import write_errno

        code = write_errno(e)
        if code is None:
            raise
        where = next((x.filename for x in _chain(e) if isinstance(x, OSError) and x.filename), None)
        print(f"s5jax: error: {WriteError(code, where or 'an output file (its name was not reported)')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s5jax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
