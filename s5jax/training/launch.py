"""`s5jax train` behind the CLI: multi-host start-up, config, run, summary.

Multi-host launch (the same command on every host, only --process-id differs):

    s5jax train separator cfg.json --coordinator HOST0:1234 --num-processes 2 --process-id 0   # host 0
    s5jax train separator cfg.json --coordinator HOST0:1234 --num-processes 2 --process-id 1   # host 1

On TPU pods and SLURM/Open MPI clusters jax.distributed finds these by itself: pass --coordinator auto.
The global batch is split over all devices of all processes; OUT must be a folder every process sees.
"""
from __future__ import annotations

import os

import jax

from ..runtime.processes import initialize


def train_main(args) -> int:
    from .config import load_config
    from .loop import run_training

    initialize(args.coordinator, args.num_processes, args.process_id)
    cfg = load_config(args.config, args.model, out=args.out)
    res = run_training(cfg, progress=not args.quiet)
    if jax.process_index() == 0:
        print(summary(res, cfg.steps, cfg.out))
    return 0


def summary(res, steps: int, out: str) -> str:
    """The lines `s5jax train` ends on: steps, the last and the best validation, the exports."""
    def num(v, unit="", digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}{unit}"

    lines = [f"done: step {res.steps_done}/{steps}"
             + (f" (resumed from step {res.resumed_from})" if res.resumed_from else "")]
    if res.valid:
        v = res.valid[-1]
        lines.append(f"last validation (step {v['step']}): loss {num(v['valid_loss'], digits=4)}, CA-SDRi "
                     f"{num(v['ca_sdri'], ' dB')}, accuracy {num(v['accuracy_mixture'], ' %', 1)} (mixture), "
                     f"{num(v['accuracy_source'], ' %', 1)} (source)")
    at = [v["step"] for v in res.valid if v["step"] > 0 and v["valid_loss"] == res.best_valid_loss]
    lines.append(f"best validation loss {num(res.best_valid_loss, digits=4)}"
                 + (f" (step {at[0]})" if at else ""))
    exports = [os.path.join(out, "export", n) for n in ("best", "last") if os.path.isdir(os.path.join(out, "export", n))]
    lines.append(f"exports: {', '.join(exports) if exports else 'none yet (the run stopped before its first validation)'}")
    return "\n".join(lines)
