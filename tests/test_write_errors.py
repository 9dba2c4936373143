"""A full disk and a read-only output folder, command by command: one line, exit status 2, nothing
half-written under a final name, and a read-only --out refused before any work.

A full disk is simulated in-process: `os.write` to any file under the output folder writes what is
left of a byte budget (a short write, as a filling disk does) and then fails with ENOSPC; the orbax
saves (tensorstore writes from C++, out of reach of `os.write`) fail with the error orbax really raised
on a full 100 kB tmpfs (`ORBAX_ENOSPC`, copied from that run), after printing pages to stderr as it did.
A read-only folder: tests run as root in CI, and root ignores permission bits, so unless the tests run
as another user the folder's `os.open`/`os.mkdir` calls are made to fail with EACCES (what a 0o555
folder gives a user); a folder below a regular file fails for root too and is tested as it is.
"""
from __future__ import annotations

import errno
import json
import os
import zipfile

import numpy as np
import pytest

from s5jax.cli import main
from tiny_system import write_scenes
from tinyset import TRAIN_TAGGER

ORBAX_ENOSPC = ('RESOURCE_EXHAUSTED: Error writing "params.head.tracks_2_3.kernel/0.0" in OCDBT database at '
                'local file "{path}/ocdbt.process_0/": Failed writing: "{path}/ocdbt.process_0/d/8099b76f": '
                "Failed to write 177505 bytes to file 14: No space left on device [os_error_code='28']")
NOISE = b"Traceback (most recent call last):\n  File \"orbax/...\"\nRuntimeError: Event loop is closed\n" * 40


def _checkpoint(folder: str, kind: str, seed: int) -> str:
    """A tiny checkpoint of `kind` (tiny_system's sizes) with random weights, from the shapes alone
    (jax.eval_shape: nothing is compiled; these tests are about files, not numbers)."""
    import jax
    import jax.numpy as jnp

    from s5jax import checkpoint
    from s5jax.models.m2d import M2DConfig, M2DTagger
    from s5jax.models.resunet import ResUNetConfig, ResUNetSeparator
    from tiny_system import SEPARATOR, TAGGER

    rng = np.random.default_rng(seed)
    if kind == "separator":
        cfg = ResUNetConfig(**SEPARATOR)
        shapes = jax.eval_shape(lambda: ResUNetSeparator(cfg).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 4, 4000)), jnp.zeros((1, cfg.query_dim))))
    else:
        cfg = M2DConfig(in_channels=int(kind[7]), **TAGGER)
        shapes = jax.eval_shape(lambda: M2DTagger(cfg).init(jax.random.PRNGKey(0), jnp.zeros((1, cfg.in_channels, 4000))))
    variables = jax.tree.map(lambda s: (np.ones(s.shape) if len(s.shape) <= 1 else
                                        rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1])))
                             .astype(np.float32), shapes)
    checkpoint.save(folder, kind, cfg.to_dict(), jax.tree.map(np.asarray, variables))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return {"set": write_scenes(str(root / "set"), count=3),
            **{k: _checkpoint(str(root / k), k, seed) for seed, k in enumerate(("tagger-4ch", "tagger-1ch",
                                                                                "separator"))}}


def full_disk(monkeypatch, folder, budget: int = 0) -> dict:
    """Writes under `folder` fail with ENOSPC once `budget` bytes went in; -> {"written": bytes}."""
    real, under = os.write, os.path.realpath(folder) + os.sep
    state = {"left": budget, "written": 0}

    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(under):
            return real(fd, data)
        data = memoryview(data).cast("B")
        if state["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, data[:state["left"]])      # what fits; the next write fails
        state["left"] -= n
        state["written"] += n
        return n

    monkeypatch.setattr(os, "write", write)
    return state


def orbax_full(monkeypatch, target: str, name: str) -> None:
    """orbax's `target` (a dotted attribute of orbax.checkpoint) fails as it did on a full disk:
    pages on stderr, then ValueError(ORBAX_ENOSPC)."""
    import orbax.checkpoint as ocp

    cls = getattr(ocp, target)

    def save(self, *a, **k):
        os.write(2, NOISE)
        raise ValueError(ORBAX_ENOSPC.format(path=name))

    monkeypatch.setattr(cls, "save", save)


def _xla_alarm(line: str) -> bool:
    """A line of XLA's 'slow compile' notice (printed when compiling takes minutes on a loaded host)."""
    return ("slow_operation_alarm" in line or line.startswith(("*****", "[Compiling module"))
            or "The operation took" in line)


def one_line(capfd) -> str:
    """stderr as the user sees it (file descriptor 2, orbax's threads included): exactly one line."""
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip() and not _xla_alarm(line)]
    assert len(err) == 1, err[:20]
    return err[0]


