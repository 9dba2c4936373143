"""The weights kept as a flat, mapped file beside the compilation cache (`s5jax/runtime/weight_cache.py`): a
second load reads no orbax checkpoint, gives the same arrays (views of the file, used in place by
JAX's CPU device), and a changed, damaged or foreign file is never used. Tiny official checkpoints."""
from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import threading

import jax
import numpy as np
import pytest

from s5jax import checkpoint
from s5jax.runtime import weight_cache
from s5jax.errors import CheckpointError


@pytest.fixture
def kept(tmp_path, monkeypatch):
    """weight_cache.path_for pointed at a private folder."""
    folder = tmp_path / "cache"
    monkeypatch.setattr(weight_cache, "path_for",
                        functools.partial(weight_cache.path_for, folder=str(folder)))
    return folder / "s5jax-weights"


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k2: v2 for k in tree for k2, v2 in _flat(tree[k], f"{prefix}/{k}").items()}
    return {prefix: tree}


def _load(*args):
    """weight_cache.load, returning when its file is written."""
    out = weight_cache.load(*args)
    for t in threading.enumerate():
        if t.name == weight_cache.WRITER:
            t.join()
    return out


def _no_orbax(*a, **k):
    raise AssertionError("read the orbax checkpoint although its weights are kept")


def test_second_load_maps_the_kept_file_and_reads_no_checkpoint(tiny_ckpt, kept, monkeypatch):
    ref = checkpoint.load(tiny_ckpt["separator"])
    first = _load(tiny_ckpt["separator"], ("separator",))
    (kept_file,) = kept.iterdir()
    assert kept_file.name.endswith(".bin") and first[0] == "separator"
    monkeypatch.setattr(checkpoint, "load", _no_orbax)
    kind, config, variables = weight_cache.load(tiny_ckpt["separator"], ("separator",))
    assert (kind, config) == ref[:2]
    want, got = _flat(ref[2]), _flat(variables)
    assert sorted(got) == sorted(want)
    for path in want:
        assert got[path].dtype == want[path].dtype and got[path].shape == want[path].shape
        np.testing.assert_array_equal(got[path], want[path])
        assert not got[path].flags.writeable                      # a view of the read-only mapping
    # JAX's CPU device uses the mapped pages in place (no copy of the weights at start-up)
    leaf = max(got.values(), key=lambda a: a.nbytes)
    assert jax.device_put(leaf).unsafe_buffer_pointer() == leaf.ctypes.data
    # ... and never writes through it: a program given a mapped weight to donate (as a training step
    # does with its state) computes as usual and leaves the kept file as it was
    before = kept_file.read_bytes()
    step = jax.jit(lambda w: w * 2.0 + 1.0, donate_argnums=0)
    np.testing.assert_array_equal(np.asarray(step(jax.device_put(leaf))), np.asarray(leaf) * 2.0 + 1.0)
    assert kept_file.read_bytes() == before
    # the wrong model kind is still refused from config.json, before any weights
    with pytest.raises(CheckpointError, match="expected tagger"):
        weight_cache.load(tiny_ckpt["separator"], ("tagger-1ch", "tagger-4ch"))


def test_models_loaded_from_the_kept_file_compute_the_same(tiny_ckpt, kept, monkeypatch):
    """Tagger/Separator.from_checkpoint(wait=False) from orbax (round 0, the weights then kept) and from
    the mapped file (round 1): the same config and the same weight tree, every leaf bit for bit in
    dtype, shape and value, so every call computes the same. (Compared as weights, not as the outputs
    of one call: that compiled both tiny models for 13 s and missed weights the call does not use.)"""
    from s5jax.separator import Separator
    from s5jax.tagger import Tagger

    rounds = []
    for round_ in range(2):                          # 0: orbax read (and kept), 1: mapped
        if round_:
            monkeypatch.setattr(checkpoint, "load", _no_orbax)
        tagger = Tagger.from_checkpoint(tiny_ckpt["tagger"], wait=False)
        separator = Separator.from_checkpoint(tiny_ckpt["separator"], wait=False)
        rounds.append([(m.cfg, jax.tree.structure(m.variables), jax.tree.leaves(m.variables))
                       for m in (tagger, separator)])
        _load(tiny_ckpt["tagger"])                    # (waits for the files being written)
        assert tagger.identity == checkpoint.identity(tiny_ckpt["tagger"])
    assert len(list(kept.iterdir())) == 2
    for (cfg_a, tree_a, leaves_a), (cfg_b, tree_b, leaves_b) in zip(*rounds):
        assert cfg_a == cfg_b and tree_a == tree_b and len(leaves_a) > 10
        for a, b in zip(leaves_a, leaves_b):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), strict=True)


