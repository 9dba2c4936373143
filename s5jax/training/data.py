"""Training batches: synthesised scenes through a `grain` pipeline.

Why grain: it gives worker processes, prefetch, a deterministic order and a checkpointable iterator
state (`get_state` / `set_state`) out of the box and is JAX's own loader; synthesis is pure NumPy, so
worker processes sidestep the GIL where threads would not.

Element `b` of the pipeline is this process's rows of global batch `b`: scenes b·B + p·L + j
(B global batch, L = B / processes, p = process index, j < L), each a pure function of
(seed, scene index, zero share at step b). So the order is fixed by the seed alone, the same for any
number of workers, devices or processes, and a resumed run continues with exactly the batches it
would have seen.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..synth.scenes import SceneSynth


class BatchMaker:
    """Picklable batch builder (worker processes get a copy): batch index -> dict of numpy arrays
    mixture [L, 4, n] float32, labels [L, 3] int32 and, for the separator, refs [L, 3, n] float32."""

    def __init__(self, synth: SceneSynth, seed: int, global_batch: int, process_index: int,
                 process_count: int, zero_share: Callable[[int], float | None], with_refs: bool):
        if global_batch % process_count:
            raise ValueError(f"batch {global_batch} does not split over {process_count} processes")
        self.synth, self.seed, self.global_batch = synth, seed, global_batch
        self.local = global_batch // process_count
        self.offset = process_index * self.local
        self.zero_share, self.with_refs = zero_share, with_refs

    def __call__(self, b: int) -> dict[str, np.ndarray]:
        b = int(b)
        share = self.zero_share(b)
        scenes = [self.synth.scene(self.seed, b * self.global_batch + self.offset + j, share)
                  for j in range(self.local)]
        out = {"mixture": np.stack([s["mixture"] for s in scenes]),
               "labels": np.stack([s["labels"] for s in scenes])}
        if self.with_refs:
            out["refs"] = np.stack([s["refs"] for s in scenes])
        return out


def _parse_absl_flags() -> None:
    # grain's worker processes read absl flags; a library user's program has usually not parsed them
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


_NO_SHARED_MEMORY = 1 << 62      # grain's min_shm_size: arrays smaller than this are pickled


class TrainBatches:
    """An iterator over batches `start..steps-1` with `state()` / `restore(state)` for checkpoints.
    A state restores into a pipeline of the same `start` and worker count; with another worker count,
    build the pipeline with `start` = the step reached instead (same batches, since each is pure)."""

    def __init__(self, maker: BatchMaker, steps: int, workers: int = 0, prefetch: int = 2, start: int = 0):
        import grain

        ds = grain.MapDataset.range(start, steps).map(maker)
        if workers > 0:
            _parse_absl_flags()
            # Batches come back pickled through the worker queues, not in shared memory: grain unlinks a
            # shared block when its array is collected, on a thread pool that is not drained at exit, so
            # the last batches' blocks outlived every run ("resource_tracker: ... leaked shared_memory
            # objects"). A pickled batch costs one copy (~0.1 s for a 160 MB tagger batch of 32 clips),
            # small against a training step.
            it = grain.experimental.WithOptionsIterDataset(
                ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)),
                grain.experimental.DatasetOptions(min_shm_size=_NO_SHARED_MEMORY))
            self._dataset = it.mp_prefetch(
                grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=prefetch))
        else:
            self._dataset = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
        self._it = iter(self._dataset)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._it)

    def state(self) -> dict:
        return self._it.get_state()

    def restore(self, state: dict) -> None:
        self._it.set_state(state)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        self._it = self._dataset = None      # grain's iterators go now, not at interpreter exit
