"""`s5jax infer` never loses data and never mixes runs: refusals, claims, run records, umask,
temporaries, non-finite outputs. The tiny models of tests/tiny_system.py (forced-label copies of its
1-ch tagger, conftest.tiny_forced) keep every run cheap: every run is at 1 s clips and batch size 2,
the program test_infer.py's forced runs compile (the run's compile cache serves both files)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from s5jax.cli import main
from s5jax.synth.toy import SceneConfig, write_scene_set


def _listing(folder) -> dict:
    """Every file under `folder` -> (size, mtime_ns): to prove a refused run touched nothing."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            st = os.stat(os.path.join(d, f))
            out[os.path.relpath(os.path.join(d, f), folder)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety") / "data"
    write_scene_set(root, 3, seed=5, cfg=SceneConfig(seconds=1.0, silent_rate=0.0))
    return root


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_models, tiny_forced):
    """{"forced": tagger forced to (silence, Buzzer, Speech), "forced_other": another forced tagger,
    "tagger": the unforced 1-ch tagger they copy, "separator"}: checkpoint folders of one config each."""
    return {"tagger": tiny_models["paths"]["tagger-1ch"], "separator": tiny_models["paths"]["separator"],
            "forced": tiny_forced["forced"], "forced_other": tiny_forced["forced_other"]}


