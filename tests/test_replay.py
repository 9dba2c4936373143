"""The replay: same decisions as running the rules clip by clip, exact scores, missing entries reported,
vmap over configs, totals, and configs × clips sharded over 8 forced CPU devices."""
import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5jax.labels import SILENCE
from s5jax.metric import clip_score_reference
from s5jax.replay import replay as R
from s5jax.replay.arrays import MISSING_KEY, entry_key
from s5jax.replay.planted import SyntheticWorld
from s5jax.system import decisions as D
from s5jax.system.config import preset, stack_params

N = 60


def configs():
    s1 = dataclasses.replace(preset("system1"), solo4=0.3, solo1=0.5)
    verify = np.linspace(0.1, 0.9, 18)
    return [
        preset("baseline"),
        s1,
        dataclasses.replace(s1, order="track", confirm="argmax", proposal="best_nonsilence"),
        dataclasses.replace(s1, verify=tuple(verify), drop=tuple(verify[::-1]), gate=tuple(verify / 2),
                            solo_conf="weighted", energy_db=-45.0),
        dataclasses.replace(preset("system3"), solo4=0.3, energy_db=-45.0),
        dataclasses.replace(preset("system3"), solo4=0.3, gate_before_select=True, energy_db=-45.0),
    ]


def complete(world, cfg, rounds=6):
    """Fill the world's cache until cfg replays without missing entries."""
    sw = cfg.switches()
    for _ in range(rounds):
        prep = R.prepare(world.cache(), sw)
        out = R.replay(cfg.params(), prep, sw)
        miss = R.missing_by_clip(out.clips)
        if not miss:
            return prep, out
        world.add(miss)
    raise AssertionError("cache never completed")


# The rules of system/decisions.py, each compiled on its own (switches and modes static), called clip by
# clip below: the same functions the pipeline calls, without the ~100 op-by-op dispatches per clip of
# running them eagerly (minutes over the 6 configs × 60 clips).
proposals = jax.jit(D.proposals, static_argnums=1)
fuse = jax.jit(D.fuse, static_argnums=3)
confirmation = jax.jit(D.confirmation, static_argnums=2)
refine = jax.jit(D.refine)
finalize = jax.jit(D.finalize, static_argnums=7)


def direct(world, cfg, clip):
    """The system's rules applied to one clip straight from the world's entries, scored by the plain
    python reference metric -> (labels, score or None)."""
    sw, params = cfg.switches(), cfg.params()
    p1 = proposals(world.P1[clip], sw.proposal)
    p4 = proposals(world.P4[clip], sw.proposal)
    q, conf = fuse(p1, p4, params, sw)
    q = np.asarray(q)

    def ent(sep, tup):
        return world.entry(clip, int(entry_key(sep, np.asarray(tup))))

    if sw.refine and (q != SILENCE).any():
        retag, _, _ = ent(0, q)
        (q2, conf2), _ = refine(jnp.asarray(q), conf, confirmation(retag, jnp.asarray(q), sw.confirm), params)
        q2 = np.asarray(q2)
    else:
        q2, conf2 = q, conf
    if not (q2 != SILENCE).any():
        labels = q2
        return labels, clip_score_reference(labels, world.ref_labels[clip], np.zeros((3, 3)), world.M[clip])[0]
    ra, ea, Sa = ent(0, q2)
    if sw.separator_b:
        rb, eb, Sb = ent(1, q2)
        f = finalize(jnp.asarray(q2), conf2, confirmation(ra, q2, sw.confirm), confirmation(rb, q2, sw.confirm),
                     ea, eb, params, sw)
        rows = np.where(np.asarray(f.use_b)[:, None], Sb, Sa)
    else:
        f = finalize(jnp.asarray(q2), conf2, confirmation(ra, q2, sw.confirm), None, ea, None, params, sw)
        rows = Sa
    labels = np.asarray(f.labels)
    return labels, clip_score_reference(labels, world.ref_labels[clip], rows, world.M[clip])[0]


