"""`s5jax` command line: one console command with subcommands.

    s5jax convert CKPT OUT_DIR [--kind ...]   official PyTorch checkpoint -> s5jax checkpoint folder

Errors in the user's input are printed as one line (`s5jax: error: ...`) with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from .errors import S5Error


def _cmd_convert(args) -> int:
    from .conversion import convert_checkpoint

    kind = convert_checkpoint(args.ckpt, args.out_dir, args.kind)
    print(f"wrote {kind} checkpoint to {args.out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .checkpoint import KINDS

    p = argparse.ArgumentParser(prog="s5jax", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert an official checkpoint (.ckpt / .pth) to an s5jax folder")
    c.add_argument("ckpt", help="official Lightning .ckpt or M2D .pth")
    c.add_argument("out_dir", help="output folder (orbax variables + config.json)")
    c.add_argument("--kind", choices=KINDS, default=None, help="model kind (detected from the keys if omitted)")
    c.set_defaults(func=_cmd_convert)
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