def test_changed_damaged_or_foreign_files_are_not_used(tiny_ckpt, kept, tmp_path):
    copy = tmp_path / "tagger"
    shutil.copytree(tiny_ckpt["tagger"], copy)
    meta = checkpoint.read_meta(copy)
    path, key = weight_cache.path_for(copy, meta)
    _load(copy)
    ref = _flat(checkpoint.load(copy)[2])
    good = open(path, "rb").read()

    def check_rewritten():
        got = _flat(_load(copy)[2])                      # falls back to orbax ...
        assert all(np.array_equal(got[p], ref[p]) for p in ref)
        assert weight_cache.read(path, key) is not None              # ... and keeps a good file again

    def crafted(**change):                  # a header of the same length claiming other arrays
        n = struct.unpack("<Q", good[8:16])[0]
        header = json.loads(good[16:16 + n])
        header["arrays"][0].update(change)
        text = json.dumps(header).encode()
        return good[:16] + text.ljust(n) + good[16 + n:]

    for damaged in (good[:-1], good + b"\0", b"NOTOURS!" + good[8:], good[:100],
                    good.replace(key.encode(), b"0" * 64, 1), crafted(shape=[-1]), crafted(dtype="|O"),
                    crafted(offset=len(good)), crafted(shape=[10**9]), crafted(path=["params"])):
        open(path, "wb").write(damaged)
        assert weight_cache.read(path, key) is None
        check_rewritten()
    # a weight file changed on disk (another size or time) is another key: read from orbax again
    data = max((os.path.join(d, f) for d, _, fs in os.walk(copy / "variables") for f in fs),
               key=os.path.getsize)
    os.utime(data, ns=(os.stat(data).st_atime_ns, os.stat(data).st_mtime_ns + 1))
    assert weight_cache.path_for(copy, meta)[1] != key
    # a folder without a stored hash (written before hashes were stored) is never kept
    del meta["sha256"]
    assert weight_cache.path_for(copy, meta) is None


def test_least_recently_used_files_beyond_keep_are_dropped(tiny_ckpt, kept, tmp_path, monkeypatch):
    monkeypatch.setattr(weight_cache, "KEEP", 2)
    kept.mkdir(parents=True)
    (kept / "notes.txt").write_text("not ours")                       # never touched
    paths = []
    for i in range(3):
        copy = tmp_path / f"t{i}"
        shutil.copytree(tiny_ckpt["tagger"], copy)
        os.utime(copy / "variables" / "manifest.ocdbt", ns=(0, 10**18 + i))   # three keys
        _load(copy)
        paths.append(weight_cache.path_for(copy, checkpoint.read_meta(copy))[0])
        os.utime(paths[-1], ns=(0, 10**18 + i * 10**9))               # i-th is the newest
    assert sorted(os.listdir(kept)) == sorted(["notes.txt", *(os.path.basename(p) for p in paths[1:])])
    _load(tmp_path / "t1")                                # a hit marks it recently used
    assert os.stat(paths[1]).st_mtime_ns > os.stat(paths[2]).st_mtime_ns


def test_kept_beside_the_jax_cache_and_only_when_it_is_on(tiny_ckpt, tmp_path):
    meta = checkpoint.read_meta(tiny_ckpt["tagger"])
    old = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert weight_cache.path_for(tiny_ckpt["tagger"], meta) is None
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        path, _ = weight_cache.path_for(tiny_ckpt["tagger"], meta)
    finally:
        jax.config.update("jax_compilation_cache_dir", old)
    assert os.path.dirname(path) == str(tmp_path / "s5jax-weights")


def test_stored_shapes_without_reading_the_weights(tiny_ckpt, kept, monkeypatch):
    """The shapes a config is checked against before compiling: from orbax's metadata, then (once the
    weights are kept) from the kept file's header — both equal to the weights' own shapes."""
    source = tiny_ckpt["separator"]
    meta = checkpoint.read_meta(source)
    want = {p: a.shape for p, a in _flat(checkpoint.load(source)[2]).items()}
    want = {p.lstrip("/"): s for p, s in want.items()}
    monkeypatch.setattr(checkpoint, "load", _no_orbax)
    assert weight_cache.stored_shapes(source, meta) == want           # orbax metadata (nothing kept yet)
    monkeypatch.undo()
    monkeypatch.setattr(weight_cache, "path_for", functools.partial(weight_cache.path_for, folder=str(kept.parent)))
    _load(source, ("separator",))
    monkeypatch.setattr(checkpoint, "stored_shapes", _no_orbax)
    assert weight_cache.stored_shapes(source, meta) == want           # the kept file's header


@pytest.mark.parametrize("kept_first", [False, True])
def test_edited_config_that_misfits_the_weights_fails_before_any_compile(tiny_ckpt, kept, tmp_path,
                                                                        monkeypatch, kept_first):
    """`from_checkpoint(wait=False)` (infer, cache, segment: compile while the weights are read) used to
    return, compile for ≈ 25 s from the edited config's shapes and only then fail on the weights. Now it
    raises the one-line CheckpointError itself, reading no weights."""
    from s5jax.separator import Separator

    copy = tmp_path / "sep"
    shutil.copytree(tiny_ckpt["separator"], copy)
    if kept_first:
        _load(str(copy), ("separator",))
    meta = json.loads((copy / "config.json").read_text())
    meta["config"]["condition_dim"] = 64                     # the FiLM layers' input width: a shape change
    (copy / "config.json").write_text(json.dumps(meta))
    def no_read(*a, **k):
        raise AssertionError("the weights were read before the config was checked")

    monkeypatch.setattr(weight_cache, "load", no_read)     # so only the early check can raise CheckpointError
    with pytest.raises(CheckpointError, match=r"has shape .* config implies") as e:
        Separator.from_checkpoint(copy, wait=False)
    assert str(copy) in str(e.value) and "\n" not in str(e.value)
