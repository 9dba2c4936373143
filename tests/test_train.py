"""`s5jax train` end to end on a tiny dataset (written at test time) and tiny model configs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from s5jax import checkpoint
from s5jax.cli import main
from s5jax.training.config import TrainConfig
from s5jax.training.loop import run_training
from tinyset import TRAIN_TAGGER, make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TAGGER = TRAIN_TAGGER
# n_fft 512 / hop 256 (the official 1024 / 160 is no point here): the tiny separator's cost is its
# STFT-sized tensors (bins x frames, whatever the channels), 3.2x fewer: an 18-step run of 1 s scenes
# took 32-46 s under load ~15, where the old STFT took 67-73 s for 0.5 s scenes; it learns as clearly
TINY_SEPARATOR = dict(channels=[4, 8], pools=[[2, 2], [1, 2]], bottleneck_channels=8, condition_dim=16,
                      n_fft=512, hop=256)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("devset"))


# The in-process `run_training` calls (library calls: the library never turns the persistent cache on,
# `s5jax train` does) use the run's compilation cache (conftest.session_compile_cache) as the CLI does:
# a new run builds new jitted closures, so without it every run compiles its programs again (the tiny
# tagger's init alone is tens of seconds of XLA compile under load: each parameter's random initialiser
# is its own threefry program). With it, a program compiled once (init, train and eval steps of one
# config) is read back by every later run of it, here and in the `s5jax train` subprocesses (which
# enable it themselves).
pytestmark = pytest.mark.usefixtures("session_compile_cache")


def tagger_cfg(data, out, **kw) -> dict:
    """Every tagger run here trains the head (the official recipe's scope) of one tiny model at one batch
    and clip length: one train program (its backward pass stops at the head, half the compile of a
    whole-model step) and one validation program serve the file, read back from the compile cache by
    every later run and by the `s5jax train` processes."""
    d = dict(data_root=str(data), out=str(out), init="scratch", model_config=TINY_TAGGER, scope="head",
             steps=6, batch_size=8, lr=1e-3, valid_every=100, save_every=100, log_every=1, valid_scenes=8,
             synth={"seconds": 0.5}, progress=False)
    d.update(kw)
    return d


# `s5jax train` in a process of its own that says at its end which compilation cache it used (set up by
# the command from S5JAX_CACHE_DIR: the session's, tests/conftest.py) and whether it imported torch
LAUNCHER = ("import sys, jax; from s5jax.cli import main; rc = main(sys.argv[1:]); "
            "print('cache', jax.config.jax_compilation_cache_dir, 'torch', 'torch' in sys.modules); sys.exit(rc)")


def run_cli(args, env_extra=None, cwd=None, wait=True):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env_extra or {})}
    cmd = [sys.executable, "-c", LAUNCHER, *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def write_json(path, d):
    with open(path, "w") as f:
        json.dump(d, f)
    return str(path)


def train_losses(out) -> list[tuple[int, float]]:
    with open(os.path.join(out, "log.jsonl")) as f:
        rows = [json.loads(r) for r in f if r.strip()]
    return [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]


def tb_scalars(folder) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from the TensorBoard event files of `folder` (TFRecord framing, Event protos)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict = {}
    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 16 + n > len(data):
                break
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


def flat_vars(folder):
    from flax import traverse_util

    _, _, v = checkpoint.load(folder)
    return {"/".join(k): np.asarray(x) for k, x in traverse_util.flatten_dict(v).items()}


@pytest.fixture(scope="module")
def start(data, tmp_path_factory):
    """The tiny tagger's starting weights (seed 0) as an s5jax checkpoint: runs that start from it compile
    no init program (the `s5jax train` processes of the scale-out test among them)."""
    from s5jax.training import state as st

    folder = tmp_path_factory.mktemp("start") / "tagger"
    task, variables, _ = st.initial_task(TrainConfig.from_dict({**tagger_cfg(data, folder), "model": "tagger"}))
    st.export(folder, task, variables["params"], variables["batch_stats"], "test")
    return str(folder)


def from_start(data, out, start, **kw) -> dict:
    return tagger_cfg(data, out, init="checkpoint", init_path=start, model_config={}, **kw)


# ------------------------------------------------------------------------------------------ learning
def test_tagger_loss_falls_validation_improves_and_export_loads(data, tmp_path):
    from s5jax.tagger import Tagger

    # 20 steps of the head (measured, seeds 0-4: training loss of steps 1-5 minus that of steps 16-20
    # 0.76/0.69/0.56/0.79/0.77; validation loss 2.78 -> 1.92, 2.88 -> 1.67, 3.09 -> 2.05, 2.95 -> 1.85,
    # 2.99 -> 1.86; mixture accuracy 0 -> 6-38 %; this test is seed 0; 30 steps of the whole model fell
    # less: validation 2.78 -> 1.99)
    cfg = TrainConfig.from_dict({**tagger_cfg(data, tmp_path / "run", steps=20, lr=3e-3, valid_every=20,
                                              valid_scenes=16), "model": "tagger"})
    res = run_training(cfg)
    losses = [l for _, l in res.losses]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    v0, v1 = res.valid[0], res.valid[-1]
    assert (v0["step"], v1["step"]) == (0, 20)
    assert v1["valid_loss"] < v0["valid_loss"] - 0.3 and v1["accuracy_mixture"] > v0["accuracy_mixture"], res.valid
    # the export is an ordinary s5jax checkpoint: Tagger.from_checkpoint takes it
    tagger = Tagger.from_checkpoint(tmp_path / "run" / "export" / "best")
    assert tagger.kind == "tagger-4ch"
    from s5jax.synth.scenes import SceneRenderer, pack, read_scenes
    name, spec = read_scenes(tmp_path / "run" / "valid.json")[0]
    assert name == "valid_00000" and spec["config"]["foreground_dir"] == "data/dev_set/sound_event/valid"
    sc = pack(SceneRenderer(data).render(spec))
    logits = np.asarray(tagger(sc["mixture"][None]))
    assert logits.shape == (1, 3, 19) and np.isfinite(logits).all()
    assert os.listdir(tmp_path / "run" / "tb")                      # TensorBoard event file written


@pytest.mark.slow
@pytest.mark.xla_default        # its steps' run time outweighs the compile (tests/conftest.py)
def test_separator_loss_falls_and_ca_sdri_improves(data, tmp_path):
    from s5jax.separator import Separator

    # 18 steps of 1 s scenes (measured, seeds 0/1/2/3: training loss of steps 1-5 minus that of steps
    # 14-18 0.64/1.20/0.61/0.84; validation loss 0.42 -> -0.09, 2.11 -> -0.85, 0.41 -> -0.14,
    # 0.78 -> -0.21; CA-SDRi +0.99/+5.70/+0.83/+1.67 dB; this test is seed 0). The batches are noisy:
    # 0.5 s scenes fell only 0.11-0.29 for seed 0 (either STFT size), 12 steps of the old STFT 0.18
    d = tagger_cfg(data, tmp_path / "sep", steps=18, batch_size=4, lr=1e-2, valid_every=18, valid_scenes=8,
                   model_config=TINY_SEPARATOR, synth={"seconds": 1.0}, scope="all")
    res = run_training(TrainConfig.from_dict({**d, "model": "separator"}))
    losses = [l for _, l in res.losses]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.4, losses
    v0, v1 = res.valid[0], res.valid[-1]
    assert v1["valid_loss"] < v0["valid_loss"] and v1["ca_sdri"] > v0["ca_sdri"] + 0.1, res.valid
    sep = Separator.from_checkpoint(tmp_path / "sep" / "export" / "last")
    assert sep.config.channels == (4, 8) and (sep.config.n_fft, sep.config.hop) == (512, 256)


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.slow
def test_kill_and_resume_continues_bit_identically(data, start, tmp_path, capsys):
    steps = 9
    # the uninterrupted reference: neither checkpoints nor validation change the trajectory, so it saves
    # and validates only at its end (its train program is the killed run's: steps and lr are inputs).
    # Both start from a checkpoint: the killed run's process then neither traces nor lowers an init program
    ref = run_training(TrainConfig.from_dict({**from_start(data, tmp_path / "ref", start, steps=steps),
                                              "model": "tagger"}))
    # a checkpoint every 3 steps: the kill loses the steps after the last one, which the resume redoes
    cfg = write_json(tmp_path / "cfg.json", from_start(data, tmp_path / "killed", start, steps=steps, save_every=3,
                                                       valid_every=4))
    proc = run_cli(["train", "tagger", cfg, "--quiet"], wait=False)      # reads the ref run's compiles
    last = tmp_path / "killed" / "checkpoints" / "last"
    t0 = time.time()
    while time.time() - t0 < 300:
        done = [int(n) for n in os.listdir(last) if n.isdigit()] if last.is_dir() else []
        if done and max(done) >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(n) for n in os.listdir(last) if n.isdigit())
    assert 3 <= killed_at < steps, killed_at
    # TensorBoard holds every step up to the last checkpoint (flushed at each one) despite the kill
    tb = tb_scalars(tmp_path / "killed" / "tb")
    assert set(range(1, killed_at)) <= set(tb.get("train/loss", {})), tb.keys()
    assert 0 in tb.get("valid/valid_loss", {})
    assert not (tmp_path / "killed" / "export" / "last").exists()
    capsys.readouterr()
    assert main(["train", "tagger", cfg, "--quiet"]) == 0          # the resume: in-process, as the CLI runs it
    assert f"resumed from step {killed_at}" in capsys.readouterr().out
    assert train_losses(tmp_path / "killed") == [(s, float(l)) for s, l in ref.losses]
    a, b = flat_vars(tmp_path / "ref" / "export" / "last"), flat_vars(tmp_path / "killed" / "export" / "last")
    chex.assert_trees_all_equal(a, b)            # same keys, every array bit for bit
    # a resume with other settings is refused, naming the difference (in-process: the refusal comes
    # before any compiling, as the CLI's own one-line error)
    cfg2 = write_json(tmp_path / "cfg2.json", from_start(data, tmp_path / "killed", start, steps=steps, save_every=3,
                                                        valid_every=4, lr=5e-4))
    capsys.readouterr()
    assert main(["train", "tagger", cfg2, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "other settings (lr)" in err and len(err.strip().splitlines()) == 1


@pytest.mark.xla_default          # the comparison is with XLA's default options
def test_init_program_options_keep_the_default_parameters():
    """init_variables compiles the init program with INIT_COMPILER_OPTIONS (for compile time): the
    parameters must be those of XLA's default options bit for bit (a fresh model, and the bundled models'
    recipe, start from them). The models' random initialisers on a small module: a truncated-normal
    kernel (lecun_normal: every Dense and Conv) and a normal(0.02) embedding (level 0 changes them)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from s5jax.training import state as st

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x):
            pos = self.param("pos", nn.initializers.normal(0.02), (1, 5, 8))
            return nn.Dense(6)(x + pos)

    x, key = jnp.zeros((1, 5, 8)), jax.random.PRNGKey(3)
    lowered = jax.jit(Small().init).lower(key, x)
    default, ours = lowered.compile()(key, x), lowered.compile(st.INIT_COMPILER_OPTIONS)(key, x)
    assert len(jax.tree.leaves(default)) == 3
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, default), jax.tree.map(np.asarray, ours))


