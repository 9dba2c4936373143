"""`s5jax train`: the training loop, data-parallel over every device of every process.

One code path for one device, many local devices and many hosts: a 1-D `jax.sharding.Mesh` over
`jax.devices()` (all processes' devices after `jax.distributed.initialize`), the batch sharded along
it, the state replicated; each process builds only its rows of a batch (training/data.py) and
`jax.make_array_from_process_local_data` assembles the global array. The loss is the mean over the
global batch, so it does not depend on the number of devices or processes.

Run folder OUT (every file written atomically; a resumed run continues bit-identically):
    run.json          the settings of the run (a resume with other settings is refused)
    valid.json        the validation scenes drawn from valid_split when no valid_metadata is used, in the
    valid/*.json        baseline's metadata format (a list of SpAudSyn scenes; redrawn at every start)
    checkpoints/last/ orbax CheckpointManager: state (step, weights, BatchNorm statistics, optimiser)
    checkpoints/best/ + the data iterator state; best = lowest validation loss
    log.jsonl         one JSON line per logged step and per validation
    tb/               TensorBoard scalars (tensorboardX)
    export/last, export/best   s5jax checkpoint folders (Tagger/Separator.from_checkpoint, s5jax infer)
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..errors import ConfigError, S5Error
from ..files import append_text, check_writable, read_record, write_text_atomic, writing
from ..metric import Totals, empty_totals, merge_totals, summarize
from ..runtime.memory import HeapGuard
from ..runtime.processes import barrier
from ..labels import NUM_CLASSES
from ..synth.metadata import check_scene_files
from ..synth.scenes import SceneRenderer, SceneSynth, pack, read_scenes, write_scenes
from . import state as st
from .config import RESUMABLE_CHANGES, TrainConfig
from .data import BatchMaker, TrainBatches
from .optim import official_optimizer, schedule

RUN_FORMAT = "s5jax-train-run"


@dataclass
class TrainResult:
    out: str
    steps_done: int                     # the step reached (== cfg.steps when finished)
    resumed_from: int                   # 0 for a fresh run
    losses: list = field(default_factory=list)     # (step, training loss) of this invocation
    valid: list = field(default_factory=list)      # validation records of this invocation
    best_valid_loss: float | None = None


# ------------------------------------------------------------------------------------- run folder
def _check_out(cfg: TrainConfig) -> bool:
    """Check OUT without writing. Returns True when OUT holds an earlier run of the same settings
    (resume); another run's or a user's folder is refused."""
    out = cfg.out
    run_path = os.path.join(out, "run.json")
    mine = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}
    prev = read_record(run_path, "run record")
    if prev is not None:
        if prev.get("format") != RUN_FORMAT:
            raise S5Error(f"{run_path}: not an s5jax training run")
        theirs = {k: v for k, v in prev.get("config", {}).items() if k not in RESUMABLE_CHANGES}
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise ConfigError(f"{out}: holds a run with other settings ({', '.join(diff)}); "
                              "choose another out folder")
        return True
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise S5Error(f"{out}: exists and is not an s5jax training run; choose a new or empty folder")
    return False


def _write_out(cfg: TrainConfig, resuming: bool, drawn: list | None) -> None:
    """Create OUT (run.json) and store drawn validation scenes: only after everything was checked."""
    if not resuming:
        os.makedirs(cfg.out, exist_ok=True)
        write_text_atomic(os.path.join(cfg.out, "run.json"),
                          json.dumps({"format": RUN_FORMAT, "version": 1, "config": cfg.to_dict(),
                                      "jax": jax.__version__}, indent=1))
    if drawn is not None:
        write_scenes(os.path.join(cfg.out, "valid.json"), drawn)


def valid_metadata_path(cfg: TrainConfig) -> str | None:
    """The fixed validation list: valid_metadata, else `<data_root>/metadata/valid.json` when it exists
    (the official recipe's), else None (scenes drawn from valid_split)."""
    if cfg.valid_metadata:
        return cfg.valid_metadata
    default = os.path.join(cfg.data_root, "metadata", "valid.json")
    return default if os.path.isfile(default) else None


def _valid_specs(cfg: TrainConfig) -> tuple[SceneRenderer, list[dict], list | None]:
    """-> (renderer, validation scenes, the drawn (name, scene) list to store in OUT or None). Drawn
    scenes are drawn anew at every start (pure in the data, the settings and valid_seed), so a
    corrected dataset is never validated on scenes drawn from the old one."""
    path = valid_metadata_path(cfg)
    if path is not None:
        named = read_scenes(path)
        renderer = SceneRenderer(cfg.data_root)
        for name, meta in named:
            check_scene_files(meta, renderer.paths, f"{path}: {name}")
        return renderer, [m for _, m in named], None
    synth = SceneSynth(cfg.data_root, cfg.valid_split, cfg.synth_config())
    drawn = [(f"valid_{i:05d}", synth.draw(cfg.valid_seed, i)) for i in range(cfg.valid_scenes)]
    return synth.renderer, [m for _, m in drawn], drawn


# -------------------------------------------------------------------------------------- the steps
def make_steps(task: st.Task, optimizer: Callable[[jax.Array], optax.GradientTransformation], train_bn: bool,
               repl, data_sh):
    """-> (train_step(state, batch, lr) -> (state, loss), eval_step(state, batch) -> (per-clip loss, metrics)).

    `optimizer(lr)` builds the optimiser for the learning rate of the step; lr is a program input (a
    float32 scalar, the schedule evaluated outside), so one compiled train step serves every learning
    rate, schedule and number of steps (optimizer(x).init must not depend on x)."""

    def train_step(state, batch, lr):
        tx = optimizer(lr)

        def loss_fn(trainable):
            variables = {"params": st.merge_params(trainable, state["frozen"]), "batch_stats": state["batch_stats"]}
            out, bs = task.forward(variables, batch, train_bn)
            return jnp.mean(task.per_clip_loss(out, batch)), bs

        (loss, bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["trainable"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
        new = {"step": state["step"] + 1, "trainable": optax.apply_updates(state["trainable"], updates),
               "frozen": state["frozen"], "batch_stats": bs, "opt_state": opt_state}
        return new, loss

    def eval_step(state, batch):
        variables = {"params": st.merge_params(state["trainable"], state["frozen"]),
                     "batch_stats": state["batch_stats"]}
        out, _ = task.forward(variables, batch, train_bn=False)
        return task.per_clip_loss(out, batch), task.clip_metrics(out, batch)

    train = jax.jit(train_step, in_shardings=(repl, data_sh, repl), out_shardings=(repl, repl), donate_argnums=0)
    evaluate = jax.jit(eval_step, in_shardings=(repl, data_sh), out_shardings=repl)
    return train, evaluate


@functools.lru_cache(maxsize=4)
def _official_steps(task: st.Task, opt: tuple, train_bn: bool, repl, data_sh):
    """make_steps with the official optimiser of constants opt = (clip, b1, b2, eps, weight_decay), kept
    per process: a later run of the same task, scope shapes and constants in this process (tests, a
    notebook, a resume in-process) reuses the traced and compiled steps instead of tracing and lowering
    them again (seconds per run; the persistent cache saves only the backend compile)."""
    return make_steps(task, lambda lr: official_optimizer(lr, *opt), train_bn, repl, data_sh)


def _step_lr(lr_at, step: int) -> np.ndarray:
    """The learning rate of 0-based step `step` as the train step's float32 input (the schedule's value
    in float32, as it was when the schedule was compiled into the step)."""
    return np.asarray(lr_at(step), np.float32)


def _global_batch(local: dict, data_sh) -> dict:
    return {k: jax.make_array_from_process_local_data(data_sh, v) for k, v in local.items()}


def _validate(evaluate, state, renderer: SceneRenderer, specs: list[dict], batch: int, with_refs: bool, data_sh,
              cache: dict) -> dict:
    """Validation loss (mean over the fixed scenes) and s5jax.metric summaries. Rendered scenes are
    kept in `cache` (they are fixed). The last batch is padded by repeating scenes, then masked."""
    pc, pi = jax.process_count(), jax.process_index()
    local = batch // pc
    losses_all, totals = [], empty_totals()
    for s0 in range(0, len(specs), batch):
        idx = [min(s0 + pi * local + j, len(specs) - 1) for j in range(local)]
        for i in idx:
            if i not in cache:
                cache[i] = pack(renderer.render(specs[i], f"validation scene {i}"))
        rows = {"mixture": np.stack([cache[i]["mixture"] for i in idx]),
                "labels": np.stack([cache[i]["labels"] for i in idx])}
        if with_refs:
            rows["refs"] = np.stack([cache[i]["refs"] for i in idx])
        per, met = evaluate(state, _global_batch(rows, data_sh))
        real = np.arange(s0, s0 + batch) < len(specs)        # global rows in order of processes
        per = np.asarray(per)[real]
        met = {k: np.asarray(v)[real] for k, v in met.items()}
        losses_all.append(per)
        t = Totals(clips=int(real.sum()), scored=int(met["valid"].sum()) if "valid" in met else 0,
                   score_sum=float(met["score"][met["valid"]].astype(np.float64).sum()) if "valid" in met else 0.0,
                   class_sum=met["class_sum"].astype(np.float64).sum(0) if "class_sum" in met else np.zeros(NUM_CLASSES),
                   class_count=met["class_count"].astype(np.int64).sum(0) if "class_count" in met
                   else np.zeros(NUM_CLASSES, np.int64),
                   tp=int(met["tp"].sum()), fp=int(met["fp"].sum()), fn=int(met["fn"].sum()),
                   correct=int(met["correct"].sum()))
        totals = merge_totals(totals, t)
    s = summarize(totals)
    return {"valid_loss": float(np.mean(np.concatenate(losses_all))), "ca_sdri": s["ca_sdri"],
            "accuracy_mixture": s["accuracy_mixture"], "accuracy_source": s["accuracy_source"]}


# -------------------------------------------------------------------------------------- checkpoints
def _managers(out: str):
    import orbax.checkpoint as ocp

    def mk(name):
        opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
        return ocp.CheckpointManager(os.path.abspath(os.path.join(out, "checkpoints", name)), options=opts,
                                     item_names=("state", "data"))
    return mk("last"), mk("best")


def _save(mngr, step: int, state, extra: dict) -> None:
    import orbax.checkpoint as ocp

    from ..checkpoint import orbax_writing

    with orbax_writing(os.fspath(mngr.directory)):      # a full disk: one line, not orbax's pages
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                data=ocp.args.JsonSave(extra)), force=True)
        mngr.wait_until_finished()


def _restore(mngr, step: int, state_like):
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state_like)
    got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                     data=ocp.args.JsonRestore()))
    return got["state"], got["data"]


