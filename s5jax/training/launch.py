"""`s5jax train` behind the CLI: multi-host start-up, config, run, summary.

Multi-host launch (the same command on every host, only --process-id differs):

    s5jax train separator cfg.json --coordinator HOST0:1234 --num-processes 2 --process-id 0   # host 0
    s5jax train separator cfg.json --coordinator HOST0:1234 --num-processes 2 --process-id 1   # host 1

On TPU pods and SLURM/Open MPI clusters jax.distributed finds these by itself: pass --coordinator auto.
The global batch is split over all devices of all processes; OUT must be a folder every process sees.
"""
from __future__ import annotations

import jax

from ..processes import initialize


def train_main(args) -> int:
    from .config import load_config
    from .loop import run_training

    initialize(args.coordinator, args.num_processes, args.process_id)
    cfg = load_config(args.config, args.model, out=args.out)
    res = run_training(cfg, progress=not args.quiet)
    if jax.process_index() == 0:
        last = res.valid[-1] if res.valid else {}
        print(f"done: step {res.steps_done}/{cfg.steps} (resumed from {res.resumed_from}); "
              f"best validation loss {res.best_valid_loss}; last validation {last}; exports in {cfg.out}/export")
    return 0
