"""`s5jax submit`: the DCASE submission package on generated sets and tiny synthetic-weight checkpoints.

The package (layout, both JSONs key by key, 16-bit stems, the zip's root), its values against
`s5jax infer` on the same set, each official check failing on a hand-broken package with one line and
nothing deleted, resume after a kill, and `--check` on existing packages.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from s5jax import metric
from s5jax.audio import read_audio
from s5jax.cli import main
from s5jax.dataset import reference_files
from s5jax.labels import CLASSES, LABELS, SILENCE
from s5jax.synth.toy import SceneConfig, write_scene_set
from s5jax.submit import PackageError, check_package, package_name, write_stems_pcm16

SECONDS = 1.0
NAME = "Doe_Uni_task4_1"
KEYS_DEV = ["CAPI-SDRi", "label_metrics", "nparams", "details", "config"]
KEYS_EVAL = ["nparams", "probabilities", "config"]


def _eval_set(root, count: int, seed: int) -> str:
    """An evaluation set: `soundscape/eval_XXXX.wav` only, no references."""
    write_scene_set(root, count, seed=seed, cfg=SceneConfig(seconds=SECONDS, silent_rate=0.0), prefix="eval")
    shutil.rmtree(os.path.join(root, "oracle_target"))
    return str(root)


@pytest.fixture(scope="module")
def sets(tmp_path_factory, tiny_models, tiny_forced):
    """The dev-test and eval sets, and checkpoints: tiny_models' 4-ch tagger and separator A (1 s clips
    at batch size 2, as the infer tests: one compiled program serves both), a tagger that always says
    silence (conftest.tiny_forced)."""
    root = tmp_path_factory.mktemp("submit")
    dev = root / "dev"
    write_scene_set(dev, 4, seed=3, cfg=SceneConfig(seconds=SECONDS, silent_rate=0.3))
    _relabel_to_predictions(dev, tiny_models["models"]["t4"])
    return {"root": root, "dev": str(dev), "eval": _eval_set(root / "eval", 3, seed=5),
            "tagger": tiny_models["paths"]["tagger-4ch"], "separator": tiny_models["paths"]["separator"],
            "silent": tiny_forced["silent"]}


def _relabel_to_predictions(dev, tagger):
    """Random weights rarely name a true class; so that classes match (and CA-SDRi values are not all
    0.0), the first oracle target of every clip that has one is renamed to the tagger's slot-0 class."""
    oracle = os.path.join(dev, "oracle_target")
    for f in (sorted(os.listdir(os.path.join(dev, "soundscape")))):
        refs = reference_files(oracle, f[:-4])
        if not refs:
            continue
        label = int(np.asarray(tagger.predict(read_audio(os.path.join(dev, "soundscape", f))[None]).labels)[0, 0])
        assert label != SILENCE
        os.rename(refs[0][0], os.path.join(oracle, f"{f[:-4]}_9_{CLASSES[label]}.wav"))


def _submit_args(sets, out, tagger="tagger", number="1", extra=()):
    return ["submit", "--dev-test", sets["dev"], "--eval", sets["eval"], "--tagger", sets[tagger],
            "--separator", sets["separator"], "--author", "Doe", "--affiliation", "Uni", "--number", number,
            "--out", str(out), "--batch-size", "2", "--quiet", *extra]


@pytest.fixture(scope="module")
def package(sets):
    out = sets["root"] / "D"
    assert main(_submit_args(sets, out)) == 0
    return out


def _listing(root) -> dict[str, bytes]:
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(root) for f in files}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s5jax: error: "), err
    return err[0]


