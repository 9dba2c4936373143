"""Shared test fixtures: the golden folder, official-format checkpoints written from synthetic weights."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A copy of ../shared/golden (outputs of the official PyTorch code) lives in the repo so a fresh clone tests alone.
GOLDEN = pathlib.Path(os.environ.get("S5JAX_GOLDEN", ROOT / "tests" / "golden"))


# Files whose tests take longest (minutes each on 2 cores), longest first, run first: with the suite
# split over worker processes file by file (scripts/test.sh: --dist loadfile, and
# --no-loadscope-reorder, without which xdist orders the files by their number of tests and this order
# is lost), a long file started last would run alone at the end. Order from `--durations=0`.
LONG_FIRST = ("test_demo.py", "test_train.py", "test_torch_port.py", "test_search.py",
              # after a few files: it waits for conftest.world_demo (the demo test's fixture) to reuse
              # its compiled programs, so it should not start beside it
              "test_replay_pipeline.py", "test_system_pipeline.py", "test_infer_safety.py", "test_infer.py",
              "test_resunet_parity.py", "test_replay.py", "test_m2d_parity.py", "test_resunet.py",
              "test_submit.py", "test_segment_world.py", "test_processes.py", "test_synth.py",
              "test_segment_models.py", "test_convert_errors.py", "test_tiny_official.py", "test_cache.py",
              "test_write_errors.py", "test_startup.py", "test_weight_cache.py", "test_m2d.py", "test_metric.py")


# XLA's backend optimisations (LLVM -O3 and its expensive passes) are about half of every compile and
# pay off only in programs that run long; most tests compile many small programs and run each once or
# twice. So a test compiles with `jax_disable_most_optimizations`, in this process and in the processes
# it starts (JAX_DISABLE_MOST_OPTIMIZATIONS), unless it has the `xla_default` marker: the tests that
# compare with the official outputs (they use the goldens or torch) check the numbers a user gets, at
# XLA's defaults; the files that run models over many 10 s clips or windows, and the separator training
# test (18 steps), too: there -O0 costs more run time than it saves compile time (bundled separator on a
# 10 s clip: compile 3.07 -> 1.57 s, run 0.43 -> 0.89 s, `python bench/bench_xla_effort.py`, 2026-12-07,
# quiet 2-core machine; in the suite at -O0, test_segment_world 56 -> 107 s, test_segment_models
# 35 -> 62 s, the separator training test 122 -> 139 s).
XLA_DEFAULT_FILES = ("test_torch_port.py", "test_losses.py", "test_demo.py", "test_replay_pipeline.py",
                     "test_segment_world.py", "test_segment_models.py")
OFFICIAL_FIXTURES = ("golden", "golden_weights")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))   # stable: file order kept
    for item in items:
        if item.path.name in XLA_DEFAULT_FILES or set(OFFICIAL_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.xla_default)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures: XLA's optimisations as the test's marker asks (see XLA_DEFAULT_FILES).
    The flag is read at each compile; programs compiled for an earlier test are reused as they are."""
    import jax

    fast = item.get_closest_marker("xla_default") is None
    jax.config.update("jax_disable_most_optimizations", fast)
    if fast:
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    else:
        os.environ.pop("JAX_DISABLE_MOST_OPTIMIZATIONS", None)


@pytest.fixture
def memo_dir(tmp_path, monkeypatch):
    """compile_cache.memo_path pointed at a private folder (JAX's own cache stays as the session has it)."""
    from s5jax.runtime import compile_cache

    real = compile_cache.memo_path
    folder = tmp_path / "cache"
    monkeypatch.setattr(compile_cache, "memo_path", lambda *a, **k: real(*a, folder=str(folder), **k))
    return folder