def test_frozen_parameters_unchanged(data, start, tmp_path):
    # warmup_cosine over 3 steps, 1 of warmup from 0: the learning rates 0, lr, lr/2 (optax's definition;
    # the learning rate is the train step's input, the schedule evaluated at the 0-based step)
    d = from_start(data, tmp_path / "head", start, steps=3, schedule="warmup_cosine", warmup_steps=1, lr=1e-3)
    run_training(TrainConfig.from_dict({**d, "model": "tagger"}))
    log = [json.loads(r) for r in open(tmp_path / "head" / "log.jsonl") if "train/lr" in r]
    assert [r["step"] for r in log] == [1, 2, 3]
    np.testing.assert_allclose([r["train/lr"] for r in log], [0.0, 1e-3, 5e-4], rtol=1e-6, atol=0)
    before, after = flat_vars(start), flat_vars(tmp_path / "head" / "export" / "last")
    enc = [k for k in before if k.startswith("params/encoder/")]
    head = [k for k in before if k.startswith("params/head/")]
    assert enc and head
    chex.assert_trees_all_equal({k: before[k] for k in enc}, {k: after[k] for k in enc})
    assert sum(not np.array_equal(before[k], after[k]) for k in head) == len(head)
    # BatchNorm in train mode: the running statistics moved (momentum 0.1)
    assert not np.array_equal(before["batch_stats/head/m2d_out_norm/mean"], after["batch_stats/head/m2d_out_norm/mean"])