def test_package_layout_and_eval_json(sets, package):
    folder = package / NAME
    assert sorted(os.listdir(folder)) == ["dev_set_test_results.json", "eval_out", "eval_results.json"]
    assert (package / f"{NAME}.zip").is_file()
    umask = os.umask(0)
    os.umask(umask)
    for path in (folder / "eval_results.json", package / f"{NAME}.zip", folder / "eval_out"):
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == want, path
    res = json.loads((folder / "eval_results.json").read_text())
    assert list(res) == KEYS_EVAL
    # equal to what `s5jax infer` writes for the evaluation set with the same checkpoints
    infer_out = sets["root"] / "infer_eval"
    assert main(["infer", sets["eval"], "--tagger", sets["tagger"], "--separator", sets["separator"],
                 "--out", str(infer_out), "--batch-size", "2", "--quiet"]) == 0
    inferred = json.loads((infer_out / "results.json").read_text())
    assert res["probabilities"] == inferred["probabilities"] and res["nparams"] == inferred["nparams"]
    assert [c["soundscape"] for c in res["probabilities"]] == ["eval_0000", "eval_0001", "eval_0002"]
    listed = [e["filename"] for c in res["probabilities"] for e in c["estimate"]]
    assert listed and sorted(listed) == sorted(os.listdir(folder / "eval_out"))
    for c in res["probabilities"]:
        for e in c["estimate"]:
            assert list(e) == ["filename", "label", "probability"] and e["label"] in CLASSES
            assert e["filename"].startswith(c["soundscape"] + "_") and e["filename"].endswith(f"_{e['label']}.wav")
    cfg = res["config"]
    for model in ("tagger", "separator"):
        assert cfg[model]["path"] == os.path.abspath(sets[model]) and len(cfg[model]["sha256"]) == 64
    assert cfg["tagger"]["kind"] == "tagger-4ch" and cfg["s5jax_version"] and cfg["system"] == "baseline"
    assert cfg["precision"] == {"tagger": "highest", "separator": "highest"}
    assert (cfg["dev_test"], cfg["eval"]) == (os.path.abspath(sets["dev"]), os.path.abspath(sets["eval"]))
    # 16-bit PCM stems, quantised from the float stems infer wrote (clipped at ±1)
    for f in listed:
        info = sf.info(str(folder / "eval_out" / f))
        assert (info.subtype, info.channels, info.samplerate) == ("PCM_16", 1, 32000)
        q = sf.read(str(folder / "eval_out" / f), dtype="int16")[0].astype(np.float64) / 32768
        x = np.clip(read_audio(infer_out / f)[0], -1, 1)
        assert np.max(np.abs(q - x)) <= 1.0001 / 32768
        assert np.any(q != x)           # really quantised, not the float stem
    # the zip: the folder at its root, byte-identical
    with zipfile.ZipFile(package / f"{NAME}.zip") as z:
        names = z.namelist()
        assert all(n.startswith(f"{NAME}/") for n in names) and f"{NAME}/eval_out/" in names
        assert {n[len(NAME) + 1:]: z.read(n) for n in names if not n.endswith("/")} == _listing(folder)


