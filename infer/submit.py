"""Make the DCASE submission package: `python infer/submit.py --dev-test DEV --eval EVAL --tagger T
--separator S --author A --affiliation F --number K --out D`, or check one: `--check PACKAGE`
(same as `s5jax submit`)."""
import sys

from s5jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
