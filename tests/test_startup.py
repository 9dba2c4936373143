"""What a start skips when JAX's persistent cache is on: the weight-shape tables and the exported
baseline program kept beside it (`compile_cache.memo_path`), the weights read while the program is
compiled (`from_checkpoint(wait=False)`, `DataParallel.prepare`), and that none of it changes a result
or hides a bad checkpoint. The tiny models of tests/tiny_system.py keep it cheap: the engines run 1 s
clips at batch size 2 with tiny_models' separator and the forced copy of its 1-ch tagger, the
programs the infer, safety and submit tests' runs compile (one compile per test run)."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from s5jax.runtime import compile_cache
from s5jax.errors import CheckpointError
from s5jax.runtime.parallel import DataParallel

from conftest import count_exports, forget_compiled

SAMPLES = 32000         # 1 s clips, as the infer tests' runs


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_models, tiny_forced):
    """{"tagger": tiny_models' 1-ch tagger, "forced": its forced-label copy, "separator": separator A}."""
    return {"tagger": tiny_models["paths"]["tagger-1ch"], "forced": tiny_forced["forced"],
            "separator": tiny_models["paths"]["separator"]}


def test_memo_path_follows_the_jax_cache_and_the_code(tmp_path, monkeypatch):
    old = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)          # cache off: nothing is kept
        assert compile_cache.memo_path("shapes", {"a": 1}, ".json") is None
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))  # on: beside JAX's files
        p = compile_cache.memo_path("shapes", {"a": 1}, ".json")
    finally:
        jax.config.update("jax_compilation_cache_dir", old)
    assert p == compile_cache.memo_path("shapes", {"a": 1}, ".json", folder=str(tmp_path))
    assert p.startswith(str(tmp_path / "s5jax-shapes")) and p.endswith(".json")
    assert p != compile_cache.memo_path("shapes", {"a": 2}, ".json", folder=str(tmp_path))
    monkeypatch.setattr(compile_cache, "code_digest", lambda: "other code")
    assert p != compile_cache.memo_path("shapes", {"a": 1}, ".json", folder=str(tmp_path))


def test_shape_table_is_kept_and_still_checks_the_weights(tiny_ckpt, memo_dir, monkeypatch, tmp_path):
    from s5jax import checkpoint
    from s5jax.tagger import Tagger
    from s5jax.wrapper import _shapes

    meta = checkpoint.read_meta(tiny_ckpt["tagger"])
    cfg = Tagger.CONFIG.from_dict(meta["config"])
    traced = _shapes(Tagger.expected_variables(cfg))
    assert Tagger.expected_shapes(cfg) == traced
    (table,) = (memo_dir / "s5jax-shapes").iterdir()
    assert {k: tuple(v) for k, v in json.loads(table.read_text()).items()} == traced

    def no_trace(cfg):
        raise AssertionError("traced although the table is kept")

    monkeypatch.setattr(Tagger, "expected_variables", classmethod(lambda cls, c: no_trace(c)))
    assert Tagger.expected_shapes(cfg) == traced                  # served from the table
    assert Tagger.from_checkpoint(tiny_ckpt["tagger"]).num_params == checkpoint.num_params(
        checkpoint.load(tiny_ckpt["tagger"])[2])
    monkeypatch.undo()
    real = compile_cache.memo_path
    monkeypatch.setattr(compile_cache, "memo_path", lambda *a, **k: real(*a, folder=str(memo_dir), **k))
    table.write_text("{not json")                                   # damaged: traced and rewritten
    assert Tagger.expected_shapes(cfg) == traced
    assert json.loads(table.read_text())

    # a config that does not fit the weights has another key: still refused, one line
    bad = tmp_path / "bad"
    checkpoint.save(bad, *checkpoint.load(tiny_ckpt["tagger"]))
    meta = json.loads((bad / "config.json").read_text())
    assert meta["config"]["depth"] == 1
    meta["config"]["depth"] = 2
    (bad / "config.json").write_text(json.dumps(meta))
    for wait in (True, False):
        with pytest.raises(CheckpointError, match="weights lack params/encoder/blocks_1"):
            Tagger.from_checkpoint(bad, wait=wait).variables
    assert len(list((memo_dir / "s5jax-shapes").iterdir())) == 2