def test_dev_json_equals_infer_scores(sets, package, capsys):
    res = json.loads((package / NAME / "dev_set_test_results.json").read_text())
    assert list(res) == KEYS_DEV
    out = sets["root"] / "infer_dev"
    assert main(["infer", sets["dev"], "--tagger", sets["tagger"], "--separator", sets["separator"],
                 "--out", str(out), "--batch-size", "2", "--quiet"]) == 0
    summary = json.loads((out / "scores" / "summary.json").read_text())
    per_clip = {r.split(",")[0]: r.split(",")[1] for r in (out / "scores" / "per_clip.csv").read_text().splitlines()[1:]}
    assert res["CAPI-SDRi"]["mean"] == pytest.approx(summary["ca_sdri"], abs=1e-9)
    assert list(res["label_metrics"]) == ["accuracy_mix", "accuracy_src"]
    assert res["label_metrics"]["accuracy_mix"] == pytest.approx(summary["accuracy_mixture"], abs=1e-9)
    assert res["label_metrics"]["accuracy_src"] == pytest.approx(summary["accuracy_source"], abs=1e-9)
    assert res["nparams"] == json.loads((out / "results.json").read_text())["nparams"]
    names = sorted(f[:-4] for f in os.listdir(os.path.join(sets["dev"], "soundscape")))
    assert [d["soundscape"] for d in res["details"]] == names
    labels_csv = (out / "labels.csv").read_text().splitlines()[1:]
    for d in res["details"]:
        name = d["soundscape"]
        assert list(d) == ["soundscape", "ref_labels", "est_labels", "probabilities", "metrics"]
        assert [m["metric"] for m in d["metrics"]] == ["CAPI-SDRi", "label_metrics"]
        value, lab = d["metrics"][0]["value"], d["metrics"][1]["value"]
        # labels and probabilities of the 3 slots as infer's labels.csv
        rows = [r.split(",") for r in labels_csv if r.startswith(name + ",")]
        assert d["est_labels"] == [r[2] for r in rows]
        assert d["probabilities"] == pytest.approx([float(r[3]) for r in rows], abs=1e-6)
        refs = reference_files(os.path.join(sets["dev"], "oracle_target"), name)
        assert d["ref_labels"] == [LABELS[c] for _, c in refs] + ["silence"] * (3 - len(refs))
        # per-clip CA-SDRi: infer's value, and the plain reference metric on the unquantised stems
        mix = read_audio(os.path.join(sets["dev"], "soundscape", f"{name}.wav"))
        est = np.zeros((3, mix.shape[1]), np.float32)
        for i, l in enumerate(d["est_labels"]):
            if l != "silence":
                est[i] = read_audio(out / f"{name}_{i}_{l}.wav")[0]
        ref = np.stack([read_audio(p)[0] for p, _ in refs]) if refs else np.zeros((0, mix.shape[1]), np.float32)
        expect = metric.ca_sdri_reference(est, d["est_labels"], ref, d["ref_labels"][:len(refs)], mix[0])
        if expect is None:
            assert value is None and per_clip[name] == ""
        else:
            assert value == pytest.approx(expect, abs=1e-4) and value == pytest.approx(float(per_clip[name]), abs=2e-6)
        c = metric.label_counts(d["est_labels"], d["ref_labels"])
        assert lab == {"acc": bool(c.correct), "tp": c.tp, "fp": c.fp, "fn": c.fn}
    # `--check` on the zip and on the folder, against the sets
    for target in (package / f"{NAME}.zip", package / NAME):
        capsys.readouterr()
        assert main(["submit", "--check", str(target), "--dev-test", sets["dev"], "--eval", sets["eval"]]) == 0
        assert f"{target}: OK ({NAME}: 3 evaluation soundscapes" in capsys.readouterr().out


def test_silent_tagger_gives_none_clips_and_an_empty_eval_out(sets, tmp_path, capsys):
    """A tagger that always says silence: no stems at all; target-free dev clips get None (official),
    clips with targets 0.0, and the mean is over the non-None clips. The package is valid, and both
    `submit` and `submit --check` say in one line that it holds no stem."""
    assert main(_submit_args(sets, tmp_path, tagger="silent")) == 0
    warning = (f"s5jax: warning: {NAME} holds no stem: the system found no source in any of the 3 evaluation "
               "soundscapes")
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert [line for line in err if "warning" in line] == [err[-1]] and err[-1].startswith(warning), err
    assert captured.out.strip().splitlines()[-1] == (   # the last line names the package, not its staging
        f"checked {tmp_path / NAME} and {tmp_path / NAME}.zip: {NAME}: 3 evaluation soundscapes, 0 stems, "
        "4 dev-test clips, CAPI-SDRi 0.000 dB")
    assert main(["submit", "--check", str(tmp_path / f"{NAME}.zip")]) == 0
    assert capsys.readouterr().err.startswith(warning)
    folder = tmp_path / NAME
    assert os.listdir(folder / "eval_out") == []
    res = json.loads((folder / "eval_results.json").read_text())
    assert all(c["estimate"] == [] for c in res["probabilities"])
    dev = json.loads((folder / "dev_set_test_results.json").read_text())
    values = {d["soundscape"]: d["metrics"][0]["value"] for d in dev["details"]}
    n_refs = {d["soundscape"]: len(reference_files(os.path.join(sets["dev"], "oracle_target"), d["soundscape"]))
              for d in dev["details"]}
    assert sorted(n_refs.values())[0] == 0 and sorted(n_refs.values())[-1] > 0   # both kinds of clip present
    assert values == {k: (None if n == 0 else 0.0) for k, n in n_refs.items()}
    assert dev["CAPI-SDRi"]["mean"] == 0.0
    with zipfile.ZipFile(tmp_path / f"{NAME}.zip") as z:
        assert f"{NAME}/eval_out/" in z.namelist()


