"""`s5jax infer` never loses data and never mixes runs: refusals, claims, run records, umask,
temporaries, non-finite outputs. Tiny official checkpoints (converted) keep every run cheap."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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


def infer(data, out, ckpt, tagger="forced", extra=()):
    return main(["infer", str(data), "--tagger", ckpt[tagger], "--separator", ckpt["separator"],
                 "--out", str(out), "--quiet", *extra])


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


def test_foreign_results_file_is_not_overwritten(data, tiny_ckpt, tmp_path, capsys):
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


@pytest.mark.slow
def test_killed_then_rerun_with_other_checkpoints_is_refused(data, tiny_ckpt, tmp_path, capsys):
    """A real SIGKILL mid-run, then a run with another tagger: refused, naming the difference, nothing
    touched; the same settings then resume and finish."""
    import shutil

    many = tmp_path / "data"
    shutil.copytree(data, many)
    for f in sorted((many / "soundscape").iterdir()):
        for j in range(2):
            # more clips, in name order lengths L, L-0.1 s, L-0.2 s, L, ...: the two new lengths each
            # compile once, so the run outlasts its first record long enough to be killed; the re-run
            # compiles only those two again (not one length per clip)
            x, sr = sf.read(str(f))
            sf.write(str(many / "soundscape" / f"{f.stem}x{j}.wav"), x[: len(x) - 3200 * (j + 1)], sr,
                     subtype="FLOAT")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "s5jax.cli", "infer", str(many), "--tagger", tiny_ckpt["forced"],
            "--separator", tiny_ckpt["separator"], "--out", str(out), "--quiet", "--batch-size", "1"]
    proc = subprocess.Popen(argv, env=dict(os.environ, JAX_PLATFORMS="cpu", S5JAX_CACHE_DIR=str(tmp_path / "cc")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clips = out / ".s5jax" / "clips"
    deadline = time.time() + 120
    while time.time() < deadline and not (clips.is_dir() and any(f.endswith(".json") for f in os.listdir(clips))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = [f for f in os.listdir(clips) if f.endswith(".json")]
    assert 1 <= len(records) < 9, records           # killed part-way
    complete = sum(json.loads((clips / f).read_text())["complete"] for f in records)
    before = _listing(out)

    assert infer(many, out, tiny_ckpt, tagger="forced_other") == 2
    err = one_error_line(capsys)
    assert "made with other settings (tagger.sha256:" in err and str(out) in err
    assert _listing(out) == before

    assert infer(many, out, tiny_ckpt) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())["probabilities"]
    assert len(results) == 9
    assert all([e["filename"].split("_", 2)[2] for e in r["estimate"]] == ["0_Buzzer.wav", "1_Speech.wav"]
               for r in results)
    if complete:
        assert f"resuming: {complete} clip(s) already done" in printed


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
        env = dict(os.environ, S5JAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
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
    out = tmp_path / "out"
    assert infer(data, out, tiny_ckpt, extra=["--precision", "default"]) == 0
    capsys.readouterr()
    rec = json.loads(next((out / ".s5jax" / "clips").glob("*.json")).read_text())
    assert rec["made_by"]["precision"] == {"tagger": "default", "separator": "default"}
    assert infer(data, out, tiny_ckpt) == 2
    assert "precision.separator" in one_error_line(capsys)


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