# orbax's event loop, closed after the failed read, still gets a late callback (a warning, not an error)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreadable_weights_fail_at_load_before_any_compile(tiny_ckpt, tmp_path):
    """wait=False returns during the read, but only after the stored weight shapes were checked against
    the config (orbax's metadata, which lives in the OCDBT data files): weights that cannot be read
    fail there, one line, before the caller compiles anything."""
    import shutil

    from s5jax.separator import Separator

    bad = tmp_path / "sep"
    shutil.copytree(tiny_ckpt["separator"], bad)
    for d, _, files in os.walk(bad / "variables"):
        for f in files:
            if len(f) == 32:                                        # the OCDBT data files
                with open(os.path.join(d, f), "r+b") as fh:
                    fh.truncate(10)
    with pytest.raises(CheckpointError, match="cannot read the variables") as e:
        Separator.from_checkpoint(bad, wait=False)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_a_read_that_fails_later_fails_at_first_use(tiny_ckpt, monkeypatch):
    """A read that fails after the shape check (a disk error mid-read) surfaces, one line, at the
    first use of the weights: wait=False has returned by then."""
    from s5jax.runtime import weight_cache
    from s5jax.separator import Separator

    def failing(ckpt_dir, *a, **k):
        raise CheckpointError(f"{ckpt_dir}: cannot read the variables (OSError: I/O error)")

    monkeypatch.setattr(weight_cache, "load", failing)
    sep = Separator.from_checkpoint(tiny_ckpt["separator"], wait=False)
    assert sep.identity["sha256"] == json.loads(open(os.path.join(tiny_ckpt["separator"], "config.json")).read())["sha256"]
    with pytest.raises(CheckpointError, match="cannot read the variables") as e:
        sep.variables
    assert tiny_ckpt["separator"] in str(e.value) and "\n" not in str(e.value)