def assert_whole(folder) -> list[str]:
    """Every file under `folder` is complete (parses as what its name says) and no temporary is
    left; returns the files' relative paths."""
    import soundfile as sf

    found = []
    for d, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(d, f)
            assert not f.startswith(".part-"), f"temporary left behind: {path}"
            if f.endswith(".json"):
                with open(path) as fh:
                    json.load(fh)
            elif f.endswith(".wav"):
                assert sf.read(path)[0].size > 0
            elif f.endswith(".npz"):
                with np.load(path) as z:
                    [z[k] for k in z.files]
            elif f.endswith(".zip"):
                with zipfile.ZipFile(path) as z:
                    assert z.testzip() is None
            elif f.endswith((".csv", ".jsonl")):
                text = open(path).read()
                assert text == "" or text.endswith("\n"), path
                if f.endswith(".jsonl"):
                    [json.loads(r) for r in text.splitlines()]
            found.append(os.path.relpath(path, folder))
    return found


def expect_full(capfd, out) -> str:
    line = one_line(capfd)
    assert line.startswith("s5jax: error: no space left on device writing "), line
    assert line.split(" writing ", 1)[1].startswith(str(out)), line
    return line


# ------------------------------------------------------------------------------------- full disk
@pytest.mark.parametrize("budget", [0, 20_000])
def test_infer_on_a_full_disk(world, tmp_path, monkeypatch, capfd, budget):
    out = tmp_path / "out"
    disk = full_disk(monkeypatch, tmp_path, budget)
    # (batch size 2: the infer tests' program for these configs and clip length, see test_infer.py)
    code = main(["infer", world["set"], "--tagger", world["tagger-4ch"], "--separator", world["separator"],
                 "--out", str(out), "--batch-size", "2", "--quiet"])
    assert code == 2
    line = expect_full(capfd, out)
    if budget:          # the run got as far as a stem: that stem is named, nothing of it is left
        assert disk["written"] == budget and line.endswith(".wav"), line
    monkeypatch.undo()
    files = assert_whole(tmp_path)
    assert not any(f.endswith(".wav") for f in files), files


def test_infer_system_on_a_full_disk(world, tmp_path, monkeypatch, capfd):
    """(The refined system writes through the same clip writer as plain infer, tested above mid-run.)"""
    out = tmp_path / "out"
    full_disk(monkeypatch, tmp_path, 0)
    monkeypatch.setattr("s5jax.system.engine.system_engine", _work_started)
    code = main(["infer", world["set"], "--tagger", world["tagger-4ch"], "--tagger2", world["tagger-1ch"],
                 "--separator", world["separator"], "--system", "system1", "--out", str(out), "--quiet"])
    assert code == 2
    assert expect_full(capfd, out).endswith(str(out))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("budget", [0, 200])
def test_cache_on_a_full_disk(world, tmp_path, monkeypatch, capfd, budget):
    """budget 0: refused before the models are loaded; 200 bytes: the models are loaded and the
    manifest is cut off (its 5-byte probe fits, the manifest does not)."""
    out = tmp_path / "cache"
    disk = full_disk(monkeypatch, tmp_path, budget)
    code = main(["cache", world["set"], "--tagger", world["tagger-4ch"], "--tagger2", world["tagger-1ch"],
                 "--separator", world["separator"], "--out", str(out), "--quiet"])
    assert code == 2
    line = expect_full(capfd, out)
    assert line.endswith(str(out) if budget == 0 else str(out / "manifest.json")), line
    assert disk["written"] == budget
    monkeypatch.undo()
    assert_whole(tmp_path)
    assert not os.path.exists(out / "manifest.json")


def test_convert_on_a_full_disk(golden, tmp_path, monkeypatch, capfd):
    ckpt = str(golden / "resunet" / "tiny_lightning.ckpt")
    out = tmp_path / "sep"
    # 1. no room even for the probe: refused before the checkpoint is read
    full_disk(monkeypatch, tmp_path, 0)
    assert main(["convert", ckpt, str(out), "--set", "hop=40", "--quiet"]) == 2
    assert expect_full(capfd, out).endswith(str(out))
    monkeypatch.undo()
    # 2. orbax fails writing the weights: its pages of tracebacks are not shown, one line instead
    orbax_full(monkeypatch, "Checkpointer", str(tmp_path / "x"))
    assert main(["convert", ckpt, str(out), "--set", "hop=40", "--quiet"]) == 2
    assert expect_full(capfd, out).endswith(str(out))
    assert os.listdir(tmp_path) == []                      # its temporary folder is gone
    monkeypatch.undo()
    # 3. the weights fit, config.json does not: the checkpoint is named, not its temporary
    full_disk(monkeypatch, tmp_path, 5)                    # the probe's 5 bytes
    assert main(["convert", ckpt, str(out), "--set", "hop=40", "--quiet"]) == 2
    assert expect_full(capfd, out).endswith(str(out))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_sweep_on_a_full_disk_fails_before_the_search(tmp_path, monkeypatch, capfd):
    import s5jax.replay.planted as planted

    out = tmp_path / "sweep"
    full_disk(monkeypatch, tmp_path, 0)
    monkeypatch.setattr(planted, "SyntheticWorld", _work_started)
    assert main(["sweep", "--synthetic", "5", "--out", str(out), "--quiet"]) == 2
    expect_full(capfd, out)
    assert os.listdir(tmp_path) == []


