"""Bad checkpoints give one clear line (CLI: `s5jax: error: ...`, exit 2); torch-file interop both ways."""
from __future__ import annotations

import collections
import os
import pickle
import zipfile

import numpy as np
import pytest

from conftest import require_torch, write_lightning_ckpt
from s5jax.cli import main
from s5jax.official.convert import convert_checkpoint, read_state_dict
from s5jax.errors import CheckpointError
from s5jax.official.torchfile import load_torch_file, save_torch_file


@pytest.fixture(scope="module")
def sd_1c(golden):
    """The official tiny 1-channel tagger's state_dict (golden/m2d/tiny_lightning_1c.ckpt: every key of
    the full-size one, 2 blocks of width 64): each bad checkpoint below is written and read in
    milliseconds, not as a 400 MB full-size file. Read-only arrays: a test replaces entries in a copy."""
    sd = read_state_dict(str(golden / "m2d" / "tiny_lightning_1c.ckpt"))
    for value in sd.values():
        value.flags.writeable = False
    return sd


def cli_error(argv, capsys) -> str:
    """Run the CLI, expect exit 2 and a single `s5jax: error:` line; return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("s5jax: error: ") and "\n" not in err, err
    return err


def test_separator_checkpoint_as_tagger(tmp_path, capsys):
    sd = {"model.base.conv.weight": np.zeros((4, 2, 3, 3), np.float32),
          "model.film.gamma.weight": np.zeros((8, 19), np.float32)}
    ckpt = write_lightning_ckpt(sd, tmp_path / "sep.ckpt")
    err = cli_error(["convert", ckpt, str(tmp_path / "out"), "--kind", "tagger-1ch"], capsys)
    assert ckpt in err and "separator" in err and "tagger-1ch" in err
    assert not (tmp_path / "out").exists()


def test_converted_separator_folder_is_not_a_tagger(tmp_path):
    from s5jax import checkpoint
    from s5jax.tagger import Tagger

    checkpoint.save(tmp_path / "sep", "separator", {"x": 1}, {"params": {"w": np.zeros(2, np.float32)}})
    with pytest.raises(CheckpointError, match="holds a separator checkpoint"):
        Tagger.from_checkpoint(tmp_path / "sep")


def test_truncated_checkpoint(tmp_path, capsys):
    sd = {"model.backbone.pos_embed": np.ones((1, 11, 8), np.float32)}
    ckpt = write_lightning_ckpt(sd, tmp_path / "full.ckpt")
    data = open(ckpt, "rb").read()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_torch_file(cut)
    assert str(cut) in str(e.value) and "\n" not in str(e.value)
    err = cli_error(["convert", str(cut), str(tmp_path / "out")], capsys)
    assert str(cut) in err


def test_key_removed(tmp_path, sd_1c, capsys):
    sd = dict(sd_1c)
    del sd["model.head.tracks.1.3.bias"]
    ckpt = write_lightning_ckpt(sd, tmp_path / "removed.ckpt", extra=False)
    err = cli_error(["convert", ckpt, str(tmp_path / "out")], capsys)
    assert "head.tracks.1.3.bias" in err and ckpt in err


def test_shape_changed(tmp_path, sd_1c, capsys):
    sd = dict(sd_1c)
    assert sd["model.backbone.blocks.1.attn.qkv.weight"].shape == (192, 64)
    sd["model.backbone.blocks.1.attn.qkv.weight"] = np.zeros((192, 60), np.float32)
    ckpt = write_lightning_ckpt(sd, tmp_path / "shape.ckpt", extra=False)
    err = cli_error(["convert", ckpt, str(tmp_path / "out")], capsys)
    assert "backbone.blocks.1.attn.qkv.weight" in err and "(192, 60)" in err


@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_weight_of_non_float_dtype(tmp_path, sd_1c, capsys, dtype):
    """An integer or boolean tensor where a weight belongs (a damaged or foreign file) is refused by
    name; cast to float32 it would convert silently into a model that computes nonsense."""
    sd = dict(sd_1c)
    sd["model.head.tracks.1.3.bias"] = np.ones(sd["model.head.tracks.1.3.bias"].shape, dtype)
    ckpt = write_lightning_ckpt(sd, tmp_path / "int.ckpt", extra=False)
    err = cli_error(["convert", ckpt, str(tmp_path / "out")], capsys)
    assert "head.tracks.1.3.bias" in err and f"dtype {np.dtype(dtype)}" in err and "floating point" in err
    assert not (tmp_path / "out").exists()


def test_unexpected_key(tmp_path, sd_1c, capsys):
    sd = dict(sd_1c)
    sd["model.head.extra.weight"] = np.zeros((3, 3), np.float32)
    ckpt = write_lightning_ckpt(sd, tmp_path / "extra.ckpt", extra=False)
    err = cli_error(["convert", ckpt, str(tmp_path / "out")], capsys)
    assert "head.extra.weight" in err


def test_wrong_front_end_buffer(tmp_path, sd_1c, capsys):
    sd = dict(sd_1c)
    sd["model.to_spec.mel_basis"] = sd["model.to_spec.mel_basis"][::-1].copy()   # e.g. another fmin/fmax
    ckpt = write_lightning_ckpt(sd, tmp_path / "mel.ckpt", extra=False)
    err = cli_error(["convert", ckpt, str(tmp_path / "out")], capsys)
    assert "mel_basis" in err


def test_m2d_encoder_file(tmp_path, sd_1c, golden):
    """The M2D pretrained encoder .pth: bare encoder keys under module.ar.runtime.backbone (the tiny
    official encoder's: the layout and the rules are those of the full-size file)."""
    import json

    from s5jax import checkpoint

    enc = {k[len("model.backbone."):]: v for k, v in sd_1c.items() if k.startswith("model.backbone.")}
    stats = enc.pop("norm_stats")
    path = tmp_path / "weights_ep69it3124-0.47998.pth"
    save_torch_file({"module.ar.runtime.backbone." + k: v for k, v in enc.items()}, path)
    assert convert_checkpoint(str(path), str(tmp_path / "enc")) == "m2d-encoder"
    kind, cfg, var = checkpoint.load(tmp_path / "enc")
    assert kind == "m2d-encoder" and list(var) == ["params"] and list(var["params"]) == ["encoder"]
    assert (cfg["norm_mean"], cfg["norm_std"]) == (-7.1, 4.2)         # defaults: no norm_stats in file
    vit = json.loads(str(np.load(golden / "m2d" / "tiny_1c_golden.npz")["config"]))["vit"]
    assert (cfg["depth"], cfg["embed_dim"]) == (vit["depth"], vit["embed_dim"]) == (2, 64)   # from the weights
    np.testing.assert_array_equal(var["params"]["encoder"]["blocks_1"]["attn"]["qkv"]["kernel"],
                                  enc["blocks.1.attn.qkv.weight"].T)
    # with norm_stats they go to the config; a decoder key of a pre-training file is refused by name
    save_torch_file({**enc, "norm_stats": stats * 2}, path)
    convert_checkpoint(str(path), str(tmp_path / "enc"))
    assert abs(checkpoint.load(tmp_path / "enc")[1]["norm_std"] - 8.4) < 1e-5
    save_torch_file({**enc, "decoder_blocks.0.mlp.fc1.weight": np.zeros((4, 4), np.float32)}, path)
    with pytest.raises(CheckpointError, match="decoder_blocks.0.mlp.fc1.weight"):
        convert_checkpoint(str(path), str(tmp_path / "enc"))


class _RunsCode:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "eval-in-tuple"])
def test_pickle_that_runs_code_is_refused(tmp_path, capsys, how):
    import builtins
    import os

    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    payload = {"os.system": _RunsCode(os.system, cmd),
               "builtins.exec": _RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
               "eval-in-tuple": (1, _RunsCode(builtins.eval, f"open({str(marker)!r}, 'w')"))}[how]
    obj = {"state_dict": collections.OrderedDict(), "hyper_parameters": payload}
    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        z.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match="refused") as e:
        load_torch_file(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    err = cli_error(["convert", str(path), str(tmp_path / "out")], capsys)
    assert "refused" in err
    assert not marker.exists()


def test_tensor_outside_its_storage_is_refused(tmp_path):
    """A crafted size/stride must not read memory past the storage."""
    save_torch_file({"w": np.zeros(4, np.float32)}, tmp_path / "ok.ckpt")
    with zipfile.ZipFile(tmp_path / "ok.ckpt") as z:
        files = {n: z.read(n) for n in z.namelist()}
    pkl = files["archive/data.pkl"]
    # the pickled size tuple (4,) and stride (1,) as BININT1 4 / BININT1 1: make the size 4096
    assert pkl.count(b"K\x04\x85") == 1
    files["archive/data.pkl"] = pkl.replace(b"K\x04\x85", b"M\x00\x10\x85")
    with zipfile.ZipFile(tmp_path / "bad.ckpt", "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="does not fit its storage"):
        load_torch_file(tmp_path / "bad.ckpt")


def test_real_torch_files_both_ways(tmp_path):
    torch = require_torch()
    rng = np.random.default_rng(0)
    arrays = {
        "model.backbone.pos_embed": rng.standard_normal((1, 11, 8)).astype(np.float32),
        "model.head.linear.0.weight": rng.standard_normal((6, 5)).astype(np.float32),
        "model.half": rng.standard_normal((3, 2)).astype(np.float16),
        "model.head.m2d_out_norm.num_batches_tracked": np.array(7, np.int64),
        "model.mask": np.array([True, False, True]),
    }
    sd = collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in arrays.items())
    sd["model.transposed"] = torch.from_numpy(arrays["model.head.linear.0.weight"].copy()).t()  # strided view
    sd["model.slice"] = sd["model.backbone.pos_embed"][0, 2:5]                                 # offset view
    obj = {"state_dict": sd, "epoch": 3, "global_step": 10, "pytorch-lightning_version": "2.4.0",
           "hyper_parameters": {"lr": 1e-3, "betas": (0.9, 0.999)}}
    path = tmp_path / "torch.ckpt"
    torch.save(obj, path)

    got = load_torch_file(path)
    assert got["epoch"] == 3 and got["hyper_parameters"]["betas"] == (0.9, 0.999)
    for k, v in sd.items():
        a = got["state_dict"][k]
        assert a.dtype == v.numpy().dtype and a.shape == tuple(v.shape), k
        np.testing.assert_array_equal(a, v.numpy())

    ours = tmp_path / "ours.ckpt"
    save_torch_file({"state_dict": {k: v.numpy().copy() for k, v in sd.items()}, "epoch": 3}, ours)
    back = torch.load(ours, weights_only=True)
    assert back["epoch"] == 3
    for k, v in sd.items():
        assert back["state_dict"][k].dtype == v.dtype, k
        assert torch.equal(back["state_dict"][k], v.contiguous()), k


# ------------------------------------------------------------------ output folder safety, identity
TINY = ["--set", "num_heads=4"]


def _tiny_ckpt(golden) -> str:
    return str(golden / "m2d" / "tiny_lightning_1c.ckpt")


def test_convert_into_folder_with_a_foreign_file_leaves_it_untouched(golden, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a user's file")
    err = cli_error(["convert", _tiny_ckpt(golden), str(out), *TINY], capsys)
    assert "not empty and not an s5jax checkpoint" in err and str(out) in err
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "a user's file"
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in cli_error(["convert", _tiny_ckpt(golden), str(tmp_path / "afile"), *TINY], capsys)
    assert (tmp_path / "afile").read_text() == "x"
    # a checkpoint folder holding an extra file is not ours to replace either
    assert main(["convert", _tiny_ckpt(golden), str(tmp_path / "ck"), *TINY]) == 0
    (tmp_path / "ck" / "extra.txt").write_text("keep")
    assert "not empty" in cli_error(["convert", _tiny_ckpt(golden), str(tmp_path / "ck"), *TINY], capsys)
    assert (tmp_path / "ck" / "extra.txt").read_text() == "keep"


def test_convert_replaces_a_checkpoint_and_follows_the_umask(golden, tmp_path):
    from s5jax import checkpoint
    from s5jax.tagger import Tagger

    out = tmp_path / "ck"
    old = os.umask(0o002)
    try:
        assert main(["convert", _tiny_ckpt(golden), str(out), *TINY]) == 0
        first = checkpoint.identity(out)
        assert main(["convert", _tiny_ckpt(golden), str(out), "--set", "num_heads=2"]) == 0
    finally:
        os.umask(old)
    assert sorted(os.listdir(out)) == ["config.json", "variables"]
    assert [f for f in os.listdir(tmp_path) if f != "ck"] == []          # no temporaries left
    for d, dirs, files in os.walk(out):
        assert os.stat(d).st_mode & 0o777 == 0o775, d
        for f in files:
            assert os.stat(os.path.join(d, f)).st_mode & 0o777 == 0o664, f
    second = checkpoint.identity(out)
    assert second["path"] == str(out) and second["kind"] == "tagger-1ch"
    assert first["sha256"] != second["sha256"]                    # the config is part of the identity
    tagger = Tagger.from_checkpoint(out)
    assert tagger.identity == second and tagger.cfg.num_heads == 2
    # same weights and config elsewhere: same hash; one weight changed: another hash
    kind, config, variables = checkpoint.load(out)
    checkpoint.save(tmp_path / "copy", kind, config, variables)
    assert checkpoint.identity(tmp_path / "copy")["sha256"] == second["sha256"]
    variables["params"]["head"]["tracks_0_3"]["bias"][0] += 1e-6
    checkpoint.save(tmp_path / "copy", kind, config, variables)
    assert checkpoint.identity(tmp_path / "copy")["sha256"] != second["sha256"]


def test_weights_are_written_uncompressed(tmp_path):
    """Loading is start-up time: the weights are stored raw (zstd decoding was half of the 4-ch
    tagger's load), and read back bit-exactly."""
    from s5jax import checkpoint

    rng = np.random.default_rng(0)
    w = rng.standard_normal((512, 1024)).astype(np.float32)          # 2 MiB of random weights
    checkpoint.save(tmp_path / "ck", "separator", {"note": "test"}, {"params": {"w": w}})
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "ck" / "variables") for f in fs)
    assert size >= w.nbytes                         # zstd takes random float32 to ≈ 0.9 of it
    _, _, back = checkpoint.load(tmp_path / "ck")
    np.testing.assert_array_equal(back["params"]["w"], w)


