"""The tagger's attention forms (config `attention`): forced one by one on CPU, each really taken and
each equal to the others; "auto" is the head loop on CPU."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from s5jax.models.configs import M2DConfig
from s5jax.models.m2d import Attention

TINY = M2DConfig(embed_dim=64, num_heads=4, depth=1, mlp_dim=128, head_dim=96, track_dim=16)


@pytest.fixture(scope="module")
def setup():
    x = np.random.default_rng(0).standard_normal((2, 11, 64)).astype(np.float32)
    variables = jax.jit(Attention(dataclasses.replace(TINY, attention="loop")).init)(jax.random.PRNGKey(0), x)
    return x, variables


def _run(form, x, variables):
    module = Attention(dataclasses.replace(TINY, attention=form))
    jaxpr = str(jax.make_jaxpr(module.apply)(variables, x))
    return np.asarray(jax.jit(module.apply)(variables, x)), jaxpr


def test_every_form_gives_the_same_attention(setup):
    x, variables = setup
    ref, loop_jaxpr = _run("loop", x, variables)
    assert "scan" in loop_jaxpr                              # the heads one after another
    jaxprs = {"loop": loop_jaxpr}
    for form in ("batched", "dot_product"):
        out, jaxprs[form] = _run(form, x, variables)
        assert "scan" not in jaxprs[form], form
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert jaxprs["batched"] != jaxprs["dot_product"]        # two programs, not one path twice
    # a hand-made reference: softmax(q k^T / sqrt(hd)) v per head, in float64
    p = variables["params"]
    qkv = x.astype(np.float64) @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    q, k, v = (qkv.reshape(2, 11, 3, 4, 16)[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / 4.0
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    want = (a @ v).transpose(0, 2, 1, 3).reshape(2, 11, 64) @ p["proj"]["kernel"] + p["proj"]["bias"]
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5)


def test_auto_is_the_loop_on_cpu_and_a_bad_form_is_refused(setup):
    x, variables = setup
    assert jax.default_backend() == "cpu"
    assert TINY.attention == "auto" and TINY.attention_form == "loop"
    np.testing.assert_array_equal(_run("auto", x, variables)[0], _run("loop", x, variables)[0])
    with pytest.raises(ValueError, match="field 'attention'"):
        dataclasses.replace(TINY, attention="flash")
