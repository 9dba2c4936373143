"""Past one machine: split a clip list over the processes of a `jax.distributed` job.

Each process computes and writes only its share of the clips (`share`); a `barrier` waits until
every process is done, after which process 0 alone writes what covers all clips (a cache manifest,
infer's results and scores). Within a process the batch is still sharded over its local devices.

    process = initialize("10.0.0.1:1234", num_processes=2, process_id=0)   # (index, count)
    mine = share(clips, process)
"""
from __future__ import annotations

from typing import Sequence, TypeVar

from ..errors import S5Error

T = TypeVar("T")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join a jax.distributed job -> (process index, process count); (0, 1) when no option is given.
    `coordinator="auto"` lets JAX find the job from its environment (SLURM, Open MPI, TPU pods)."""
    if coordinator is None and num_processes is None and process_id is None:
        return 0, 1
    import jax

    if jax.distributed.is_initialized():
        # a second command in a process that already joined the job (`s5jax.cli.main` called again,
        # e.g. `cache` then `infer`): it runs in that job; JAX allows one initialize per process
        if num_processes is not None and (jax.process_count(), jax.process_index()) != (num_processes, process_id):
            raise S5Error(f"this process already runs as process {jax.process_index()} of {jax.process_count()}; "
                          f"it cannot join as process {process_id} of {num_processes}")
        return jax.process_index(), jax.process_count()
    # cross-process collectives between CPU devices (training's gradient sums, barriers); GPU/TPU
    # backends ignore it. Must be set before any backend starts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        kwargs = {}
    else:
        if coordinator is None or num_processes is None or process_id is None:
            raise S5Error("a multi-process run needs --coordinator HOST:PORT, --num-processes and --process-id "
                          "(or --coordinator auto on a cluster JAX detects)")
        if not 0 <= process_id < num_processes:
            raise S5Error(f"--process-id {process_id} is not in 0..{num_processes - 1}")
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as e:
        raise S5Error(f"cannot join the jax.distributed job ({str(e).splitlines()[0] if str(e) else e})") from None
    return jax.process_index(), jax.process_count()


def share(items: Sequence[T], process: tuple[int, int]) -> list[T]:
    """This process's items: every count-th from its index (balanced, and the same on every process)."""
    index, count = process
    return list(items[index::count])


# How long a process waits at a barrier for the others (their shares may take longer than its own).
# A process that dies is reported sooner, by the coordination service's heartbeats.
BARRIER_TIMEOUT_S = 24 * 3600


def barrier(name: str, process: tuple[int, int], timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Wait until every process of the job reaches the barrier `name` (no-op for one process); `name`
    is used once per job.

    The coordination service's own barrier (the key-value store every jax.distributed job has), not a
    collective over the devices: `multihost_utils.sync_global_devices` builds a gloo context on CPU,
    and that build gives up when another process arrives more than 30 s later — as one does whose
    share of the clips takes longer."""
    if process[1] > 1:
        from jax._src import distributed      # the job's client; jax.distributed does not re-export it

        client = distributed.global_state.client
        if client is None:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)
            return
        try:
            client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))
        except Exception as e:  # the runtime's errors are one class with a multi-line text
            raise S5Error(f"waiting for the other processes at {name}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
