"""The on-disk cache: values equal to the models', entries never computed twice, resumable, refusals."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from s5jax import metric
from s5jax.audio import read_audio
from s5jax.dataset import reference_files
from s5jax.replay import cache
from s5jax.replay.arrays import MISSING_KEY, entry_key
from tiny_system import write_scenes


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models, session_compile_cache):
    """(root, data, models). JAX's persistent cache on (conftest.session_compile_cache): the builder's
    stage programs (batch 2, 1 s) and the models' own programs the checks below call (one clip; the
    re-tag of 3 stems) are the ones test_system_pipeline and `s5jax cache` in test_search compile at
    these shapes, read back instead of compiled again."""
    root = tmp_path_factory.mktemp("cache")
    data = write_scenes(str(root / "data"), count=4)
    return root, data, tiny_models["models"]


def _open(folder, data, m, **kw):
    return cache.CacheBuilder.open(str(folder), data, m["t4"], m["t1"], m["A"], m.get("B"), batch_size=2, **kw)


def _tree_digest(folder) -> dict:
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_base_and_entries_equal_the_models_and_are_never_recomputed(setup, tmp_path):
    import jax

    root, data, m = setup
    # the stage functions are memoised (one per model class and config), so their jitted programs'
    # in-memory caches are shared with every earlier user in this process (test_system_pipeline's
    # traced fallbacks, when xdist gives it this worker first): emptied here, so the count below is
    # this builder's alone
    jax.clear_caches()
    b = _open(tmp_path / "c", data, m)
    assert b.base() == b.mine and len(b.mine) == 4
    tuples = [(0, (1, 2, 18)), (0, (2, 1, 18)), (1, (1, 2, 18)), (0, (18, 18, 18))]
    keys = [int(entry_key(s, np.array(q))) for s, q in tuples]
    assert b.fill({n: keys[:3] for n in b.mine}) == 12
    assert b.fill({n: keys[:3] for n in b.mine}) == 0              # all cached: nothing computed
    assert b.fill({n: keys for n in b.mine[:1]}) == 1             # only the new one
    assert b.computed == 13
    # the model programs are the ones `s5jax infer` prepares for this batch and clip length (kept
    # exports, one compiled program each), never a second program jitted apart (it compiled again)
    for prog in (b._stages.tag4, b._stages.tag1, *b._stages.separate):
        assert prog._fn._cache_size() == 0 and len(prog._programs) == (2 if prog is b._stages.tag1 else 1)
    names, arr = cache.load(str(tmp_path / "c"), b.mine)
    assert arr.keys.shape == (4, 4)
    assert (arr.keys[0] == sorted(keys)).all() and (arr.keys[1:, 3] == MISSING_KEY).all()
    for i, name in enumerate(names):
        mix = read_audio(os.path.join(data, "soundscape", f"{name}.wav"), channels=4)
        refs = np.zeros((3, mix.shape[1]), np.float32)
        found = reference_files(os.path.join(data, "oracle_target"), name)
        for j, (p, _) in enumerate(found):
            refs[j] = read_audio(p)[0]
        assert list(arr.ref_labels[i][:len(found)]) == [c for _, c in found]
        np.testing.assert_allclose(arr.P4[i], np.asarray(m["t4"].predict(mix[None]).softmax[0]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(arr.P1[i], np.asarray(m["t1"].predict(mix[None, :1]).softmax[0]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(arr.M[i], np.asarray(metric.mixture_snr(mix[0], refs)), rtol=1e-5, atol=1e-5)
        for s, q in tuples[:3]:
            e = list(arr.keys[i]).index(int(entry_key(s, np.array(q))))
            stems = np.asarray(m["AB"[s]](mix[None], np.array([q], np.int32)))[0]
            np.testing.assert_allclose(arr.S[i, e], np.asarray(metric.snr_matrix(stems, refs)), rtol=1e-4, atol=1e-4)
            retag = np.asarray(m["t1"].predict(stems[:, None]).softmax)
            np.testing.assert_allclose(arr.retag[i, e], retag, rtol=1e-4, atol=1e-6)
            power = (stems ** 2).mean(-1) / (mix[0] ** 2).mean()
            with np.errstate(divide="ignore"):
                np.testing.assert_allclose(arr.energy_db[i, e], 10 * np.log10(power), rtol=1e-4)
            assert np.isneginf(arr.energy_db[i, e, 2])                 # the silent slot: a zero stem
    # resumable: a clip whose file is gone is recomputed, the others are kept as they are
    os.unlink(cache.clip_path(str(tmp_path / "c"), names[2]))
    before = _tree_digest(tmp_path / "c")
    assert _open(tmp_path / "c", data, m).base() == [names[2]]
    after = _tree_digest(tmp_path / "c")
    assert {k: v for k, v in after.items() if names[2] not in k} == before
    assert b.finish()["clips"] == names


def test_other_checkpoints_and_foreign_folders_are_refused_untouched(setup, tmp_path):
    root, data, m = setup
    b = _open(tmp_path / "c", data, {k: v for k, v in m.items() if k != "B"})
    b.base()
    before = _tree_digest(tmp_path / "c")
    swapped = dict(m, A=m["B"])
    with pytest.raises(cache.CacheError) as e:
        _open(tmp_path / "c", data, swapped)
    msg = str(e.value)
    assert "\n" not in msg and "another separator" in msg and "sepA" in msg and "sepB" in msg
    assert _tree_digest(tmp_path / "c") == before
    # a first separator B is accepted and recorded; a different one later is refused
    _open(tmp_path / "c", data, m)
    assert cache.read_manifest(str(tmp_path / "c"))["models"]["separator2"]["sha256"] == m["B"].identity["sha256"]
    with pytest.raises(cache.CacheError, match="another separator2"):
        _open(tmp_path / "c", data, dict(m, B=m["A"]))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(cache.CacheError, match="not an s5jax cache"):
        _open(tmp_path / "mine", data, m)
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_a_corrupted_clip_file_is_named_and_left_alone(setup, tmp_path, capsys):
    root, data, m = setup
    b = _open(tmp_path / "c", data, m)
    b.base()
    path = cache.clip_path(str(tmp_path / "c"), b.mine[1])
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    before = _tree_digest(tmp_path / "c")
    with pytest.raises(cache.CacheError) as e:
        cache.load(str(tmp_path / "c"), b.mine)
    assert str(e.value).startswith(path) and "corrupted" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(cache.CacheError, match="corrupted"):
        b.fill({b.mine[1]: [int(entry_key(0, np.array([1, 18, 18])))]})
    # a well-formed npz with a field of the wrong shape is refused too
    other = cache.clip_path(str(tmp_path / "c"), b.mine[2])
    clip = cache.read_clip(other)
    clip["S"] = np.zeros((0, 3, 2), np.float32)
    bad_path = str(tmp_path / "bad.npz")
    np.savez(bad_path, **clip)
    with pytest.raises(cache.CacheError, match="field 'S'"):
        cache.read_clip(bad_path)
    assert _tree_digest(tmp_path / "c") == before


def test_two_builders_filling_one_clip_keep_each_others_entries(setup, tmp_path):
    """Two builds into one cache (two `s5jax cache` runs, or a sweep filling while a cache runs): the
    second writes an entry of a clip while the first is between two batches of that clip.  The first's
    next write must keep it (it used to write its own copy read before: last writer won)."""
    root, data, m = setup
    folder = str(tmp_path / "c")
    first, second = _open(folder, data, m), _open(folder, data, m)
    name = first.mine[0]
    first.base([name])
    mine = [int(entry_key(0, np.array(q))) for q in ((1, 2, 18), (2, 1, 18), (3, 18, 18), (4, 18, 18))]
    theirs = int(entry_key(0, np.array([5, 18, 18])))
    calls = []

    def meanwhile(n):                     # after the first's first batch (2 entries) is written
        if not calls:
            assert second.fill({name: [theirs]}) == 1
        calls.append(n)

    assert first.fill({name: mine}, progress=meanwhile) == 4 and calls == [2, 2]
    keys = list(cache.read_clip(cache.clip_path(folder, name))["keys"])
    assert keys == sorted(mine + [theirs])


def test_concurrent_processes_merging_entries_lose_none(setup, tmp_path):
    """Two processes adding 25 entries each, one at a time, to one clip file: all 50 are there."""
    import subprocess
    import sys

    root, data, m = setup
    folder = str(tmp_path / "c")
    b = _open(folder, data, m)
    name = b.mine[0]
    b.base([name])
    script = (
        "import sys, numpy as np\n"
        "from s5jax.replay import cache\n"
        "folder, name, start = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "for k in range(start, start + 25):\n"
        "    cache.merge_entries(folder, name, [k], np.full((1, 3, 3, 19), k, np.float32),\n"
        "                        np.full((1, 3), k, np.float32), np.full((1, 3, 3), k, np.float32))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, folder, name, str(start)])
             for start in (1000, 2000)]
    assert [p.wait(timeout=900) for p in procs] == [0, 0]     # generous: a loaded CI machine
    clip = cache.read_clip(cache.clip_path(folder, name))
    want = list(range(1000, 1025)) + list(range(2000, 2025))
    assert list(clip["keys"]) == want
    np.testing.assert_array_equal(clip["S"][:, 0, 0], np.asarray(want, np.float32))   # each entry its own


def test_every_bad_clip_is_named_and_the_others_are_cached(setup, tmp_path):
    """Two bad clips (not audio; a mono mixture): both named, one line each, in one run; the good
    clips are cached and their entries filled; the cache stays unfinished (no clip list)."""
    import shutil

    root, data, m = setup
    bad_data = tmp_path / "data"
    shutil.copytree(data, bad_data)
    names = sorted(f[:-4] for f in os.listdir(bad_data / "soundscape"))
    (bad_data / "soundscape" / f"{names[0]}.wav").write_bytes(b"not a wav at all")
    import soundfile as sf
    mono = read_audio(str(bad_data / "soundscape" / f"{names[2]}.wav"), channels=4)[0]
    sf.write(str(bad_data / "soundscape" / f"{names[2]}.wav"), mono, 32000)
    folder = str(tmp_path / "c")
    b = _open(folder, str(bad_data), m)
    assert b.base() == [names[1], names[3]]
    assert sorted(b.bad) == [names[0], names[2]]
    for name in (names[0], names[2]):
        why = b.bad[name]
        assert why.startswith(str(bad_data / "soundscape" / f"{name}.wav")) and "\n" not in why, why
        assert not os.path.exists(cache.clip_path(folder, name))
    key = int(entry_key(0, np.array([1, 2, 18])))
    assert b.fill({n: [key] for n in names}) == 2                     # the good clips only
    assert b.load()[0] == [names[1], names[3]]