def load_synth():
    """The golden folder's synth.py (numpy-only generator of weights and signals)."""
    spec = importlib.util.spec_from_file_location("golden_synth", GOLDEN / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def golden_state_dict(folder: str, manifest: str, fixed: str) -> dict[str, np.ndarray]:
    synth = load_synth()
    with open(GOLDEN / folder / manifest) as f:
        man = json.load(f)
    fx = dict(np.load(GOLDEN / folder / fixed))
    return synth.synth_state_dict(man, fx)


def stored_golden_state_dict(root, folder: str, manifest: str, fixed: str) -> dict[str, np.ndarray]:
    """golden_state_dict, generated once into `root` (one .npy file per tensor, written under a
    temporary name and renamed) and returned as read-only memory-mapped arrays: a test that tries to
    change one in place gets an error instead of poisoning the others (copy first, `dict(sd)` to
    replace entries). Regenerating a full-size one took 0.4-3 s CPU per use."""
    name = f"{folder}-{pathlib.Path(manifest).stem}"
    target = pathlib.Path(root) / "golden_weights" / name
    if not (target / "keys.json").is_file():
        sd = golden_state_dict(folder, manifest, fixed)
        part = target.with_name(f"{name}.part-{os.getpid()}")
        part.mkdir(parents=True)
        for i, value in enumerate(sd.values()):
            np.save(part / f"{i}.npy", np.asarray(value))
        (part / "keys.json").write_text(json.dumps(list(sd)))
        os.rename(part, target)
    keys = json.loads((target / "keys.json").read_text())
    return {key: np.load(target / f"{i}.npy", mmap_mode="r") for i, key in enumerate(keys)}


@pytest.fixture(scope="session")
def golden_weights(tmp_path_factory):
    """(folder, manifest, fixed) -> the golden synthetic state_dict (conftest.golden_state_dict), made
    once per test run and shared by the xdist workers (files in the run's folder, made under a file
    lock); its arrays are read-only memory maps (see stored_golden_state_dict)."""
    def get(folder: str, manifest: str, fixed: str) -> dict[str, np.ndarray]:
        with run_lock(tmp_path_factory, f"golden-{folder}-{pathlib.Path(manifest).stem}") as shared:
            return stored_golden_state_dict(shared, folder, manifest, fixed)
    return get


def write_lightning_ckpt(state_dict: dict, path, extra: bool = True) -> str:
    """Write `state_dict` as an official Lightning checkpoint (with the non-weight entries a real one has)."""
    from s5jax.official.torchfile import save_torch_file

    obj = {"state_dict": state_dict}
    if extra:
        obj.update({
            "epoch": 42, "global_step": 1234, "pytorch-lightning_version": "2.4.0",
            "optimizer_states": [{"state": {0: {"step": np.zeros((), np.float32),
                                                "exp_avg": np.zeros(3, np.float32)}},
                                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": True}]}],
            "lr_schedulers": [], "loops": {"fit_loop": {"state_dict": {}}}, "callbacks": {},
            "hyper_parameters": {"lr": 1e-3, "batch_size": 32},
        })
    save_torch_file(obj, str(path))
    return str(path)


def run_folder(tmp_path_factory) -> pathlib.Path:
    """This test run's folder, shared by its xdist workers (their base temp folders sit in it; without
    xdist the base temp folder is the run's)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def run_lock(tmp_path_factory, name: str):
    """Hold the run-wide file lock `name` (one worker builds a shared fixture, the others wait) ->
    the run's folder."""
    import fcntl

    shared = run_folder(tmp_path_factory)
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield shared


@pytest.fixture(scope="session", autouse=True)
def compile_cache_in_tmp(tmp_path_factory):
    """CLI runs in tests use a compilation cache private to this test run, never the user's ~/.cache.
    The xdist workers of one run share it (a folder beside their base temp folders), so a program
    one worker compiled (the tiny and bundled models at the tests' few shapes) is read by the other,
    as two concurrent `s5jax` runs share ~/.cache (JAX writes each entry once; s5jax's own entries
    atomically)."""
    old = os.environ.get("S5JAX_CACHE_DIR")
    folder = run_folder(tmp_path_factory) / "compile_cache"
    folder.mkdir(exist_ok=True)
    os.environ["S5JAX_CACHE_DIR"] = str(folder)
    yield
    if old is None:
        os.environ.pop("S5JAX_CACHE_DIR", None)
    else:
        os.environ["S5JAX_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def session_compile_cache():
    """JAX's persistent cache on in this process for a module's tests, in the run's folder
    (S5JAX_CACHE_DIR, compile_cache_in_tmp), as the CLI turns it on: library calls (which never turn it
    on themselves) then read back what an earlier test, the other worker or a CLI process compiled,
    instead of compiling each new jitted closure again. JAX's settings are restored after."""
    import jax
    from s5jax.runtime import compile_cache

    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    old = {k: getattr(jax.config, k) for k in keys}
    assert compile_cache.enable() == os.environ["S5JAX_CACHE_DIR"]
    yield
    for k, v in old.items():
        jax.config.update(k, v)


def count_exports(monkeypatch) -> list:
    """Make every later `jax.export.export` call fail and record it -> the list of calls. Counted, not
    only raised: DataParallel falls back to tracing when an export fails, so a raise alone goes unseen."""
    from jax import export

    calls = []

    def no_export(*a, **k):
        calls.append(a)
        raise AssertionError("exported again although the program is kept")

    monkeypatch.setattr(export, "export", no_export)
    return calls


def forget_compiled(monkeypatch) -> None:
    """Empty this process's programs compiled from kept exports (`parallel._COMPILED`, restored after
    the test): a later prepare then reads and compiles the export file itself, the path a new process
    takes, instead of taking the program compiled from it a moment ago."""
    from s5jax.runtime import parallel

    monkeypatch.setattr(parallel, "_COMPILED", {})


@pytest.fixture(scope="session")
def golden():
    if not GOLDEN.is_dir():
        pytest.fail(f"golden folder not found at {GOLDEN} (set S5JAX_GOLDEN)")
    return GOLDEN


def forced_tagger(src: str, out: str, classes) -> str:
    """A copy of the tagger checkpoint `src` whose track t always predicts `classes[t]` (18 = silence):
    a large bias on that class in each track's last layer. Deterministic labels for end-to-end tests."""
    from s5jax import checkpoint

    kind, config, variables = checkpoint.load(src)
    for t, c in enumerate(classes):
        bias = variables["params"]["head"][f"tracks_{t}_3"]["bias"]
        bias[...] = 0.0
        bias[c] = 1e4
    checkpoint.save(out, kind, config, variables, source=f"{src} (forced {list(classes)})")
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """The tiny official checkpoints (golden/*/tiny_lightning*.ckpt) converted by `s5jax convert`, and
    forced-label variants of the tagger: {"tagger", "separator", "forced", "forced_other"}."""
    from s5jax.cli import main

    root = tmp_path_factory.mktemp("tiny_ckpt")
    assert main(["convert", str(GOLDEN / "m2d" / "tiny_lightning_1c.ckpt"), str(root / "tagger"),
                 "--set", "num_heads=4"]) == 0
    assert main(["convert", str(GOLDEN / "resunet" / "tiny_lightning.ckpt"), str(root / "separator"),
                 "--set", "hop=40"]) == 0
    return {"tagger": str(root / "tagger"), "separator": str(root / "separator"),
            "forced": forced_tagger(str(root / "tagger"), str(root / "forced"), (18, 3, 15)),
            "forced_other": forced_tagger(str(root / "tagger"), str(root / "forced_other"), (5, 18, 9))}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """The tiny random-weight models of tests/tiny_system.py, written once per session (read only:
    copy a folder before changing it): {"paths": {"tagger-4ch", "tagger-1ch", "separator",
    "separator2": folder}, "models": {"t4", "t1", "A", "B": loaded Tagger/Separator}}. The loaded
    models keep their compiled programs, so files that use them share the compiles."""
    from tiny_system import load_models, write_models

    paths = write_models(str(tmp_path_factory.mktemp("tiny_models")))
    return {"paths": paths, "models": load_models(paths)}


@pytest.fixture(scope="session")
def tiny_forced(tmp_path_factory, tiny_models):
    """Forced-label copies (see forced_tagger) of tiny_models' taggers: of the 1-ch one {"forced":
    (silence, Buzzer, Speech), "forced_other": (5, silence, 9)}, of the 4-ch one {"silent": every
    track silence}. Each has its source's config, so every infer run with tiny_models' separator at
    one clip length and batch size shares one compiled program per tagger config (the infer, safety
    and submit tests run at 1 s, batch 2)."""
    root = tmp_path_factory.mktemp("tiny_forced")
    paths = tiny_models["paths"]
    return {name: forced_tagger(paths[src], str(root / name), classes)
            for name, src, classes in (("forced", "tagger-1ch", (18, 3, 15)), ("forced_other", "tagger-1ch", (5, 18, 9)),
                                       ("silent", "tagger-4ch", (18, 18, 18)))}


def write_tiny_official_4ch(path) -> str:
    """A tiny official-format 4-channel tagger checkpoint (`model.m2d.*` keys, a head over 4 channels'
    features), built from the golden tiny 1-channel one: its encoder, its heads' track layers, the
    head's input layer and norm widened to 4 channels (the first quarter the 1-channel weights)."""
    from s5jax.official.torchfile import load_torch_file

    sd = load_torch_file(str(GOLDEN / "m2d" / "tiny_lightning_1c.ckpt"))["state_dict"]
    rng = np.random.default_rng(0)
    out = {}
    for key, value in sd.items():
        value = np.asarray(value)
        if key.startswith("model.head.m2d_out_norm.running"):
            value = np.tile(value, 4)
        elif key == "model.head.linear.0.weight":
            value = np.concatenate([value] + [(rng.standard_normal(value.shape) * value.std()).astype(value.dtype)
                                              for _ in range(3)], axis=1)
        out[key if key.startswith("model.head.") else key.replace("model.", "model.m2d.", 1)] = value
    return write_lightning_ckpt(out, path)


@pytest.fixture(scope="session")
def tiny_tagger_4ch(tmp_path_factory):
    """A tiny 4-channel tagger, official format converted by `s5jax convert` (see write_tiny_official_4ch)."""
    from s5jax.cli import main

    root = tmp_path_factory.mktemp("tiny_4ch")
    assert main(["convert", write_tiny_official_4ch(root / "tagger-4ch.ckpt"), str(root / "tagger-4ch"),
                 "--set", "num_heads=4"]) == 0
    return str(root / "tagger-4ch")


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def traced_separator(sep):
    """One jitted program (variables, mixture [b, 4, n], query vector [b, 54]) -> (stems, outputs):
    `sep.apply_fn` itself (the library's pure function, so `stems` is what a user call computes) traced
    with every submodule's `__call__` output recorded on the way, `outputs` nested as Flax's
    `capture_intermediates` nests them ({name: ... {"__call__": (output of each call,)}}; the whole
    model's own output at the root). One compile per input shape serves the field comparison and the
    user call (`sep(...)` with this program in place of its own jit of `apply_fn`, see
    test_resunet_parity): a second program of the same model and shape compiled the full-size
    separator twice per golden length."""
    import jax
    from flax import linen as nn

    def forward(variables, mixture, query):
        outputs: dict = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__":
                node = outputs
                for name in context.module.path:
                    node = node.setdefault(name, {})
                node.setdefault("__call__", []).append(out)
            return out

        with nn.intercept_methods(record):
            stems = sep.apply_fn(variables, mixture, query)
        return stems, _tuples(outputs)

    return jax.jit(forward)


def _tuples(tree):
    """The recorded outputs' lists of calls as tuples, as capture_intermediates gives them."""
    if isinstance(tree, dict):
        return {k: tuple(v) if k == "__call__" else _tuples(v) for k, v in tree.items()}
    return tree


def compare_separator_case(sep, g, i: int, rtol: float = 1e-4, program=None) -> dict:
    """Every field of separator golden case i against our forward: stems, mag_ch0, source_mask,
    conditions, FiLM betas, bottleneck, head logits (first frames), ISTFT inputs of slot 0, n_frames.

    Inner activations are each submodule's output recorded while `sep.apply_fn` is traced
    (`traced_separator`; `program`: one made before, so that a caller's other calls of this shape reuse
    its compile), so the model code is not changed for testing. The golden `film` vector holds all 38
    FiLM outputs, but the official forward never applies the decoder blocks' own `beta2` (6 of them;
    our model does not even compute them): the 32 applied ones are compared. Returns {field: relative
    error}."""
    wav = load_synth().synth_waveform(int(g["seeds"][i]), int(g["channels"]), float(g["seconds"][i]))[None]
    qv = np.asarray(g[f"case{i}_label_vector"])[None]

    stems, outputs = (program or traced_separator(sep))(sep.variables, wav, qv)
    (_, aux), = outputs["__call__"]               # the whole model's output: (stems, aux)
    inter = outputs["base"]

    def out_of(*path):
        node = inter
        for p in path:
            node = node[p]
        return node["__call__"]

    frames = aux["mag"].shape[2]
    head = np.asarray(out_of("after_conv")[0])[0]                      # [T', F, ch*3*slots]
    re_im = [np.asarray(z)[0, :, :, 0] for z in out_of("out_conv")]  # the two out_conv calls: [T, F] of slot 0
    bottleneck = np.asarray(out_of("conv_block7a")[0][0])[0]            # [T, F, C]
    ours = {"stems": np.asarray(stems)[0], "mag_ch0": np.asarray(aux["mag"])[0, 0],
            "source_mask": np.asarray(aux["source_mask"])[0], "conditions": np.asarray(aux["condition"])[0],
            "bottleneck": bottleneck.transpose(2, 0, 1),
            "head_logits_first_frames": head[:8].transpose(2, 0, 1),
            "istft_in_real_slot0": re_im[0], "istft_in_imag_slot0": re_im[1]}
    errors = {}
    for name, value in ours.items():
        if f"case{i}_{name}" not in g:          # the tiny golden has no head/ISTFT fields
            continue
        ref = g[f"case{i}_{name}"]
        assert np.shape(value) == ref.shape, (name, np.shape(value), ref.shape)
        if not np.any(ref):
            assert not np.any(value), name
            errors[name] = 0.0
        else:
            errors[name] = _rel(value, ref)
            assert errors[name] <= rtol, (name, errors[name])
    names, sizes = [str(n) for n in g[f"case{i}_film_names"]], list(g[f"case{i}_film_sizes"])
    film_ref = np.split(np.asarray(g[f"case{i}_film"]), np.cumsum(sizes)[:-1])
    skipped = []
    for name, ref in zip(names, film_ref):
        path = name.split("->")
        try:
            value = np.asarray(out_of(*path)[0])[0]
        except KeyError:
            skipped.append(name)
            continue
        err = _rel(value, ref)
        assert value.shape == ref.shape and err <= rtol, (name, err)
        errors["film:" + name] = err
    assert sorted(skipped) == sorted(n for n in names if n.startswith("decoder_block") and n.count("->") == 1
                                     and n.endswith("beta2")), skipped
    assert len(names) - len(skipped) == 32
    assert int(g[f"case{i}_n_frames"]) == frames
    covered = set(ours) | {"film", "film_names", "film_sizes", "n_frames", "n_samples", "label_vector"}
    assert {k[len(f"case{i}_"):] for k in g if k.startswith(f"case{i}_")} <= covered
    return errors


def require_torch():
    """torch for a cross-check test: skipped when missing on a developer machine, but a failure under
    CI (CI=true), where a silently skipped cross-check would pass nothing. In an xdist worker torch
    runs on one thread: the suite's two workers share two cores, and torch's second thread then mostly
    waits for a core (the 4-ch port on the 3.7 s golden, machine loaded: 2 threads 8.0-8.5 s wall /
    3.1-3.3 s CPU, 1 thread 4.2-4.6 s / 1.8 s). Alone (`-p no:xdist`) torch keeps its default."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        try:
            import torch
        except ImportError as e:
            pytest.fail(f"CI=true but torch is not importable ({e}); the torch cross-check tests need it")
    else:
        torch = pytest.importorskip("torch")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    return torch


WORLD_CLIPS = 16        # test clips of the bundled world rendered for the tests


def make_test_split_world(out, cfg=None, render: int | None = None, workers: int = 0) -> str:
    """The held-out test split of the world `cfg` (default: the bundled world's) as `make_world` makes
    it, byte for byte (every file is drawn from its own seed), without the train and valid splits,
    which no test of a world-trained model reads (they are 5/6 of the sources and 3/4 of the rooms:
    most of a make). world.json names `cfg`, so `make_world`/`s5jax demo` take the folder as that
    world and only render missing clips. test_world.py checks the equality with a full make."""
    import dataclasses

    from s5jax.synth import world
    from s5jax.synth.metadata import write_scenes
    from s5jax.synth.scenes import SceneSynth, SynthConfig

    cfg = cfg or world.WorldConfig()
    out = os.fspath(out)
    if not world.is_world(out, cfg):
        part = f"{out}.part-{os.getpid()}"
        test = lambda counts: (0, 0, counts[2])
        only = dataclasses.replace(cfg, events=test(cfg.events), interferers=test(cfg.interferers),
                                   noises=test(cfg.noises), rooms=test(cfg.rooms))
        world.make_sources(part, only, log=lambda m: None, workers=workers)
        world.make_rooms(part, only, log=lambda m: None)
        synth = SceneSynth(part, "test", SynthConfig.tagger())       # as world.make_scene_sets draws them
        write_scenes(os.path.join(part, "metadata", "test.json"),
                     [(f"world_test_{i:04d}", synth.draw(cfg.seed + 2, i)) for i in range(cfg.test_clips)])
        with open(os.path.join(part, "world.json"), "w") as f:
            json.dump({"format": world.FORMAT, "version": world.VERSION, "config": cfg.to_dict()}, f, indent=1)
        os.rename(part, out)
    world.render_test(out, render, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """The bundled world's test split (default config: the one the bundled models were trained on;
    see make_test_split_world) with its first WORLD_CLIPS clips rendered. Made once per test run and
    shared by the xdist workers (a folder beside their base temp folders, built under a file lock)."""
    with run_lock(tmp_path_factory, "world") as shared:
        make_test_split_world(shared / "world", render=WORLD_CLIPS, workers=os.cpu_count() or 1)
    return str(shared / "world")


@pytest.fixture(scope="session")
def world_demo(tmp_path_factory, world_dir):
    """`s5jax demo` on the bundled world's first WORLD_CLIPS test clips (3 folds, small grid), its steps
    run in this process (`s5jax.cli.main`; test_demo.py checks the step runner's own process path).
    Made once per test run under a file lock and shared by the xdist workers, like world_dir: the
    replay == pipeline tests run the same models on the same clips, so the demo's compiled programs
    (in the run's compile cache) serve them -> (demo folder, run_demo's result, its log lines)."""
    from s5jax.cli import main
    from s5jax.demo import run_demo
    from s5jax.files import write_json_atomic

    with run_lock(tmp_path_factory, "demo") as shared:
        out, record = shared / "demo", shared / "demo.result.json"
        if not record.is_file():
            lines: list[str] = []
            result = run_demo(str(out), clips=WORLD_CLIPS, world=world_dir, folds=3, grid="small", quiet=True,
                              log=lines.append, runner=main)
            write_json_atomic(record, {"result": result, "log": lines})
    saved = json.loads(record.read_text())
    return out, saved["result"], saved["log"]
