"""Train or fine-tune a model: `python train/train.py tagger|separator CONFIG [--out DIR]`
(same as `s5jax train`; multi-host flags: see s5jax/training/launch.py)."""
import sys

from s5jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