# orbax's event loop, closed after the failed read, still gets a late callback (a warning, not an error)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_infer_with_unreadable_weights_writes_nothing(tiny_ckpt, tmp_path, capsys):
    import shutil

    from s5jax.cli import main
    from s5jax.synth.toy import SceneConfig, write_scene_set

    data = tmp_path / "data"
    write_scene_set(data, 1, seed=2, cfg=SceneConfig(seconds=1.0))
    bad = tmp_path / "sep"
    shutil.copytree(tiny_ckpt["separator"], bad)
    for d, _, files in os.walk(bad / "variables"):
        for f in files:
            if len(f) == 32:
                os.unlink(os.path.join(d, f))
    assert main(["infer", str(data), "--tagger", tiny_ckpt["tagger"], "--separator", str(bad),
                 "--out", str(tmp_path / "out"), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("s5jax: error: ") and "\n" not in err and str(bad) in err, err
    assert not (tmp_path / "out").exists()


def _engine_outputs(tiny_ckpt, mixture, prepare: bool):
    from s5jax.system.engine import baseline_engine

    eng = baseline_engine(tiny_ckpt["forced"], tiny_ckpt["separator"], 2)
    if prepare:
        eng.prepare(mixture.shape[-1])
    return [np.asarray(a) for a in eng.compute(mixture)]


def test_prepared_and_exported_programs_compute_what_jit_does(tiny_ckpt, memo_dir, monkeypatch):
    """The baseline engine's programs compiled before the weights arrive, then kept as exports and
    served from them (tracing made impossible), gives exactly what a plain jit call gives."""
    mixture = np.random.default_rng(0).standard_normal((2, 4, SAMPLES)).astype(np.float32) * 0.1
    plain = _engine_outputs(tiny_ckpt, mixture, prepare=False)
    fresh = _engine_outputs(tiny_ckpt, mixture, prepare=True)          # exports and keeps the programs
    kept = sorted((memo_dir / "s5jax-programs").iterdir())
    assert len(kept) == 2                                             # the tagger's and the separator's

    forget_compiled(monkeypatch)                                      # served from the file
    exports = count_exports(monkeypatch)
    served = _engine_outputs(tiny_ckpt, mixture, prepare=True)
    assert exports == [], "exported again although the program is kept"
    for a, b, c in zip(plain, fresh, served):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    assert np.abs(plain[2]).max() > 0                                 # real stems, not zeros
    for k in kept:
        k.write_bytes(b"damaged")
    monkeypatch.undo()
    real = compile_cache.memo_path
    monkeypatch.setattr(compile_cache, "memo_path", lambda *a, **k: real(*a, folder=str(memo_dir), **k))
    again = _engine_outputs(tiny_ckpt, mixture, prepare=True)         # re-exported, files replaced
    assert all(np.array_equal(a, b) for a, b in zip(plain, again))
    assert all(k.read_bytes() != b"damaged" for k in kept)


def test_prepared_program_is_not_used_for_other_weights():
    """prepare() compiles from shapes it is told; weights that arrive with another dtype or shape
    run through the ordinary jit path, correctly."""
    fn = lambda w, x: x * w["a"] + w["b"].sum()
    arrived = {"a": np.float32(3.0), "b": np.arange(4, dtype=np.float32)}
    dp = DataParallel(fn, lambda: arrived, jax.devices()[:1])
    dp.prepare({"a": jax.ShapeDtypeStruct((), np.float32), "b": jax.ShapeDtypeStruct((3,), np.float32)}, (2, 5))
    x = np.ones((2, 5), np.float32)
    np.testing.assert_array_equal(dp(x), x * 3 + 6)
    dp2 = DataParallel(fn, lambda: arrived, jax.devices()[:1])
    dp2.prepare({"a": jax.ShapeDtypeStruct((), np.float32), "b": jax.ShapeDtypeStruct((4,), np.float32)}, (1, 5))
    np.testing.assert_array_equal(dp2(x[:1], pad_to=1), x[:1] * 3 + 6)


def test_baseline_system_takes_weights_still_being_read(tiny_ckpt):
    from s5jax.runtime.parallel import _avals
    from s5jax.system.config import preset
    from s5jax.system.engine import sharded_system
    from s5jax.separator import Separator
    from s5jax.tagger import Tagger

    for cls, name in ((Tagger, "forced"), (Separator, "separator")):
        # the shapes and dtypes a program is prepared from are those the read delivers, so the
        # prepared program is the one that runs (not the jit fallback)
        m = cls.from_checkpoint(tiny_ckpt[name], wait=False)
        assert _avals(m.abstract_variables) == _avals(m.variables)

    read = [cls.from_checkpoint(tiny_ckpt[name]) for cls, name in ((Tagger, "forced"), (Separator, "separator"))]
    reading = [cls.from_checkpoint(tiny_ckpt[name], wait=False) for cls, name in ((Tagger, "forced"),
                                                                                  (Separator, "separator"))]
    mixture = np.random.default_rng(1).standard_normal((2, 4, SAMPLES)).astype(np.float32) * 0.1
    now = sharded_system(preset("baseline"), read[0], None, read[1])(mixture)
    later = sharded_system(preset("baseline"), reading[0], None, reading[1])(mixture)
    assert all(np.array_equal(a, b) for a, b in zip(now, later))
    assert np.abs(now.stems).max() > 0


def test_infer_compiles_ahead_only_for_a_clip_that_will_run(tmp_path):
    """The length compiled while the weights are read comes from the first header that says the clip
    will run; hostile files before it are passed over (each is reported when its turn comes)."""
    import soundfile as sf

    from s5jax.infer import _first_length

    files = {"a_text.wav": None, "b_two_channels.wav": (2, 32000, 9000), "c_short.wav": (4, 32000, 100),
             "d_16k.wav": (4, 16000, 9000), "e_good.wav": (4, 32000, 12345), "f_good.wav": (4, 32000, 777)}
    clips = []
    for name, spec in files.items():
        path = tmp_path / name
        if spec is None:
            path.write_text("not audio")
        else:
            sf.write(str(path), np.zeros((spec[2], spec[0]), np.float32), spec[1], subtype="FLOAT")
        clips.append((name[:-4], str(path)))
    assert _first_length(clips, min_samples=513) == 12345
    assert _first_length(clips[:4], min_samples=513) is None
    assert _first_length(clips[:3], min_samples=50) == 100


def test_a_kept_program_for_other_arguments_is_replaced(tmp_path, monkeypatch):
    """A kept export that loads but does not fit the arguments (a stale or foreign file under the
    key) is exported again; the call computes the right thing."""
    path = str(tmp_path / "one.jaxexport")
    monkeypatch.setattr(compile_cache, "memo_path", lambda *a, **k: path)
    fn = lambda w, x: x * w["a"]
    weights = {"a": np.float32(2.0)}
    abstract = {"a": jax.ShapeDtypeStruct((), np.float32)}
    for width in (5, 6):
        dp = DataParallel(fn, weights, jax.devices()[:1])
        dp.prepare(abstract, (1, width), key={"toy": 1})
        assert dp._programs, "prepare kept no program"
        x = np.arange(width, dtype=np.float32)[None]
        np.testing.assert_array_equal(dp(x), 2 * x)
    from jax import export

    assert export.deserialize(bytearray(open(path, "rb").read())).in_avals[1].shape == (1, 6)


def test_a_kept_program_is_compiled_once_per_process(memo_dir, monkeypatch):
    """Two programs prepared from one kept export in one process (separators A and B of one config;
    `cache` then `infer` in one process) share one compiled program: the second neither exports nor
    reads the export again, and computes with its own weights."""
    from jax import export

    fn = lambda w, x: x * w["a"]
    abstract = {"a": jax.ShapeDtypeStruct((), np.float32)}
    x = np.arange(5, dtype=np.float32)[None]
    first = DataParallel(fn, {"a": np.float32(2.0)}, jax.devices()[:1])
    first.prepare(abstract, (1, 5), key={"toy": "once"})
    exports, reads = count_exports(monkeypatch), []
    monkeypatch.setattr(export, "deserialize", lambda *a, **k: reads.append(a) or export.Exported)
    second = DataParallel(fn, {"a": np.float32(3.0)}, jax.devices()[:1])
    second.prepare(abstract, (1, 5), key={"toy": "once"})
    assert exports == [] and reads == [], "compiled again although this process holds the program"
    np.testing.assert_array_equal(second(x), 3 * x)
    np.testing.assert_array_equal(first(x), 2 * x)
    assert second._fn._cache_size() == 0 and first._fn._cache_size() == 0    # the prepared program ran