def test_write_helpers_on_a_full_disk(tmp_path, monkeypatch):
    """The helpers every command writes with (sweep's tables, plots, JSON; audio; logs): one WriteError
    naming the final file, the temporary removed, an earlier file under that name left as it was."""
    from s5jax.audio import write_audio
    from s5jax.errors import WriteError
    from s5jax.files import append_text, atomic_writer, write_bytes_atomic, write_json_atomic, write_text_atomic

    target = tmp_path / "x"
    target.write_text("old\n")
    writers = [lambda: write_bytes_atomic(target, b"y" * 5000), lambda: write_text_atomic(target, "z" * 5000),
               lambda: write_json_atomic(target, {"a": "b" * 5000}), lambda: write_audio(target, np.zeros(4000)),
               lambda: append_text(target, "w" * 5000), lambda: _zip_into(atomic_writer, target)]
    for k, write in enumerate(writers):
        for budget in (0, 100):
            disk = full_disk(monkeypatch, tmp_path, budget)
            with pytest.raises(WriteError) as e:
                write()
            assert str(e.value) == f"no space left on device writing {target}", k
            assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
            assert disk["written"] == budget
            monkeypatch.undo()
            assert sorted(os.listdir(tmp_path)) == ["x"] and target.read_text() == "old\n", (k, budget)


def _zip_into(atomic_writer, target):
    with atomic_writer(target) as f, zipfile.ZipFile(f, "w") as z:
        z.writestr("a", b"q" * 5000)


