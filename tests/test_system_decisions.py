"""Each decision rule of the refined system on hand-made probabilities; the config's JSON strictness."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s5jax.labels import SILENCE
from s5jax.system.pipeline import silence_last
from s5jax.system import decisions as D
from s5jax.system.config import ConfigError, SystemConfig, load_system, preset, stack_params
from s5jax.tagger import predict_from_logits

S = SILENCE


def softmax_rows(*tracks):
    """tracks: (class, prob) per track; the rest of the mass spread evenly -> P [3, 19]."""
    P = np.zeros((3, 19), np.float32)
    for j, (c, p) in enumerate(tracks):
        P[j] = (1.0 - p) / 18
        P[j, c] = p
    return P


def fuse(P1, P4, cfg):
    sw = cfg.switches()
    return D.fuse(D.proposals(P1, sw.proposal), D.proposals(P4, sw.proposal), cfg.params(), sw)


SYS = dataclasses.replace(preset("system1"), w1=0.4, w4=0.6, solo1=0.8, solo4=0.5)


def test_fusion_pairs_same_class_and_keeps_duplicates():
    # both taggers propose Speech (15) twice: two pairs, rank by rank; 4-ch also Cough (5) solo 0.55
    P1 = softmax_rows((15, 0.9), (15, 0.6), (3, 0.7))          # Buzzer 0.7 < solo1 0.8: dropped
    P4 = softmax_rows((15, 0.5), (5, 0.55), (15, 0.8))
    q, conf = fuse(P1, P4, SYS)
    # pairs: (0.9, 0.8) -> 0.36 + 0.48 = 0.84; (0.6, 0.5) -> 0.24 + 0.30 = 0.54; Cough solo 0.55
    np.testing.assert_array_equal(q, [15, 5, 15])
    np.testing.assert_allclose(conf, [0.84, 0.55, 0.54], atol=1e-6)


def test_fusion_all_silence_gives_all_silent_queries():
    P = softmax_rows((S, 0.9), (S, 0.8), (S, 0.7))
    q, conf = fuse(P, P, SYS)
    np.testing.assert_array_equal(q, [S, S, S])
    np.testing.assert_array_equal(conf, [0, 0, 0])


def test_fusion_one_tagger_silent_uses_solo_thresholds():
    P1 = softmax_rows((S, 0.9), (S, 0.9), (S, 0.9))
    P4 = softmax_rows((7, 0.6), (S, 0.9), (2, 0.4))             # Blender 0.4 < solo4 0.5
    q, conf = fuse(P1, P4, SYS)
    np.testing.assert_array_equal(q, [7, S, S])
    np.testing.assert_allclose(conf, [0.6, 0, 0], atol=1e-7)
    # the 1-ch alone: 0.85 passes solo1 0.8, 0.75 does not; weighted solo confidence w1·p
    P1 = softmax_rows((9, 0.85), (4, 0.75), (S, 0.5))
    P4 = softmax_rows((S, 0.9), (S, 0.9), (S, 0.9))
    q, conf = fuse(P1, P4, dataclasses.replace(SYS, solo_conf="weighted"))
    np.testing.assert_array_equal(q, [9, S, S])
    np.testing.assert_allclose(conf, [0.4 * 0.85, 0, 0], atol=1e-7)


def test_fusion_ties_lower_class_first_then_four_channel():
    P1 = softmax_rows((11, 0.9), (S, 0.9), (S, 0.9))
    P4 = softmax_rows((12, 0.9), (10, 0.9), (12, 0.9))
    cfg = dataclasses.replace(SYS, solo1=0.5, solo4=0.5)
    q, conf = fuse(P1, P4, cfg)   # all confidence 0.9: classes 10, 11, 12 (lower id first)
    np.testing.assert_array_equal(q, [10, 11, 12])
    # same class from both taggers but unpaired (4-ch has it at rank 1 only... make 1-ch have 2 of 12)
    P1 = softmax_rows((12, 0.9), (12, 0.9), (12, 0.9))
    P4 = softmax_rows((12, 0.9), (S, 0.9), (S, 0.9))
    q, conf = fuse(P1, P4, dataclasses.replace(cfg, w1=0.5, w4=0.5))
    np.testing.assert_array_equal(q, [12, 12, 12])
    np.testing.assert_allclose(conf, [0.9, 0.9, 0.9], atol=1e-6)


def test_track_order_and_best_nonsilence():
    P1 = softmax_rows((S, 0.9), (S, 0.9), (S, 0.9))
    P4 = softmax_rows((3, 0.6), (S, 0.5), (1, 0.9))
    cfg = dataclasses.replace(SYS, order="track")
    np.testing.assert_array_equal(fuse(P1, P4, cfg).queries, [3, 1, S])
    np.testing.assert_array_equal(fuse(P1, P4, dataclasses.replace(SYS, order="confidence")).queries, [1, 3, S])
    # best_nonsilence: the silent track still proposes its best class (prob (1-0.5)/18 < solo4: dropped)
    p = D.proposals(P4, "best_nonsilence")
    assert bool(p.ok.all()) and int(p.classes[1]) == 0


def test_baseline_equals_todays_pipeline_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 3, 19)).astype(np.float32)
    logits[:, :, S] += rng.choice([0, 3], size=(500, 3))      # many silent tracks
    logits[::7, 1] = logits[::7, 0]                          # duplicate classes
    labels, _, softmax = silence_last(*predict_from_logits(jnp.asarray(logits)))
    sm = jax.nn.softmax(jnp.asarray(logits), axis=-1)
    base = preset("baseline")
    q, _ = fuse(jnp.zeros_like(sm), sm, base)
    np.testing.assert_array_equal(q, labels)


def test_confirmation_refine_select_gates():
    retag = np.full((3, 3, 19), 0.01, np.float32)
    retag[0, 2, 4] = 0.7      # slot 0 (class 4) confirmed on track 2
    retag[1, 0, 6] = 0.2      # slot 1 (class 6) weakly
    retag[1, 0, 9] = 0.5      #   but track 0's argmax is 9
    q = jnp.array([4, 6, S])
    r = D.confirmation(retag, q, "max_prob")
    np.testing.assert_allclose(r, [0.7, 0.2, 0.0], atol=1e-7)
    np.testing.assert_array_equal(D.confirmation(retag, q, "argmax"), [1.0, 0.0, 0.0])
    params = SYS.params()
    # slot 1: r 0.2 < verify 0.3 and conf 0.5 < drop 0.6 -> dropped; slot 0 kept
    (q2, c2), dropped = D.refine(q, jnp.array([0.5, 0.5, 0.0]), r, params)
    np.testing.assert_array_equal(q2, [4, S, S])
    np.testing.assert_array_equal(dropped, [False, True, False])
    # confident slot is kept although unconfirmed; the order moves up
    (q2, c2), _ = D.refine(jnp.array([6, 4, S]), jnp.array([0.5, 0.65, 0]), jnp.array([0.2, 0.1, 0]), params)
    np.testing.assert_array_equal(q2, [4, S, S])
    np.testing.assert_allclose(c2, [0.65, 0, 0])
    # selection: strictly greater confirmation picks B; ties keep A
    np.testing.assert_array_equal(D.select_b(jnp.array([0.5, 0.5, 0.9]), jnp.array([0.6, 0.5, 1.0]),
                                             jnp.array([1, 2, S])), [True, False, False])
    # gates (both on in system1): energy -40 < -30 dB and conf 0.2 < gate 0.3
    sw = SYS.switches()
    g = D.gates(jnp.array([1, 2, 3]), jnp.array([0.9, 0.2, 0.9]), jnp.array([-40.0, 0.0, -10.0]), params, sw)
    np.testing.assert_array_equal(g, [True, True, False])


def test_finalize_gate_before_or_after_select():
    cfg = dataclasses.replace(preset("system3"), energy_db=-30.0)
    q, conf = jnp.array([1, 2, S]), jnp.array([0.9, 0.9, 0.0])
    r_a, r_b = jnp.array([0.5, 0.5, 0]), jnp.array([0.9, 0.1, 0])
    e_a, e_b = jnp.array([-40.0, -10.0, 0]), jnp.array([-10.0, -50.0, 0])
    f = D.finalize(q, conf, r_a, r_b, e_a, e_b, cfg.params(), cfg.switches())
    np.testing.assert_array_equal(f.labels, [1, 2, S])        # slot 0 takes B's loud stem
    np.testing.assert_array_equal(f.use_b, [True, False, False])
    cfg = dataclasses.replace(cfg, gate_before_select=True)
    f = D.finalize(q, conf, r_a, r_b, e_a, e_b, cfg.params(), cfg.switches())
    np.testing.assert_array_equal(f.labels, [S, 2, S])        # A's quiet stem gated first
    np.testing.assert_array_equal(f.use_b, [False, False, False])


def test_per_class_thresholds_and_vmap_over_configs():
    base = preset("system2")
    gate = np.full(18, 0.3)
    gate[2] = 0.95
    cfgs = [base, dataclasses.replace(base, gate=tuple(gate))]
    params = stack_params([c.params() for c in cfgs])
    sw = base.switches()
    fn = jax.vmap(lambda p: D.gates(jnp.array([1, 2, 3]), jnp.array([0.9, 0.9, 0.9]), jnp.zeros(3), p, sw))
    np.testing.assert_array_equal(fn(params), [[False, False, False], [False, True, False]])


def test_config_json_roundtrip_and_presets(tmp_path):
    for name in ("baseline", "system1", "system2", "system3"):
        cfg = preset(name)
        p = tmp_path / f"{name}.json"
        p.write_text(cfg.to_json())
        assert SystemConfig.load(p) == cfg == load_system(str(p))
    gate = [0.1 * (i % 5) for i in range(18)]
    cfg = dataclasses.replace(preset("system2"), gate=tuple(gate))
    assert SystemConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.with_params(cfg.params()) == dataclasses.replace(cfg, gate=tuple(round(g, 6) for g in gate))
    assert hash(cfg.switches()) == hash(preset("system1").switches())


@pytest.mark.parametrize("body, needle", [
    ('{"w1": 0.5, "bogus": 1}', "unknown key 'bogus'"),
    ('{"w1": 7}', "key 'w1': value 7.0 out of range"),
    ('{"gate": [0.1, 0.2]}', "key 'gate': expected one number or a list of 18"),
    ('{"order": "random"}', "key 'order': 'random' is not one of"),
    ('{"refine": 1}', "key 'refine': expected true or false"),
    ('{"energy_db": NaN}', "not valid JSON"),
    ('{"verify": "high"}', "key 'verify': expected a number"),
    ('[1, 2]', "must be a JSON object"),
])
def test_bad_config_json_one_line_error(tmp_path, body, needle):
    p = tmp_path / "bad.json"
    p.write_text(body)
    with pytest.raises(ConfigError) as e:
        SystemConfig.load(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


# -- every threshold on its boundary (reference/refined_system.md) ---------------------------------
# The expected labels are written by hand from the spec's comparisons:
#   §1 a one-tagger proposal is kept iff p >= solo_t              (on the threshold: kept)
#   §2 a slot is dropped iff r < verify[c] and conf < drop[c]     (either one on its threshold: kept)
#   §3 B's stem iff r^B > r^A                                     (equal: A's)
#   §4 energy < energy_db -> silence; conf < gate[c] -> silence   (on the threshold: kept)
# Thresholds are float32 in the system: "on" is the same float32, "below/above" one float32 ulp away.
# The per-class thresholds of the tested class 4 differ from every other class's, so a lookup of
# the wrong class shows too.
def _pc(value_for_4, others):
    return tuple(value_for_4 if c == 4 else others for c in range(18))


BOUND = dataclasses.replace(preset("system1"), w1=0.5, w4=0.5, solo1=0.8, solo4=0.3, energy_db=-30.0,
                            verify=_pc(0.35, 0.9), drop=_pc(0.65, 0.1), gate=_pc(0.45, 0.05))
BOUND3 = dataclasses.replace(BOUND, separator_b=True)     # select, then gate the kept stem
ON, BELOW, ABOVE = "on", "below", "above"


def at(x, where):
    x = np.float32(x)
    return {ON: x, BELOW: np.nextafter(x, np.float32(-np.inf)), ABOVE: np.nextafter(x, np.float32(np.inf))}[where]


SILENT = softmax_rows((S, 1.0), (S, 1.0), (S, 1.0))


@pytest.mark.parametrize("where, expected", [(ON, [7, S, S]), (BELOW, [S, S, S]), (ABOVE, [7, S, S])])
def test_boundary_solo4(where, expected):
    # 4-ch track 0 proposes class 7 alone (the 1-ch tagger is silent) at p around solo4 = 0.3
    q, conf = fuse(SILENT, softmax_rows((7, at(0.3, where)), (S, 1.0), (S, 1.0)), BOUND)
    np.testing.assert_array_equal(q, expected)
    assert float(conf[0]) == (float(at(0.3, where)) if expected[0] == 7 else 0.0)    # solo_conf "prob"


@pytest.mark.parametrize("where, expected", [(ON, [9, S, S]), (BELOW, [S, S, S]), (ABOVE, [9, S, S])])
def test_boundary_solo1(where, expected):
    # 1-ch track 1 proposes class 9 alone (the 4-ch tagger is silent) at p around solo1 = 0.8
    q, _ = fuse(softmax_rows((S, 1.0), (9, at(0.8, where)), (S, 1.0)), SILENT, BOUND)
    np.testing.assert_array_equal(q, expected)


def _refine(q, conf, r):
    (q2, _), dropped = D.refine(jnp.array(q), jnp.array(conf, jnp.float32), jnp.array(r, jnp.float32),
                                BOUND.params())
    return np.asarray(q2), np.asarray(dropped)


@pytest.mark.parametrize("where, expected", [(ON, [4, 6, S]), (BELOW, [6, S, S]), (ABOVE, [4, 6, S])])
def test_boundary_verify(where, expected):
    # slot 0 (class 4): conf 0.2 < drop[4] 0.65, r around verify[4] = 0.35; slot 1 (class 6) confident
    q2, dropped = _refine([4, 6, S], [0.2, 0.9, 0.0], [at(0.35, where), 0.0, 0.0])
    np.testing.assert_array_equal(q2, expected)
    np.testing.assert_array_equal(dropped, [expected[0] != 4, False, False])


@pytest.mark.parametrize("where, expected", [(ON, [4, 6, S]), (BELOW, [6, S, S]), (ABOVE, [4, 6, S])])
def test_boundary_drop(where, expected):
    # slot 0 (class 4): unconfirmed (r 0 < verify[4]), conf around drop[4] = 0.65
    q2, _ = _refine([4, 6, S], [at(0.65, where), 0.9, 0.0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(q2, expected)


def _finalize(cfg, conf, energy_a, r_b=None, energy_b=None):
    f = D.finalize(jnp.array([4, 6, S]), jnp.array(conf, jnp.float32), jnp.array([0.5, 0.5, 0.0]),
                   None if r_b is None else jnp.array(r_b, jnp.float32), jnp.array(energy_a, jnp.float32),
                   None if energy_b is None else jnp.array(energy_b, jnp.float32), cfg.params(), cfg.switches())
    return np.asarray(f.labels), np.asarray(f.use_b)


@pytest.mark.parametrize("where, expected", [(ON, [4, 6, S]), (BELOW, [S, 6, S]), (ABOVE, [4, 6, S])])
def test_boundary_prob_gate(where, expected):
    labels, _ = _finalize(BOUND, [at(0.45, where), 0.9, 0.0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("where, expected", [(ON, [4, 6, S]), (BELOW, [S, 6, S]), (ABOVE, [4, 6, S])])
def test_boundary_energy_gate(where, expected):
    labels, _ = _finalize(BOUND, [0.9, 0.9, 0.0], [at(-30.0, where), 0.0, 0.0])
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("where, use_b, expected", [(ON, False, [4, 6, S]), (BELOW, False, [4, 6, S]),
                                                    (ABOVE, True, [S, 6, S])])
def test_boundary_select_b(where, use_b, expected):
    # r^A = 0.5 on both slots; slot 0's r^B around it.  B's stem of slot 0 is quiet (-40 dB < -30): when
    # it is selected, the gate silences the slot — the label shows which stem was kept.
    labels, ub = _finalize(BOUND3, [0.9, 0.9, 0.0], [0.0, 0.0, 0.0], r_b=[at(0.5, where), 0.2, 0.0],
                           energy_b=[-40.0, 0.0, 0.0])
    np.testing.assert_array_equal(labels, expected)
    assert bool(ub[0]) is False and not ub[1:].any()        # a gated slot uses no stem
    assert use_b == (expected[0] == S)
