"""Run the S5 system over a folder: `python infer/infer.py INPUT --tagger T --separator S --out OUT`
(same as `s5jax infer`)."""
import sys

from s5jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