def test_any_full_disk_error_that_escapes_is_one_line(monkeypatch, capfd):
    """The CLI's last resort: an OSError with ENOSPC that no writer named (here raised by the command
    itself) is one line naming its file, exit status 2."""
    import s5jax.cli as cli

    def boom(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.bin")

    monkeypatch.setattr(cli, "_cmd_demo", boom)
    assert main(["demo", "--out", "/nonexistent"]) == 2
    assert one_line(capfd) == "s5jax: error: no space left on device writing /data/out/x.bin"


# ------------------------------------------------------------------------------------- read-only --out
def _work_started(*a, **k):
    raise AssertionError("work started before --out was checked")


def read_only(monkeypatch, folder) -> None:
    """`folder` refuses new entries as a 0o555 folder does for a user: by its mode when the tests run
    as a user, by EACCES from os.open/os.mkdir under it when they run as root (root ignores modes).
    Undo with `writable_again`."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return
    under = os.path.realpath(folder) + os.sep
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path, dir_fd=None):
        return dir_fd is None and os.path.realpath(os.fspath(path)).startswith(under)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and inside(path, dir_fd):
            refuse(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path, mode=0o777, *, dir_fd=None):
        if inside(path, dir_fd):
            refuse(path)
        return real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)


def writable_again(monkeypatch, folder) -> None:
    monkeypatch.undo()
    os.chmod(folder, 0o755)


def _cache_args(world, out):
    return ["cache", world["set"], "--tagger", world["tagger-4ch"], "--tagger2", world["tagger-1ch"],
            "--separator", world["separator"], "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def devset(tmp_path_factory):
    from tinyset import make_dataset

    return str(make_dataset(tmp_path_factory.mktemp("devset")))


def _train_config(tmp_path, devset) -> str:
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data_root": devset, "init": "scratch", "steps": 1}))
    return str(path)


def _sweep_args(world, out):
    return ["sweep", "--synthetic", "5", "--out", str(out), "--quiet"]


def _traps(monkeypatch):
    """What each command does first after its argument checks: loading models, building the
    synthetic world, starting the training task. Reaching any of them fails the test."""
    import s5jax.replay.planted as planted
    import s5jax.system.engine as system_engine
    import s5jax.training.state as state
    import s5jax.training.loop as loop

    monkeypatch.setattr(system_engine, "load_models", _work_started)
    monkeypatch.setattr(planted, "SyntheticWorld", _work_started)
    monkeypatch.setattr(state, "initial_task", _work_started)
    monkeypatch.setattr(loop, "SceneSynth", _work_started)


@pytest.mark.parametrize("command", ["cache", "sweep", "train"])
@pytest.mark.parametrize("how", ["read-only", "under-a-file"])
def test_unwritable_out_is_refused_before_any_work(world, devset, tmp_path, monkeypatch, capfd, command, how):
    parent = tmp_path / "ro"
    if how == "read-only":
        read_only(monkeypatch, parent)
        out = parent / "out"
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    _traps(monkeypatch)
    args = {"cache": lambda: _cache_args(world, out), "sweep": lambda: _sweep_args(world, out),
            "train": lambda: ["train", "tagger", _train_config(tmp_path, devset), "--out", str(out),
                              "--quiet"]}[command]()
    assert main(args) == 2
    line = one_line(capfd)
    if how == "read-only":
        assert line == f"s5jax: error: permission denied writing {out}", line
    else:
        assert line == (f"s5jax: error: {out}: output folder is not writable ({tmp_path / 'file'} is a file, "
                        "not a folder)"), line
    writable_again(monkeypatch, parent if how == "read-only" else tmp_path)
    assert not os.path.exists(out)
    if how == "read-only":
        assert os.listdir(parent) == []


@pytest.mark.parametrize("command", ["infer", "convert", "submit"])
def test_read_only_out_of_the_other_commands(world, golden, tmp_path, monkeypatch, capfd, command):
    out = tmp_path / "ro" / "out"
    read_only(monkeypatch, tmp_path / "ro")
    _traps(monkeypatch)
    import s5jax.system.engine as engine
    import s5jax.official.convert as official

    monkeypatch.setattr(engine, "baseline_engine", _work_started)
    monkeypatch.setattr(official, "read_state_dict", _work_started)
    args = {"infer": ["infer", world["set"], "--tagger", world["tagger-4ch"], "--separator", world["separator"],
                      "--out", str(out), "--quiet"],
            "convert": ["convert", str(golden / "resunet" / "tiny_lightning.ckpt"), str(out), "--quiet"],
            "submit": ["submit", "--dev-test", world["set"], "--eval", world["set"], "--tagger", world["tagger-4ch"],
                       "--separator", world["separator"], "--author", "A", "--affiliation", "B", "--number", "1",
                       "--out", str(out), "--quiet"]}[command]
    assert main(args) == 2
    assert one_line(capfd) == f"s5jax: error: permission denied writing {out}"
    writable_again(monkeypatch, tmp_path / "ro")
    assert os.listdir(tmp_path / "ro") == []


@pytest.mark.parametrize("command", ["train", "submit"])
def test_full_disk_before_the_work_of_train_and_submit(world, devset, tmp_path, monkeypatch, capfd, command):
    out = tmp_path / "out"
    full_disk(monkeypatch, tmp_path, 0)
    _traps(monkeypatch)
    monkeypatch.setattr("s5jax.system.engine.baseline_engine", _work_started)
    args = {"train": ["train", "tagger", _train_config(tmp_path, devset), "--out", str(out), "--quiet"],
            "submit": ["submit", "--dev-test", world["set"], "--eval", world["set"], "--tagger", world["tagger-4ch"],
                       "--separator", world["separator"], "--author", "A", "--affiliation", "B", "--number", "1",
                       "--out", str(out), "--quiet"]}[command]
    assert main(args) == 2
    assert expect_full(capfd, out).endswith(str(out))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["train.json"]         # (the train config, made for both commands)


def test_train_checkpoint_on_a_full_disk(devset, tmp_path, monkeypatch, capfd):
    """The first checkpoint save fails as orbax does on a full disk: one line naming the checkpoints
    folder (not orbax's pages), the log ends on a whole line, TensorBoard's writer does not hang."""
    out = tmp_path / "run"
    cfg = tmp_path / "train.json"
    # test_train's tiny tagger, scope (head), batch and clip length (steps and lr are program inputs): the same init,
    # training and validation programs, read from the run's compile cache when that test ran first
    # (the first save, of the best checkpoint at step 2, fails: the later steps never run)
    cfg.write_text(json.dumps({
        "data_root": devset, "init": "scratch", "scope": "head", "steps": 12, "batch_size": 8, "lr": 1e-3,
        "valid_every": 2, "save_every": 2, "log_every": 1, "valid_scenes": 8, "synth": {"seconds": 0.5},
        "model_config": TRAIN_TAGGER}))
    orbax_full(monkeypatch, "CheckpointManager", str(out / "checkpoints" / "best" / "2.orbax-checkpoint-tmp"))
    assert main(["train", "tagger", str(cfg), "--out", str(out), "--quiet"]) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip() and not _xla_alarm(line)]
    assert lines == [f"s5jax: error: no space left on device writing {out / 'checkpoints' / 'best'}"], lines[:20]
    monkeypatch.undo()
    files = assert_whole(out)
    assert "log.jsonl" in files and "run.json" in files