BATCH = ["--batch-size", "2"]
# XLA_FLAGS for a process that compiles from nothing
XLA_FAST_COMPILE = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def infer(data, out, ckpt, tagger="forced", extra=()):
    return main(["infer", str(data), "--tagger", ckpt[tagger], "--separator", ckpt["separator"],
                 "--out", str(out), "--quiet", *BATCH, *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("s5jax: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("where", ["soundscape", "oracle_target", "."])
def test_out_inside_input_or_oracle_is_refused(data, tiny_ckpt, capsys, where):
    before = _listing(data)
    out = data / where if where != "." else data
    assert infer(data, out, tiny_ckpt) == 2
    assert "output folder is" in one_error_line(capsys)
    assert _listing(data) == before and not (data / where / ".s5jax").exists()


def test_out_inside_oracle_subfolder_is_refused(data, tiny_ckpt, capsys):
    assert infer(data, data / "oracle_target" / "sub", tiny_ckpt) == 2
    assert "inside the oracle folder" in one_error_line(capsys)
    assert not (data / "oracle_target" / "sub").exists()


def test_oracle_without_any_match_is_an_error(data, tiny_ckpt, tmp_path, capsys):
    other = tmp_path / "oracle"
    other.mkdir()
    (other / "elsewhere_0001_Speech.wav").write_bytes(b"")
    assert infer(data, tmp_path / "out", tiny_ckpt, extra=["--oracle", str(other)]) == 2
    assert "no oracle target matches any of the 3 soundscapes" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_bad_arguments(data, tiny_ckpt, tmp_path, capsys):
    for bad in ("0", "-2"):
        with pytest.raises(SystemExit) as e:
            infer(data, tmp_path / "out", tiny_ckpt, extra=["--batch-size", bad])
        assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    wav = next((data / "soundscape").iterdir())
    assert infer(wav, tmp_path / "out", tiny_ckpt) == 2
    assert "is a file; give the folder" in one_error_line(capsys)


def test_foreign_results_file_is_not_overwritten(data, tiny_ckpt, tmp_path, monkeypatch, capsys):
    from s5jax.system import engine

    def no_models(*a, **k):
        raise AssertionError("models loaded although the output folder is refused")

    monkeypatch.setattr(engine, "baseline_engine", no_models)     # refused before any model is loaded
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("my own results")
    assert infer(data, out, tiny_ckpt) == 2
    assert "results.json not written by s5jax infer" in one_error_line(capsys)
    assert (out / "results.json").read_text() == "my own results" and os.listdir(out) == ["results.json"]


def test_unclaimed_stem_file_fails_only_its_clip(data, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    name = sorted(os.listdir(data / "soundscape"))[0][:-4]
    mine = out / f"{name}_0_Buzzer.wav"             # what the forced tagger (18, 3, 15) writes first
    mine.write_bytes(b"a user's file")
    assert infer(data, out, tiny_ckpt) == 1
    printed = capsys.readouterr().out
    assert f"{mine}: exists and was not written by s5jax infer" in printed
    assert mine.read_bytes() == b"a user's file"
    done = [r["soundscape"] for r in json.loads((out / "results.json").read_text())["probabilities"]]
    assert len(done) == 2 and name not in done


def test_outputs_follow_the_umask(data, tiny_ckpt, tmp_path):
    old = os.umask(0o002)
    try:
        assert infer(data, tmp_path / "out", tiny_ckpt) == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    wavs = [f for f in os.listdir(out) if f.endswith(".wav")]
    assert len(wavs) == 6
    for f in wavs + ["results.json", "labels.csv", "scores/summary.json", "scores/matrices.npz",
                     ".s5jax/run.json"]:
        assert oct(os.stat(out / f).st_mode & 0o777) == oct(0o664), f
    for d in ("", ".s5jax", ".s5jax/clips", "scores"):
        assert oct(os.stat(out / d).st_mode & 0o777) == oct(0o775), d


def test_non_finite_output_fails_the_clip_and_json_stays_strict(data, tiny_ckpt, tmp_path, capsys):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    huge = sorted((copy / "soundscape").iterdir())[1]
    x = np.full((32000, 4), 1e30, np.float32)
    x[::2] *= -1
    sf.write(str(huge), x, 32000, subtype="FLOAT")
    out = tmp_path / "out"
    assert infer(copy, out, tiny_ckpt) == 1
    assert "the model output is not finite" in capsys.readouterr().out

    def no_constants(c):
        raise AssertionError(f"non-standard JSON constant {c}")
    results = json.loads((out / "results.json").read_text(), parse_constant=no_constants)
    assert huge.stem not in [r["soundscape"] for r in results["probabilities"]]
    assert not [f for f in os.listdir(out) if f.startswith(huge.stem)]
    json.loads((out / "scores" / "summary.json").read_text(), parse_constant=no_constants)


def test_temporaries_of_live_runs_are_kept_dead_ones_removed(data, tiny_ckpt, tmp_path):
    out = tmp_path / "out"
    (out / ".s5jax" / "clips").mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        (out / f".part-{live.pid}-x.wav").write_bytes(b"in flight")
        (out / ".s5jax" / "clips" / f".part-{live.pid}-y").write_bytes(b"in flight")
        (out / f".part-{dead.pid}-z.wav").write_bytes(b"left by a killed run")
        (out / ".part-notours.wav").write_bytes(b"not named like ours")
        assert infer(data, out, tiny_ckpt) == 0
        assert (out / f".part-{live.pid}-x.wav").exists() and (out / ".s5jax/clips" / f".part-{live.pid}-y").exists()
        assert not (out / f".part-{dead.pid}-z.wav").exists()
        assert (out / ".part-notours.wav").exists()
    finally:
        live.kill()
        live.wait()


# A run of `s5jax infer` that SIGKILLs itself as it is about to write stem number KILL_AT (of 2 per clip,
# in clip order): its first clip done, its second claimed with one of its stems written
_KILLED = r"""
import os, signal, sys
import s5jax.infer
from s5jax.cli import main
write, calls = s5jax.infer.write_audio, []
def killing(*a, **k):
    calls.append(a[0])
    if len(calls) == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return write(*a, **k)
s5jax.infer.write_audio = killing
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_then_rerun_with_other_checkpoints_is_refused(data, tiny_ckpt, tmp_path, capsys):
    """A real SIGKILL mid-run (the process kills itself between two stems of its second clip: the
    same place every time, where a kill leaves the most to clean up: a clip claimed, half of its stems
    written), then a run with another tagger: refused, naming the difference, nothing touched; the
    same settings then resume: the finished clip is skipped, the claimed one redone, all complete."""
    out = tmp_path / "out"
    argv = [sys.executable, "-c", _KILLED, "infer", str(data), "--tagger", tiny_ckpt["forced"],
            "--separator", tiny_ckpt["separator"], "--out", str(out), "--quiet", *BATCH]
    proc = subprocess.run(argv, env=dict(os.environ, JAX_PLATFORMS="cpu", KILL_AT="4"),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    clips = out / ".s5jax" / "clips"
    records = {f: json.loads((clips / f).read_text()) for f in sorted(os.listdir(clips)) if f.endswith(".json")}
    assert len(records) == 2 and [r["complete"] for r in records.values()] == [True, False], records  # killed part-way
    second = list(records.values())[1]
    assert [os.path.exists(out / f) for f in second["claimed"]] == [True, False]   # Buzzer written, Speech not
    before = _listing(out)

    assert infer(data, out, tiny_ckpt, tagger="forced_other") == 2
    err = one_error_line(capsys)
    assert "made with other settings (tagger.sha256:" in err and str(out) in err
    assert _listing(out) == before

    assert infer(data, out, tiny_ckpt) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())["probabilities"]
    assert len(results) == 3
    assert all([e["filename"].split("_", 2)[2] for e in r["estimate"]] == ["0_Buzzer.wav", "1_Speech.wav"]
               for r in results)
    assert "resuming: 1 clip(s) already done, 2 to go" in printed
    assert not [f for f in os.listdir(out) if f.startswith(".part-")]
    for f in sorted(os.listdir(clips)):
        assert json.loads((clips / f).read_text())["complete"], f


def test_complete_results_with_other_settings_are_refused(data, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer(data, out, tiny_ckpt) == 0
    capsys.readouterr()
    before = _listing(out)
    assert infer(data, out, tiny_ckpt, tagger="tagger") == 2
    assert "holds results for" in one_error_line(capsys)
    assert _listing(out) == before


@pytest.mark.slow
def test_persistent_compile_cache_is_used_and_can_be_turned_off(data, tiny_ckpt, tmp_path):
    """Two processes: the first fills $S5JAX_CACHE_DIR; --no-compile-cache leaves another empty; the
    outputs agree bit for bit (a cached program computes what a fresh compile does). The second run,
    served from the cache, neither imports Flax (no model is traced) nor orbax (the weights are mapped
    from the kept flat files)."""
    launcher = ("import sys; from s5jax.cli import main; rc = main(sys.argv[1:]); "
                "print('imported', 'flax' in sys.modules, 'orbax.checkpoint' in sys.modules); sys.exit(rc)")

    def run(out, cache, *extra):
        # two of the runs compile from nothing: at LLVM -O0 that takes about half as long (what is
        # tested is the cache, not the code generated; all three runs compile alike)
        env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu", XLA_FLAGS=XLA_FAST_COMPILE)
        r = subprocess.run([sys.executable, "-c", launcher, "infer", str(data), "--tagger", tiny_ckpt["forced"],
                            "--separator", tiny_ckpt["separator"], "--out", str(out), "--quiet", *extra],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-1500:]
        return r.stdout.splitlines()[-1]

    assert run(tmp_path / "a", tmp_path / "cache") == "imported True True"
    cached = os.listdir(tmp_path / "cache")
    assert len(cached) >= 2                                       # tagger+separator program and more
    assert len(os.listdir(tmp_path / "cache" / "s5jax-weights")) == 2
    assert run(tmp_path / "b", tmp_path / "cache") == "imported False False"   # served from the cache
    run(tmp_path / "c", tmp_path / "off", "--no-compile-cache")
    assert not (tmp_path / "off").exists() or os.listdir(tmp_path / "off") == []
    for f in os.listdir(tmp_path / "a"):
        if f.endswith(".wav"):      # samples, not bytes: the wav PEAK chunk holds a timestamp
            a, b, c = (sf.read(str(tmp_path / x / f))[0] for x in "abc")
            assert np.array_equal(a, b) and np.array_equal(a, c), f


def test_precision_is_recorded_and_a_change_is_refused(data, tiny_ckpt, tmp_path, capsys):
    """The checkpoints' own precision is recorded per model; a resume with `--precision default` is
    refused naming it. (The refusal comes before any compile, so this costs no program of another
    precision; test_submit runs a package at `--precision high` end to end.)"""
    out = tmp_path / "out"
    assert infer(data, out, tiny_ckpt) == 0
    capsys.readouterr()
    rec = json.loads(next((out / ".s5jax" / "clips").glob("*.json")).read_text())
    assert rec["made_by"]["precision"] == {"tagger": "highest", "separator": "highest"}
    before = _listing(out)
    assert infer(data, out, tiny_ckpt, extra=["--precision", "default"]) == 2
    assert 'precision.separator: "highest" then, "default" now' in one_error_line(capsys)
    assert _listing(out) == before


def test_resume_with_an_edited_checkpoint_config_is_refused(data, tiny_ckpt, tmp_path, capsys):
    """The separator's hop edited in its config.json between two runs (the weights cannot reveal it):
    another model, so the finished results are not mixed with it."""
    import shutil

    sep = tmp_path / "sep"
    shutil.copytree(tiny_ckpt["separator"], sep)
    ckpt = dict(tiny_ckpt, separator=str(sep))
    out = tmp_path / "out"
    assert infer(data, out, ckpt) == 0
    capsys.readouterr()
    before = _listing(out)
    meta = json.loads((sep / "config.json").read_text())
    meta["config"]["hop"] = 80
    (sep / "config.json").write_text(json.dumps(meta))
    assert infer(data, out, ckpt) == 2
    err = one_error_line(capsys)
    assert "holds results for" in err and "separator.sha256" in err, err
    assert _listing(out) == before


def test_csv_outputs_quote_a_soundscape_name_with_a_comma_and_a_quote(tiny_ckpt, tmp_path):
    """labels.csv and scores/per_clip.csv are read back by the csv module with every column in place."""
    import csv

    root = tmp_path / "set"
    write_scene_set(root, 1, seed=5, cfg=SceneConfig(seconds=1.0, silent_rate=0.0))
    odd = 'room 1, take "2"'
    for sub in ("soundscape", "oracle_target"):
        for f in os.listdir(root / sub):
            os.rename(root / sub / f, root / sub / f.replace("synth_0000", odd))
    out = tmp_path / "out"
    assert infer(root, out, tiny_ckpt) == 0
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["soundscape", "slot", "label", "probability"]
    assert len(rows) > 1 and all(len(r) == 4 and r[0] == odd for r in rows[1:])
    assert [r[1] for r in rows[1:]] == [str(i) for i in range(len(rows) - 1)]
    assert all(0 <= float(r[3]) <= 1 for r in rows[1:])
    with open(out / "scores" / "per_clip.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["soundscape", "ca_sdri"] and len(rows) == 2
    assert rows[1][0] == odd and len(rows[1]) == len(rows[0])
    assert sorted(rows[1][3].split()) == sorted(p.split("_")[-1][:-4] for p in os.listdir(root / "oracle_target"))