def test_pcm16_stems_are_clipped_at_one(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    x = np.array([0.0, 0.5, -0.25, 1.5, -1.5, 1.0, -1.0, 0.999], np.float32)
    sf.write(str(src / "a_0_Cough.wav"), np.tile(x, 100), 32000, subtype="FLOAT")
    assert write_stems_pcm16(str(src), str(dst), [{"estimate": [{"filename": "a_0_Cough.wav"}]}]) == 1
    q = sf.read(str(dst / "a_0_Cough.wav"), dtype="int16")[0][:8]
    assert q.tolist() == [0, 16384, -8192, 32767, -32768, 32767, -32768, 32735]


# ---------------------------------------------------------------------------------------------------
# Hand-broken packages: each check fails with one line naming the file, nothing is deleted
# ---------------------------------------------------------------------------------------------------

def _edit_json(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj, indent=4))


def _first_stem(folder):
    return sorted(os.listdir(folder / "eval_out"))[0]


def _extra_wav(f):
    shutil.copy(f / "eval_out" / _first_stem(f), f / "eval_out" / "other_0_Speech.wav")
    return "eval_out/other_0_Speech.wav", "belongs to no listed soundscape"


def _extra_listed_wav(f):
    stem = _first_stem(f)
    other = stem.split("_")[0] + "_" + stem.split("_")[1] + "_2_Speech.wav"
    shutil.copy(f / "eval_out" / stem, f / "eval_out" / other)
    return other, "not listed in eval_results.json"


def _missing_wav(f):
    stem = _first_stem(f)
    os.unlink(f / "eval_out" / stem)
    return "eval_results.json", f"lists {stem}, which is not in eval_out/"


def _bad_label(f):
    stem = _first_stem(f)
    label = stem.rsplit("_", 1)[1][:-4]
    bad = stem.replace(f"_{label}.wav", "_Kazoo.wav")
    os.rename(f / "eval_out" / stem, f / "eval_out" / bad)

    def fix(obj):
        for c in obj["probabilities"]:
            for e in c["estimate"]:
                if e["filename"] == stem:
                    e["filename"], e["label"] = bad, "Kazoo"
    _edit_json(f / "eval_results.json", fix)
    return bad, "label 'Kazoo' is not one of the 18 classes"


def _prefix_collision(f):
    _edit_json(f / "eval_results.json",
               lambda obj: obj["probabilities"].append({"soundscape": "eval_000", "estimate": []}))
    return "eval_results.json", "soundscape 'eval_000' is a prefix of 'eval_0000'"


def _dev_clip_missing(f):
    _edit_json(f / "dev_set_test_results.json", lambda obj: obj["details"].pop())
    return "dev_set_test_results.json", "synth_0003 of the dev-test set is not listed"


def _stereo_stem(f):
    stem = _first_stem(f)
    data = sf.read(str(f / "eval_out" / stem))[0]
    sf.write(str(f / "eval_out" / stem), np.stack([data, data], 1), 32000)
    return stem, "2 channel(s) at 32000 Hz, expected mono 32000 Hz"