# ------------------------------------------------------------------------------------------ scale-out
@pytest.mark.slow
def test_eight_devices_in_two_processes_give_the_one_device_losses(data, start, tmp_path, capsys):
    """Two processes of four devices each: the batch split over the local devices of a process and over
    the processes at once (one pair of processes and one compile of each program for both; 8 devices in
    one process and 2 processes of one device took three processes). They start from a checkpoint: a
    fresh init would compile the init program in process 1 (its device is not process 0's, and the
    device assignment is part of the compile-cache key, so it never reads the cached one)."""
    base = from_start(data, tmp_path / "one", start, steps=3, valid_every=3, batchnorm="train")
    cfg = write_json(tmp_path / "c.json", base)
    # the pair in processes of their own; the 1-device run meanwhile in this one (as the CLI runs it):
    # they overlap instead of queueing. Four devices by jax_num_cpu_devices, not XLA_FLAGS: the XLA flags
    # are part of every compile-cache key, so with the session's flags the pair reads the init program
    # the earlier runs here compiled. (jax_share_binary_between_hosts, one compile for the pair, breaks
    # the CPU collectives: gloo's context times out in the deserialised program, jax 0.10.2.)
    four = {"JAX_NUM_CPU_DEVICES": "4"}
    port = str(20000 + os.getpid() % 20000)
    procs = [run_cli(["train", "tagger", cfg, "--quiet", "--out", str(tmp_path / "eight"), "--coordinator",
                      f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)], four, wait=False)
             for i in range(2)]
    try:
        assert main(["train", "tagger", write_json(tmp_path / "c1.json", base), "--quiet"]) == 0
        assert "over 1 device(s) in 1 process(es)" in capsys.readouterr().out
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), outs
    assert "over 8 device(s) in 2 process(es)" in outs[0][0], outs[0][0]
    # the command set up the session's compilation cache itself, and never imported torch
    # (tensorboardX imports it when installed: seconds of every training process's start)
    assert all(f"cache {os.environ['S5JAX_CACHE_DIR']} torch False" in o for o, _ in outs), outs
    ref = train_losses(tmp_path / "one")
    assert len(ref) == 3
    got = train_losses(tmp_path / "eight")
    assert [s for s, _ in got] == [s for s, _ in ref]
    np.testing.assert_allclose([l for _, l in got], [l for _, l in ref], rtol=1e-5, atol=1e-5)
    # validation before training (same weights) agrees too
    v = lambda o: [json.loads(r) for r in open(os.path.join(o, "log.jsonl")) if "valid/valid_loss" in r][0]
    np.testing.assert_allclose(v(tmp_path / "eight")["valid/valid_loss"], v(tmp_path / "one")["valid/valid_loss"],
                               rtol=1e-5)