@pytest.mark.parametrize("ci", range(6))
def test_replay_equals_rules_clip_by_clip(ci):
    cfg = configs()[ci]
    world = SyntheticWorld(N, seed=3)
    prep, out = complete(world, cfg)
    labels = np.asarray(out.clips.labels)
    score = np.asarray(out.clips.score)
    for clip in range(N):
        want_labels, want = direct(world, cfg, clip)
        np.testing.assert_array_equal(labels[clip], want_labels, err_msg=f"clip {clip}")
        if want is None:
            assert not out.clips.valid[clip] and np.isnan(score[clip])
        else:
            assert out.clips.valid[clip]
            assert abs(score[clip] - want) <= 1e-5, (clip, score[clip], want)
    # the S rows it used are the entry rows of the kept stems
    entry = np.asarray(out.clips.entry)
    keys = np.asarray(prep.keys)
    # each entry's confirmation of its own tuple, by the config's mode (numpy, from the rule's text)
    cache = world.cache()
    real = cache.keys != MISSING_KEY
    q = np.stack([cache.keys // 19 ** 2 % 19, cache.keys // 19 % 19, cache.keys % 19], -1)[real]      # [R, 3]
    retag = cache.retag[real]                                                                  # [R, 3, 3, 19]
    if cfg.confirm == "max_prob":
        want_r = np.take_along_axis(retag, np.broadcast_to(q[:, :, None, None], retag.shape[:-1] + (1,)), -1)[..., 0].max(-1)
    else:
        want_r = (retag.argmax(-1) == q[:, :, None]).any(-1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(prep.r)[:, :cache.keys.shape[1]][real], np.where(q == SILENCE, 0, want_r))
    for clip in range(N):
        for k in range(3):
            if labels[clip, k] != SILENCE:
                sep = int(keys[clip, entry[clip, k]]) // 19 ** 3
                assert sep == int(out.clips.use_b[clip, k])
    if ci == 4:   # the dual separator does pick B somewhere
        assert np.asarray(out.clips.use_b).any()


def test_missing_entries_are_reported_never_scored():
    world = SyntheticWorld(N, seed=4)
    cfg = dataclasses.replace(preset("system1"), solo4=0.2, solo1=0.2)   # false positives enter, get dropped
    sw = cfg.switches()
    out = R.replay(cfg.params(), R.prepare(world.cache(), sw), sw)
    q, _ = fuse(proposals(world.P1, sw.proposal), proposals(world.P4, sw.proposal), cfg.params(), sw)   # jitted: not ~60 op-by-op compiles
    q = np.asarray(q)
    needs = (q != SILENCE).any(-1)
    assert needs.sum() > N // 2
    np.testing.assert_array_equal(np.asarray(out.clips.missing), needs)
    assert not np.asarray(out.clips.valid)[needs].any()
    assert np.isnan(np.asarray(out.clips.score)[needs]).all()
    mk = np.asarray(out.clips.missing_keys)
    np.testing.assert_array_equal(mk[:, 0], np.where(needs, entry_key(0, q), MISSING_KEY))
    assert (mk[:, 1:] == MISSING_KEY).all()      # second pass unknown until the first is cached
    miss = R.missing_by_clip(out.clips)
    assert set(miss) == set(np.nonzero(needs)[0].tolist())
    # after one fill round the first pass is there; the replay then asks for second-pass tuples only
    before = world.cache()
    prep1 = R.prepare(before, sw)
    world.add(miss)
    after = world.cache()
    prep2 = R.prepare(after, sw)
    out2 = R.replay(cfg.params(), prep2, sw)
    # the sweep re-prepares only the clips a fill changed: exactly those, and the result is bitwise the
    # whole cache prepared again
    rows = R.changed_clips(before, after)
    np.testing.assert_array_equal(rows, sorted(miss))
    again = R.reprepare(prep1, after, sw, rows)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(prep2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert R.changed_clips(before, world.cache(min_entries=8)) is None      # another entry count: afresh
    mk2 = np.asarray(out2.clips.missing_keys)
    assert (mk2[:, 0] == MISSING_KEY).all() and (mk2[:, 1] != MISSING_KEY).any()


def test_vmap_over_configs_and_totals():
    world = SyntheticWorld(N, seed=5)
    cfgs = [dataclasses.replace(preset("system1"), solo4=s, verify=(v,) * 18, energy_db=-100.0, gate=(0.0,) * 18)
            for s in (0.2, 0.5) for v in (0.05, 0.3)]
    sw = cfgs[0].switches()
    for c in cfgs:
        complete(world, c)
    prep = R.prepare(world.cache(), sw)
    params = stack_params([c.params() for c in cfgs])
    many = R.replay_configs(params, prep, sw)
    weights = np.stack([np.ones(N), np.arange(N) % 2 == 0]).astype(np.float32)
    tot = R.totals(params, prep, jnp.asarray(weights), sw)
    means = R.mean_score(tot)
    for i, c in enumerate(cfgs):
        one = R.replay(c.params(), prep, sw)
        np.testing.assert_array_equal(np.asarray(many.clips.labels[i]), np.asarray(one.clips.labels))
        s = np.asarray(one.clips.score, np.float64)
        assert abs(means[i, 0] - np.nanmean(s)) < 1e-5
        assert abs(means[i, 1] - np.nanmean(s[::2])) < 1e-5
        assert int(tot.scored[i, 0]) == int(np.asarray(one.clips.valid).sum())
    assert np.ptp(means[:, 0]) > 0.1     # the configs do differ


@pytest.mark.slow
def test_sharded_over_8_devices_equals_one_device(tmp_path):
    code = textwrap.dedent("""
        import dataclasses, json, numpy as np, jax
        from s5jax.replay import replay as R
        from s5jax.replay.planted import SyntheticWorld
        from s5jax.system.config import preset, stack_params
        assert len(jax.devices()) == 8
        world = SyntheticWorld(37, seed=6)
        cfgs = [dataclasses.replace(preset("system3"), solo4=s, energy_db=e)
                for s in (0.2, 0.4, 0.6) for e in (-50.0, -30.0, -10.0)]
        sw = cfgs[0].switches()
        params = stack_params([c.params() for c in cfgs])
        for _ in range(6):           # fill what the 9 configs reach, all replayed in one call per round
            m = R.missing_entries(params, R.prepare(world.cache(), sw), sw)
            if not m: break
            world.add(m)
        prep = R.prepare(world.cache(), sw)
        w = np.ones((1, 37), np.float32)
        res = {}
        for cax in (1, 2, 8):
            t = R.ShardedReplay(prep, sw, config_axis=cax)(params, w)
            res[cax] = R.mean_score(t)[:, 0].tolist()
        one = R.ShardedReplay(prep, sw, devices=jax.devices()[:1])(params, w)
        res["one"] = R.mean_score(one)[:, 0].tolist()
        res["plain"] = R.mean_score(R.totals(params, prep, w, sw))[:, 0].tolist()
        print(json.dumps(res))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    res = json.loads(r.stdout.strip().splitlines()[-1])
    one = np.array(res["one"])
    assert np.isfinite(one).all() and np.ptp(one) > 0.1
    for cax in ("1", "2", "8", "plain"):
        np.testing.assert_allclose(res[cax], one, atol=1e-5)


def test_sharded_replay_in_chunks_equals_one_program():
    """More configs than one call takes (`chunk`, CONFIG_CHUNK by default; 16 here, every call padded
    to it as the search's Evaluator runs it: one compiled program) go in chunks; the totals equal one
    plain `totals` over all configs, and new weights are not served from the previous call's (the
    runner keeps the last weights it placed)."""
    world = SyntheticWorld(37, seed=8)
    base = dataclasses.replace(preset("system1"), energy_db=-100.0)
    sw = base.switches()
    rng = np.random.default_rng(0)
    chunk = 16
    c = 2 * chunk + 6             # two full chunks and a padded one
    cfgs = [dataclasses.replace(base, solo4=float(s), verify=(float(v),) * 18)
            for s, v in zip(rng.choice([0.2, 0.5], c), rng.choice([0.05, 0.3, 0.9], c))]
    for cfg in {(x.solo4, x.verify[0]): x for x in cfgs}.values():
        complete(world, cfg)
    prep = R.prepare(world.cache(), sw)
    params = stack_params([x.params() for x in cfgs])
    runner = R.ShardedReplay(prep, sw, chunk=chunk, least_configs=chunk)
    programs = R._sharded_totals(runner.mesh, sw)._cache_size()
    assert [R.config_bucket(n) for n in (1, 3, 100, 128, 129, 1000, R.CONFIG_CHUNK)] == [1, 4, 128, 128, 256, 1024, 1024]
    # two clip groupings of the same shape (one compiled program each for the runner and `totals`),
    # different values: the second call must not reuse the first's placed weights
    for weights in (np.stack([np.ones(37), np.arange(37) % 2 == 0]).astype(np.float32),
                    np.stack([np.arange(37) % 3 == 0, np.arange(37) < 20]).astype(np.float32)):
        got = runner(params, weights)
        want = R.totals(params, prep, jnp.asarray(weights), sw)
        for g, w in zip(got, want):
            assert g.shape == (c, weights.shape[0])
            np.testing.assert_allclose(g, np.asarray(w, np.float64), atol=1e-3)
        assert np.asarray(got.missing).sum() == 0 and np.ptp(R.mean_score(got)[:, 0]) > 0.1
    assert R._sharded_totals(runner.mesh, sw)._cache_size() - programs <= 1     # every chunk one program