def _truncated_stem(f):
    stem = _first_stem(f)
    raw = (f / "eval_out" / stem).read_bytes()
    (f / "eval_out" / stem).write_bytes(raw[: len(raw) // 2])
    return stem, "truncated wav: data chunk declares"


def _short_stem(f):
    stem = _first_stem(f)
    data = sf.read(str(f / "eval_out" / stem))[0]
    sf.write(str(f / "eval_out" / stem), data[:-10], 32000)
    return stem, f"{len(data) - 10} samples, the mixture has {len(data)}"


def _wrong_mean(f):
    _edit_json(f / "dev_set_test_results.json", lambda obj: obj["CAPI-SDRi"].update(mean=99.0))
    return "dev_set_test_results.json", "mean 99.0 is not the mean of the per-clip values"


def _stray_file(f):
    (f / "notes.txt").write_text("mine")
    return "notes.txt", "unexpected entry in the package"


BREAKS = {"extra_wav": _extra_wav, "extra_wav_of_a_soundscape": _extra_listed_wav, "missing_wav": _missing_wav,
          "bad_label": _bad_label, "prefix_collision": _prefix_collision, "dev_clip_missing": _dev_clip_missing,
          "stereo_stem": _stereo_stem,
          "truncated_stem": _truncated_stem, "short_stem": _short_stem, "wrong_mean": _wrong_mean, "stray_file": _stray_file}


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_broken_package_fails_its_check(sets, package, tmp_path, capsys, how):
    folder = tmp_path / NAME
    shutil.copytree(package / NAME, folder)
    where, why = BREAKS[how](folder)
    before = _listing(folder)
    for target in (folder, tmp_path / f"{NAME}.zip"):
        if target.suffix == ".zip":
            shutil.make_archive(str(tmp_path / NAME), "zip", tmp_path, NAME)
        capsys.readouterr()
        assert main(["submit", "--check", str(target), "--dev-test", sets["dev"], "--eval", sets["eval"]]) == 2
        line = _one_error_line(capsys)
        assert where in line and why in line, line
    assert _listing(folder) == before


def test_zip_must_hold_its_folder_at_the_root(package, tmp_path, capsys):
    bad = tmp_path / f"{NAME}.zip"
    with zipfile.ZipFile(package / f"{NAME}.zip") as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            if not n.endswith("/"):
                dst.writestr(n[len(NAME) + 1:], src.read(n))    # contents without the root folder
    assert main(["submit", "--check", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and f"exactly one folder {NAME}/ at its root" in line


def test_non_empty_eval_out_is_refused_and_kept(sets, tmp_path, capsys):
    mine = tmp_path / NAME / "eval_out" / "mine.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"user data")
    assert main(_submit_args(sets, tmp_path)) == 2
    line = _one_error_line(capsys)
    assert str(mine.parent) in line and "exists and is not empty" in line
    assert mine.read_bytes() == b"user data" and sorted(os.listdir(tmp_path / NAME)) == ["eval_out"]
    assert os.listdir(tmp_path) == [NAME]             # no work folder, no lock left in the user's folder
    # a foreign zip of the same name is refused too, and an empty eval_out is fine (as the official writer)
    mine.unlink()
    (tmp_path / f"{NAME}.zip").write_bytes(b"not ours")
    assert main(_submit_args(sets, tmp_path)) == 2
    assert "was not made by this submission" in _one_error_line(capsys)
    assert (tmp_path / f"{NAME}.zip").read_bytes() == b"not ours"
    assert sorted(os.listdir(tmp_path)) == [NAME, f"{NAME}.zip"]


def test_help_shows_what_making_a_package_requires(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = capsys.readouterr().out
    usage, groups = text.split("\n\n", 1)
    assert usage.split("\n")[0].split() == ["usage:", "s5jax", "submit", "--dev-test", "DEV", "--eval", "EVAL",
                                            "--tagger", "T", "--separator", "S", "--author", "A", "--affiliation",
                                            "F", "--number", "K", "--out", "D", "[options]"]
    required = groups.split("required to make a package:\n", 1)[1].split("\n\n", 1)[0]
    flags = [line.split()[0] for line in required.splitlines() if line.startswith("  --")]
    assert flags == ["--dev-test", "--eval", "--tagger", "--separator", "--author", "--affiliation", "--number",
                     "--out"]


def test_final_lines_name_the_package_and_format_capi_as_check_does(sets, package, capsys):
    """The re-run of a complete package (and a first run, same lines) ends on the package's folder and
    zip, with the summary `--check` prints, CAPI-SDRi in dB to 3 decimals."""
    assert main(_submit_args(sets, package)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    dev = json.loads((package / NAME / "dev_set_test_results.json").read_text())
    n_stems = len(os.listdir(package / NAME / "eval_out"))
    summary = (f"{NAME}: 3 evaluation soundscapes, {n_stems} stems, 4 dev-test clips, "
               f"CAPI-SDRi {dev['CAPI-SDRi']['mean']:.3f} dB")
    assert out[-2:] == [f"{package / NAME}.zip: already complete",
                        f"checked {package / NAME} and {package / NAME}.zip: {summary}"], out
    assert main(["submit", "--check", str(package / f"{NAME}.zip")]) == 0
    assert capsys.readouterr().out.strip() == f"{package / NAME}.zip: OK ({summary})"


@pytest.mark.parametrize("author,affiliation,number,bad", [
    ("Doe_X", "Uni", "1", "--author 'Doe_X'"), ("Doe\n", "Uni", "1", "--author 'Doe\\n'"),
    ("Doe", "U ni", "1", "--affiliation"), ("Doe", "Uni", "0", "--number '0'"), ("Doe", "Uni", "1x", "--number")])
def test_bad_names_are_refused(author, affiliation, number, bad):
    with pytest.raises(PackageError, match=bad.replace("\\", "\\\\")):
        package_name(author, affiliation, number)


def test_refusals_before_any_work(sets, tmp_path, capsys):
    import fcntl

    work = tmp_path / ".s5jax-submit" / NAME
    work.mkdir(parents=True)
    with open(work / "lock", "a") as held:       # another submit writing the same package
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(_submit_args(sets, tmp_path)) == 2
        assert "another s5jax submit is writing this package" in _one_error_line(capsys)
    assert sorted(os.listdir(work)) == ["lock"]
    assert main(_submit_args(sets, os.path.join(sets["eval"], "D"))) == 2
    assert "--out is inside the --eval set" in _one_error_line(capsys)
    prefixed = tmp_path / "prefixed" / "soundscape"                 # eval_1 is a prefix of eval_10
    prefixed.mkdir(parents=True)
    for n in ("eval_1", "eval_10"):
        shutil.copy(os.path.join(sets["eval"], "soundscape", "eval_0000.wav"), prefixed / f"{n}.wav")
    assert main(_submit_args(dict(sets, eval=str(prefixed.parent)), tmp_path / "p")) == 2
    line = _one_error_line(capsys)
    assert str(prefixed) in line and "'eval_1' is a prefix of 'eval_10'" in line
    assert not (tmp_path / "p").exists()
    assert main(["submit", "--check", str(tmp_path / "nothing.zip")]) == 2
    assert "no such package folder or zip" in _one_error_line(capsys)
    assert main(["submit", "--dev-test", sets["dev"], "--out", str(tmp_path)]) == 2
    assert "submit needs --eval --tagger --separator --author --affiliation --number" in _one_error_line(capsys)
    assert main(["infer", sets["eval"], "--tagger", sets["tagger"], "--separator", sets["separator"],
                 "--out", str(tmp_path / "o"), "--zip", NAME]) == 2
    assert "s5jax submit" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------

def test_interrupted_publication_resumes(sets, package, tmp_path, monkeypatch, capsys):
    """Killed after the folder is in place but before the zip: the re-run recognises the folder as its
    own, writes the zip, and the package equals an uninterrupted run's."""
    import s5jax.submit.run as submit

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(submit, "write_zip", killed)
    assert main(_submit_args(sets, tmp_path)) == 130
    assert (tmp_path / NAME).is_dir() and not (tmp_path / f"{NAME}.zip").exists()
    monkeypatch.undo()
    assert main(_submit_args(sets, tmp_path)) == 0
    assert f"wrote {tmp_path / NAME}.zip" in capsys.readouterr().out

    def without_config(listing):
        out = {}
        for k, v in listing.items():
            if k.endswith(".json"):
                obj = json.loads(v)
                obj.pop("config")
                v = obj
            out[k] = v
        return out
    assert without_config(_listing(tmp_path / NAME)) == without_config(_listing(package / NAME))
    # once complete, a re-run only checks
    assert main(_submit_args(sets, tmp_path)) == 0
    assert "already complete" in capsys.readouterr().out


def test_other_settings_do_not_mix_into_a_package(sets, package, capsys):
    """A re-run with another tagger on a finished package: one line naming the difference, nothing
    changed (infer refuses the work folder's records made by the first tagger)."""
    before = _listing(package)
    capsys.readouterr()
    assert main(_submit_args(sets, package, tagger="silent")) == 2
    line = _one_error_line(capsys)
    assert "made with other settings (tagger.sha256" in line, line
    assert _listing(package) == before


# `s5jax submit` that SIGKILLs itself as the dev-test set's infer is about to write its second clip
_KILLED = r"""
import os, signal, sys
import s5jax.infer
from s5jax.cli import main
write, calls = s5jax.infer._write_clip, []
def killing(*a, **k):
    calls.append(a[1])
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return write(*a, **k)
s5jax.infer._write_clip = killing
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_submit_resumes(sets, tmp_path, capsys):
    """A real SIGKILL while the dev-test set is being inferred (the process kills itself as its second
    clip is about to be written: the same place every time); the re-run resumes the finished clip and
    completes the package."""
    work = tmp_path / ".s5jax-submit" / NAME / "dev" / ".s5jax" / "clips"
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _KILLED, *_submit_args(sets, tmp_path)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    records = [json.loads(f.read_text()) for f in sorted(work.iterdir()) if f.suffix == ".json"]
    assert [(rec["soundscape"], rec["complete"]) for rec in records] == [("synth_0000", True)]
    assert not (tmp_path / NAME).exists()
    capsys.readouterr()
    assert main(_submit_args(sets, tmp_path)) == 0            # (the re-run in this process)
    assert "resuming: 1 clip(s) already done, 3 to go" in capsys.readouterr().out
    check_package(str(tmp_path / f"{NAME}.zip"), sets["dev"], sets["eval"])


def test_system_option_is_passed_to_infer(sets, package, tmp_path):
    """`--system baseline --precision high` runs the refined-system engine with the baseline preset:
    the same package (that preset equals the baseline; precision has no effect on CPU), and its config
    records the system and the precision."""
    assert main(_submit_args(sets, tmp_path, number="2", extra=["--system", "baseline", "--precision", "high"])) == 0
    name2 = "Doe_Uni_task4_2"
    res = json.loads((tmp_path / name2 / "eval_results.json").read_text())
    base = json.loads((package / NAME / "eval_results.json").read_text())
    files = lambda r: [[(e["filename"], e["label"]) for e in c["estimate"]] for c in r["probabilities"]]  # noqa: E731
    probs = lambda r: [e["probability"] for c in r["probabilities"] for e in c["estimate"]]  # noqa: E731
    assert files(res) == files(base) and probs(res) == pytest.approx(probs(base), rel=1e-5)
    assert res["config"]["system"] == "baseline" and "system_config" in res["config"]
    assert "system_config" not in base["config"]      # the plain baseline engine has none
    assert set(res["config"]["precision"].values()) == {"high"}
    assert sorted(os.listdir(tmp_path / name2 / "eval_out")) == sorted(os.listdir(package / NAME / "eval_out"))


def test_dev_results_where_the_official_code_divides_by_zero(tmp_path):
    """No class on either side in any clip: per-clip None, mean None (official: ZeroDivisionError),
    accuracy_src None (0/0), accuracy_mix 100."""
    from s5jax.submit.writer import dev_results

    np.savez(tmp_path / "matrices.npz", names=np.array(["a", "b"]), S=np.zeros((2, 3, 3), np.float32),
             M=np.zeros((2, 3), np.float32), est_labels=np.full((2, 3), SILENCE, np.int32),
             ref_labels=np.full((2, 3), SILENCE, np.int32))
    slots = [{"label": "silence", "probability": 0.9}] * 3
    res = dev_results(str(tmp_path), [{"soundscape": n, "slots": slots} for n in "ab"], 7, {"k": 1})
    assert res["CAPI-SDRi"] == {"mean": None}
    assert res["label_metrics"] == {"accuracy_mix": 100.0, "accuracy_src": None}
    assert [d["metrics"] for d in res["details"]] == [[
        {"metric": "CAPI-SDRi", "value": None},
        {"metric": "label_metrics", "value": {"acc": True, "tp": 0, "fp": 0, "fn": 0}}]] * 2
    assert res["details"][0]["est_labels"] == res["details"][0]["ref_labels"] == ["silence"] * 3
    assert (res["nparams"], res["config"]) == (7, {"k": 1})


def test_check_accepts_what_the_official_checker_accepts(package, tmp_path, capsys):
    """A stem named `<soundscape>_<label>.wav` (no slot index) and an audio-URL file pass, as with
    the official checker."""
    folder = tmp_path / NAME
    shutil.copytree(package / NAME, folder)
    stem = _first_stem(folder)
    soundscape, label = "_".join(stem.split("_")[:2]), stem[:-4].rsplit("_", 1)[1]   # eval_0000, Percussion
    plain = f"{soundscape}_{label}.wav"
    os.rename(folder / "eval_out" / stem, folder / "eval_out" / plain)

    def rename(obj):
        for c in obj["probabilities"]:
            for e in c["estimate"]:
                if e["filename"] == stem:
                    e["filename"] = plain
    _edit_json(folder / "eval_results.json", rename)
    (folder / "Doe_Uni_task4.audio_url.txt").write_text("https://example.org/demo\n")
    assert main(["submit", "--check", str(folder)]) == 0
    assert f"{folder}: OK" in capsys.readouterr().out
