"""`s5jax` command line: one console command with subcommands.

    s5jax convert CKPT OUT_DIR [--kind ...]   official PyTorch checkpoint -> s5jax checkpoint folder
    s5jax infer INPUT --tagger T --separator S --out OUT [--oracle DIR] [--zip NAME]
                                             the baseline system over a folder of soundscapes
    s5jax demo [--out DIR]                   the whole workflow on generated scenes and synthetic weights

Errors in the user's input are printed as one line (`s5jax: error: ...`) with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import S5Error


def _cmd_convert(args) -> int:
    from .official import convert_checkpoint

    from .official import parse_overrides

    kind = convert_checkpoint(args.ckpt, args.out_dir, args.kind, parse_overrides(args.set))
    print(f"wrote {kind} checkpoint to {args.out_dir}")
    return 0


def _cmd_infer(args) -> int:
    from .infer import run_infer

    report = run_infer(args.input, args.out, args.tagger, args.separator, oracle_dir=args.oracle,
                       batch_size=args.batch_size, zip_name=args.zip, progress=not args.quiet)
    print(f"done: {len(report.processed)} clip(s) processed, {len(report.resumed)} resumed, "
          f"{len(report.skipped)} skipped; outputs in {args.out}")
    unscored = report.scores["skipped"] if report.scores else {}
    return 1 if report.skipped or unscored else 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.out, clips=args.clips, batch_size=args.batch_size)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .checkpoint import KINDS

    p = argparse.ArgumentParser(prog="s5jax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert an official checkpoint (.ckpt / .pth) to an s5jax folder")
    c.add_argument("ckpt", help="official Lightning .ckpt or M2D .pth")
    c.add_argument("out_dir", help="output folder (orbax variables + config.json)")
    c.add_argument("--kind", choices=KINDS, default=None, help="model kind (detected from the keys if omitted)")
    c.add_argument("--set", action="append", metavar="FIELD=VALUE", default=[],
                   help="set a config field the checkpoint does not store (repeatable), e.g. "
                        "num_heads=4 for a non-base M2D, hop=40 for a separator trained with another hop")
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
    i.add_argument("--zip", default=None, metavar="NAME",
                   help="also write OUT/NAME.zip in the DCASE submission layout (NAME like Doe_Uni_task4_1)")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_cmd_infer)

    d = sub.add_parser("demo", help="generate scenes + synthetic-weight official checkpoints, convert, infer, score")
    d.add_argument("--out", default="runs/demo", help="working folder (default runs/demo)")
    d.add_argument("--clips", type=int, default=6, help="number of generated soundscapes")
    d.add_argument("--batch-size", type=_positive_int, default=2)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except S5Error as e:
        print(f"s5jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s5jax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