def test_stored_hash_is_the_hash_of_the_weights(golden, tmp_path):
    """config.json carries the weights' hash (no hashing at load); a folder without one (written before
    the hash was stored) is hashed when loaded, to the same value."""
    import json

    from s5jax import checkpoint
    from s5jax.tagger import Tagger

    out = tmp_path / "ck"
    assert main(["convert", _tiny_ckpt(golden), str(out), *TINY]) == 0
    meta = json.loads((out / "config.json").read_text())
    kind, config, variables = checkpoint.load(out)
    assert meta["sha256"] == checkpoint.digest(kind, config, variables)
    stored = Tagger.from_checkpoint(out).identity
    assert stored == checkpoint.identity(out) and stored["sha256"] == meta["sha256"]
    del meta["sha256"]
    (out / "config.json").write_text(json.dumps(meta))
    assert checkpoint.identity(out) == stored and Tagger.from_checkpoint(out).identity == stored
    meta["sha256"] = "not a hash"                      # a malformed value is ignored, the weights hashed
    (out / "config.json").write_text(json.dumps(meta))
    assert Tagger.from_checkpoint(out).identity == stored


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.update(config=None), '"config": null'),
    (lambda m: m["config"].update(embed_dim=32, num_heads=4), "has shape"),
    (lambda m: m["config"].update(depth=3), "weights lack params/encoder/blocks_2"),
    (lambda m: m["config"].update(in_channels=4), "tagger-1ch checkpoint with in_channels=4"),
    (lambda m: m.update(kind="tagger-4ch"), "tagger-4ch checkpoint with in_channels=1"),
    (lambda m: m["config"].update(num_tracks=4), "config"),
])
def test_config_that_does_not_match_the_weights_is_one_line(golden, tmp_path, capsys, edit, expected):
    import json

    from s5jax.tagger import Tagger

    out = tmp_path / "ck"
    assert main(["convert", _tiny_ckpt(golden), str(out), *TINY]) == 0
    meta = json.loads((out / "config.json").read_text())
    edit(meta)
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        Tagger.from_checkpoint(out)
    assert expected in str(e.value) and str(out) in str(e.value) and "\n" not in str(e.value)


