"""Convert an official checkpoint: `python convert/convert.py CKPT OUT_DIR` (same as `s5jax convert`)."""
import sys

from s5jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