# -------------------------------------------------------------------------------------- the run
def run_training(cfg: TrainConfig, progress: bool | None = None, stop_after: int | None = None) -> TrainResult:
    """Train as `cfg` says, resuming from OUT when it holds this run. `stop_after`: leave after that many
    steps of this invocation (for tests and time-boxed jobs; a later call resumes)."""
    primary = jax.process_index() == 0
    check_writable(cfg.out)                  # a read-only OUT fails before any work
    # everything is checked before anything is written to OUT: a start that fails leaves OUT as it was
    resuming = _check_out(cfg) if primary else False
    vsynth, vspecs, drawn = _valid_specs(cfg)
    synth = SceneSynth(cfg.data_root, cfg.train_split, cfg.synth_config())
    synth.check_rooms()
    task, variables, start = st.initial_task(cfg)
    if task.is_tagger and cfg.synth_config().seconds * 32000 < task.cfg.n_fft:
        raise ConfigError("synth.seconds is too short for the tagger's STFT")
    if primary:                              # the primary process writes OUT; the others then find it
        _write_out(cfg, resuming, drawn)
    _barrier("s5jax-train-out")
    if not primary:
        resuming = _check_out(cfg)
    trainable, frozen = st.split_params(variables["params"], st.trainable_predicate(task, cfg.effective_scope,
                                                                                       cfg.last_n))
    batch = cfg.effective_batch
    devices = jax.devices()
    if batch % len(devices):
        raise ConfigError(f"batch_size {batch} does not split over {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    repl, data_sh = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    opt = (cfg.clip, cfg.b1, cfg.b2, cfg.eps, cfg.weight_decay)
    lr_at = schedule(cfg.schedule, cfg.effective_lr, cfg.steps, cfg.warmup_steps)   # of the 0-based step
    state = {"step": np.zeros([], np.int32), "trainable": trainable, "frozen": frozen,
             "batch_stats": variables["batch_stats"], "opt_state": official_optimizer(0.0, *opt).init(trainable)}
    state = jax.device_put(jax.tree.map(jnp.asarray, state), repl)
    train_step, eval_step = _official_steps(task, opt, cfg.batchnorm == "train", repl, data_sh)

    maker = BatchMaker(synth, cfg.seed, batch, jax.process_index(), jax.process_count(), cfg.zero_share_at,
                       with_refs=not task.is_tagger)
    batches = TrainBatches(maker, cfg.steps, cfg.workers, cfg.prefetch)
    last_mngr, best_mngr = _managers(cfg.out)
    step0, best, data_start = 0, None, 0
    if resuming and last_mngr.latest_step() is not None:
        state, extra = _restore(last_mngr, last_mngr.latest_step(), state)
        step0, best = int(extra["step"]), extra.get("best_valid_loss")
        if int(state["step"]) != step0:
            raise S5Error(f"{cfg.out}: checkpoint step {int(state['step'])} != recorded step {step0}")
        if extra.get("data_workers") == cfg.workers:
            batches.restore(extra["data"])
        else:                                # another worker count: same batches, from the step
            batches.close()
            batches = TrainBatches(maker, cfg.steps, cfg.workers, cfg.prefetch, start=step0)
            data_start = step0
    result = TrainResult(cfg.out, step0, step0, best_valid_loss=best)
    log = _Log(cfg.out, primary, step0)
    if primary:
        log.text(f"training {task.kind} from {start}: {st.describe_scope(trainable, frozen)}, "
                 f"batch {batch} over {len(devices)} device(s) in {jax.process_count()} process(es)")
    vcache: dict = {}
    heap = HeapGuard()
    bar = _progress(cfg, step0, primary if progress is None else progress and primary)
    try:
        step = step0
        if step0 == 0:                       # the starting point, so improvement is measurable
            v = _validate(eval_step, state, vsynth, vspecs, batch, not task.is_tagger, data_sh, vcache)
            result.valid.append({"step": 0, **v})
            log.scalars(0, {f"valid/{k}": x for k, x in v.items() if x is not None})
        while step < cfg.steps and (stop_after is None or step - step0 < stop_after):
            local = next(batches)
            lr = _step_lr(lr_at, step)
            state, loss = train_step(state, _global_batch(local, data_sh),
                                     jax.make_array_from_callback((), repl, lambda _: lr))
            step += 1
            loss = float(loss)
            heap.after_call()
            if not np.isfinite(loss):
                raise S5Error(f"training loss became {loss} at step {step}; lower the learning rate")
            result.losses.append((step, loss))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.scalars(step, {"train/loss": loss, "train/lr": float(lr),
                                   "train/zero_share": cfg.zero_share_at(step - 1) or -1.0})
            if step % cfg.valid_every == 0 or step == cfg.steps:
                if step == cfg.steps:            # the last stretch takes a while with full-size models
                    _say(bar, log, f"step {step}: final validation on {len(vspecs)} scenes, then checkpoints "
                                   f"and exports to {os.path.join(cfg.out, 'export')}")
                v = _validate(eval_step, state, vsynth, vspecs, batch, not task.is_tagger, data_sh, vcache)
                result.valid.append({"step": step, **v})
                log.scalars(step, {f"valid/{k}": x for k, x in v.items() if x is not None})
                if best is None or v["valid_loss"] < best:
                    best = v["valid_loss"]
                    _save(best_mngr, step, state, {"step": step, "valid": v})
                    if primary:
                        _export(cfg, task, state, "best", f"{cfg.out} step {step}")
            if step % cfg.save_every == 0 or step == cfg.steps:
                _save(last_mngr, step, state, {"step": step, "best_valid_loss": best, "data": batches.state(),
                                               "data_workers": cfg.workers if data_start == 0 else -1})
                log.flush()                  # what a checkpoint holds, TensorBoard holds too (a kill loses neither)
        if step == cfg.steps and primary:
            _say(bar, log, f"exporting {os.path.join(cfg.out, 'export', 'last')}")
            _export(cfg, task, state, "last", f"{cfg.out} step {step}")
        result.steps_done, result.best_valid_loss = step, best
        return result
    finally:
        if bar is not None:
            bar.close()
        batches.close()
        log.close()


def _say(bar, log: "_Log", msg: str) -> None:
    """A progress line (above the progress bar when there is one)."""
    if bar is not None:
        bar.write(msg)
    else:
        log.text(msg)


def _barrier(name: str) -> None:
    barrier(name, (jax.process_index(), jax.process_count()))


def _export(cfg: TrainConfig, task: st.Task, state, name: str, source: str) -> None:
    params = st.merge_params(jax.device_get(state["trainable"]), jax.device_get(state["frozen"]))
    st.export(os.path.join(cfg.out, "export", name), task, params, jax.device_get(state["batch_stats"]), source)


def _progress(cfg: TrainConfig, step0: int, show: bool):
    if not (show and cfg.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.steps, initial=step0, desc=f"train {cfg.model}", unit="step")


class _Log:
    """log.jsonl (rewritten on resume to the restored step, so it never holds steps of a lost future)
    and TensorBoard scalars; only the primary process writes."""

    def __init__(self, out: str, primary: bool, step0: int):
        self.primary, self.path, self.tb = primary, os.path.join(out, "log.jsonl"), None
        if not primary:
            return
        rows = []
        if os.path.isfile(self.path):
            with open(self.path) as f:
                rows = [r for r in f.read().splitlines() if r.strip() and json.loads(r).get("step", 0) <= step0]
        write_text_atomic(self.path, "".join(r + "\n" for r in rows))
        self.tb = _TensorBoard(os.path.join(out, "tb"), purge_step=step0 + 1 if step0 else None)

    def text(self, msg: str) -> None:
        if self.primary:
            print(msg, flush=True)

    def scalars(self, step: int, values: dict) -> None:
        if not self.primary:
            return
        append_text(self.path, json.dumps({"step": step, **values}) + "\n")   # never a partial line
        self.tb.scalars(step, values)

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class _TensorBoard:
    """TensorBoard scalars written and flushed in the calling thread. (tensorboardX's SummaryWriter
    writes from a thread: on a full disk that thread dies with a traceback and the next scalars then
    block training for ever on its full queue; here the failure is one WriteError line.)"""

    def __init__(self, folder: str, purge_step: int | None):
        _import_tensorboardx()
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self.folder = folder
        with writing(folder):
            os.makedirs(folder, exist_ok=True)
            # a random suffix: two invocations within one second must not share (and truncate) a file
            self.writer = EventsWriter(os.path.join(folder, "events"), filename_suffix=f".{os.urandom(4).hex()}")
            if purge_step is not None:       # hides the events of steps >= purge_step (a lost future)
                self.writer.write_event(Event(step=purge_step, file_version="brain.Event:2"))
                self.writer.write_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
            self.writer.flush()

    def scalars(self, step: int, values: dict) -> None:
        import time

        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        with writing(self.folder):
            for k, v in values.items():
                self.writer.write_event(Event(wall_time=time.time(), step=step, summary=scalar(k, v)))
            self.writer.flush()

    def flush(self) -> None:
        with writing(self.folder):
            self.writer.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):   # everything was flushed already
            self.writer.close()


def _import_tensorboardx() -> None:
    """Import tensorboardX without torch. Its package __init__ imports its SummaryWriter, which imports
    torch when installed (only to accept torch tensors, which scalars never are): 5-15 s of every
    training process's start on 2 cores, for nothing. torch is hidden for that import only (a None
    entry in sys.modules makes `import torch` raise ImportError, which tensorboardX handles); a torch
    already imported, or imported later, is untouched."""
    import sys

    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None
    try:
        import tensorboardX  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