def test_separator_config_mismatch_is_one_line(golden, tmp_path):
    import json

    from s5jax.separator import Separator

    out = tmp_path / "sep"
    assert main(["convert", str(golden / "resunet" / "tiny_lightning.ckpt"), str(out), "--set", "hop=40"]) == 0
    meta = json.loads((out / "config.json").read_text())
    meta["config"]["condition_dim"] = 64
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"has shape .* config implies"):
        Separator.from_checkpoint(out)


# A careless edit of config.json: a zero, negative, fractional or non-numeric size.  Each was a
# ZeroDivisionError / TypeError traceback from inside the model's trace; now one line naming the file
# and the field, before any weights are read.
BAD_SIZES = [
    ("tagger", "num_heads", 0), ("tagger", "patch", 0), ("tagger", "chunk_frames", 0), ("tagger", "hop", 0),
    ("tagger", "hop", -1), ("tagger", "n_mels", 0), ("tagger", "num_tracks", 0), ("tagger", "embed_dim", -4),
    ("tagger", "n_fft", 0), ("tagger", "hop", 3.5), ("tagger", "hop", "160"), ("tagger", "depth", 0),
    ("tagger", "norm_std", 0), ("tagger", "sample_rate", 0),
    ("separator", "num_slots", 0), ("separator", "condition_dim", 0), ("separator", "hop", 0),
    ("separator", "channels", [0, 12, 16, 20, 24, 24]), ("separator", "channels", 8),
    ("separator", "pools", [[0, 2]] * 6), ("separator", "num_classes", 0), ("separator", "input_channels", 0),
    ("separator", "bottleneck_channels", -1), ("separator", "n_fft", 0), ("separator", "hop", True),
    ("separator", "bn_eps", 0),
]