# ------------------------------------------------------------------------------------------ bad input
def cli_error(argv, capsys) -> str:
    """`s5jax` run in-process (as the console command runs it): exit status 2 -> its stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_config_with_unknown_keys_is_refused(data, tmp_path, capsys):
    cfg = write_json(tmp_path / "c.json", tagger_cfg(data, tmp_path / "o", learning_rate=1e-3))
    err = cli_error(["train", "tagger", cfg], capsys)
    assert "unknown keys ['learning_rate']" in err and cfg in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    cfg = write_json(tmp_path / "s.json", tagger_cfg(data, tmp_path / "o", synth={"secs": 1}))
    err = cli_error(["train", "tagger", cfg], capsys)
    assert "secs" in err and len(err.strip().splitlines()) == 1


def test_train_cli_enables_the_compile_cache_unless_told_not_to(data, tmp_path, capsys):
    import jax

    old = jax.config.jax_compilation_cache_dir
    cfg = write_json(tmp_path / "c.json", tagger_cfg(data, tmp_path / "o", learning_rate=1e-3))
    try:
        for flag, expected in (([], os.environ["S5JAX_CACHE_DIR"]), (["--no-compile-cache"], None)):
            jax.config.update("jax_compilation_cache_dir", None)
            # refused at the config (an unknown key), after the command set up the cache
            assert "unknown keys ['learning_rate']" in cli_error(["train", "tagger", cfg, *flag], capsys)
            assert jax.config.jax_compilation_cache_dir == expected
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_bad_dataset_and_bad_out_folder_are_one_line_errors(data, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    (broken / "sound_event" / "train" / "Doorbell" / "g1" / "Doorbell_g1.wav").write_bytes(b"RIFF....WAVEjunk")
    cfg = write_json(tmp_path / "c.json", tagger_cfg(broken, tmp_path / "o"))
    err = cli_error(["train", "tagger", cfg], capsys)
    assert err.startswith("s5jax: error: ") and len(err.strip().splitlines()) == 1
    assert str(broken / "sound_event" / "train" / "Doorbell" / "g1" / "Doorbell_g1.wav") in err
    assert not (tmp_path / "o").exists()                            # nothing written before the data is checked
    # a user's non-empty folder is never used as a run folder (nothing in it touched)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    err = cli_error(["train", "tagger", write_json(tmp_path / "d.json", tagger_cfg(data, user))], capsys)
    assert "not an s5jax training run" in err
    assert os.listdir(user) == ["notes.txt"]


def test_a_failed_start_writes_nothing_and_validation_follows_the_data(data, tmp_path):
    import shutil

    from s5jax.errors import S5Error
    from s5jax.synth.scenes import read_scenes

    dev, out = tmp_path / "dev", tmp_path / "run"
    shutil.copytree(data, dev)
    (tmp_path / "bad.json").write_text('[{"metadata_path": "gone.json"}]')
    # left early with stop_after (the train program is that of every full tagger run here: the learning
    # rate is an input of it, so steps and lr do not change it)
    cfg = {**tagger_cfg(dev, out, steps=12, valid_every=2), "model": "tagger"}
    for bad in ({"valid_metadata": str(tmp_path / "bad.json")}, {"data_root": str(tmp_path / "nowhere")}):
        with pytest.raises(S5Error):
            run_training(TrainConfig.from_dict({**cfg, **bad}), stop_after=1)
        assert not out.exists()                      # nothing written: the corrected config is not refused
    run_training(TrainConfig.from_dict(cfg), stop_after=1)
    drawn = read_scenes(out / "valid.json")
    assert len(drawn) == 8 and (out / "valid" / "valid_00000.json").is_file()
    gone = sorted({e["label"] for _, s in drawn for e in s["fg_events"]})[0]
    shutil.rmtree(dev / "sound_event" / "valid" / gone)         # the data changes: validation is redrawn
    res = run_training(TrainConfig.from_dict(cfg), stop_after=2)
    assert res.steps_done == 2 and res.valid[-1]["step"] == 2
    redrawn = read_scenes(out / "valid.json")
    assert len(redrawn) == 8 and gone not in {e["label"] for _, s in redrawn for e in s["fg_events"]}


def test_the_official_valid_json_is_the_default_validation_set(data, tmp_path):
    import shutil

    from s5jax.errors import DataError
    from s5jax.training.loop import valid_metadata_path

    dev = tmp_path / "dev"
    shutil.copytree(data, dev)
    cfg = TrainConfig.from_dict({**tagger_cfg(dev, tmp_path / "o"), "model": "tagger"})
    assert valid_metadata_path(cfg) is None
    (dev / "metadata").mkdir()
    (dev / "metadata" / "valid.json").write_text('[{"metadata_path": "valid/scene_0.json"}]')
    assert valid_metadata_path(cfg) == str(dev / "metadata" / "valid.json")
    with pytest.raises(DataError, match="scene_0.json: no such file"):
        run_training(cfg)
    assert not (tmp_path / "o").exists()


def test_start_from_m2d_encoder_with_fresh_head(data, tmp_path):
    from flax import traverse_util
    from s5jax.training import state as st

    init = TrainConfig.from_dict({**tagger_cfg(data, tmp_path / "x", seed=5), "model": "tagger"})
    task, variables, _ = st.initial_task(init)
    # the encoder's own config names another head size than the one asked for (the asked one is the
    # file's tiny tagger: its init and train programs are those of the other runs)
    checkpoint.save(tmp_path / "enc", "m2d-encoder", {**task.cfg.to_dict(), "head_dim": 24},
                    {"params": {"encoder": variables["params"]["encoder"]}})
    d = tagger_cfg(data, tmp_path / "ft", steps=1, init="encoder", init_path=str(tmp_path / "enc"),
                   model_config={"head_dim": TINY_TAGGER["head_dim"]})
    res = run_training(TrainConfig.from_dict({**d, "model": "tagger"}))
    assert res.steps_done == 1
    after = flat_vars(tmp_path / "ft" / "export" / "last")
    enc = {"/".join(("params", "encoder") + k): np.asarray(v)
           for k, v in traverse_util.flatten_dict(variables["params"]["encoder"]).items()}
    chex.assert_trees_all_equal({k: after[k] for k in enc}, enc)
    assert after["params/head/linear_0/kernel"].shape[1] == TINY_TAGGER["head_dim"] != 24   # the asked size
    # a tagger checkpoint is not an encoder: one line naming the folder
    with pytest.raises(Exception) as e:
        st.initial_task(TrainConfig.from_dict({**d, "init_path": str(tmp_path / "ft" / "export" / "last"),
                                               "model": "tagger"}))
    assert "expected m2d-encoder" in str(e.value) and str(tmp_path / "ft") in str(e.value)


def test_shipped_example_configs_load(tmp_path):
    from s5jax.errors import ConfigError
    from s5jax.training.config import load_config

    t = load_config(os.path.join(ROOT, "train", "configs", "tagger4_zero_target_head.json"), "tagger")
    assert (t.effective_scope, t.effective_lr, t.effective_batch) == ("head", 1e-3, 32)
    assert t.zero_share_at(0) == 0.25 and t.zero_share_at(10 ** 6) == 0.4       # the report's curriculum
    s = load_config(os.path.join(ROOT, "train", "configs", "separator_light_finetune.json"), "separator")
    assert (s.effective_scope, s.effective_batch, s.synth_config().nevent_range) == ("all", 4, (1, 3))
    with pytest.raises(ConfigError, match="a tagger config, but `s5jax train separator` was asked"):
        load_config(write_json(tmp_path / "t.json", {"model": "tagger", "data_root": "x"}), "separator")