@pytest.mark.parametrize("which, field, value", BAD_SIZES)
def test_zero_or_negative_size_in_config_json_is_one_line(tiny_ckpt, tmp_path, which, field, value):
    import json
    import shutil

    from s5jax.separator import Separator
    from s5jax.tagger import Tagger

    folder = tmp_path / which
    shutil.copytree(tiny_ckpt[which], folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"][field] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        (Tagger if which == "tagger" else Separator).from_checkpoint(folder)
    msg = str(e.value)
    assert msg.startswith(f"{folder / 'config.json'}: invalid ") and f"field {field!r}" in msg, msg
    assert "\n" not in msg


def test_edited_config_is_part_of_the_identity(golden, tiny_ckpt, tmp_path):
    """A config.json edited after conversion (the separator's hop, which the weights cannot reveal):
    the identity is that of the model loaded — the same as converting with that value — not the one
    stored at conversion; so is a folder written before config hashes were stored."""
    import json
    import shutil

    from s5jax import checkpoint
    from s5jax.separator import Separator

    edited = tmp_path / "edited"
    shutil.copytree(tiny_ckpt["separator"], edited)
    meta = json.loads((edited / "config.json").read_text())
    original = meta["sha256"]
    assert meta["config"]["hop"] == 40
    meta["config"]["hop"] = 80
    (edited / "config.json").write_text(json.dumps(meta))
    # the model as it should be named: converted with hop 80 from the start
    assert main(["convert", str(golden / "resunet" / "tiny_lightning.ckpt"), str(tmp_path / "hop80"),
                 "--set", "hop=80"]) == 0
    want = json.loads((tmp_path / "hop80" / "config.json").read_text())["sha256"]
    assert want != original
    for wait in (True, False):
        sep = Separator.from_checkpoint(edited, wait=wait)
        assert sep.identity == {"path": str(edited), "kind": "separator", "sha256": want}
        assert sep.cfg.hop == 80
    assert checkpoint.identity(edited)["sha256"] == want
    # written before "config_sha256" existed: hashed at load, also when not edited
    del meta["config_sha256"]
    (edited / "config.json").write_text(json.dumps(meta))
    assert Separator.from_checkpoint(edited).identity["sha256"] == want
    meta["config"]["hop"] = 40
    (edited / "config.json").write_text(json.dumps(meta))
    assert Separator.from_checkpoint(edited).identity["sha256"] == original
