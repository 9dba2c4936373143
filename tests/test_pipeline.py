"""The pure pieces of the baseline pipeline: silence-last ordering and query vectors."""
import jax.numpy as jnp
import numpy as np

from s5jax.separator import query_vector
from s5jax.system.pipeline import silence_last


def test_silence_last_is_stable_and_moves_companions():
    labels = jnp.array([[18, 3, 18], [5, 18, 5], [18, 18, 18], [1, 2, 0]])
    probs = jnp.array([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.3, 0.2, 0.1]])
    soft = jnp.arange(4 * 3 * 19, dtype=jnp.float32).reshape(4, 3, 19)
    l2, p2, s2 = silence_last(labels, probs, soft)
    np.testing.assert_array_equal(l2, [[3, 18, 18], [5, 5, 18], [18, 18, 18], [1, 2, 0]])
    np.testing.assert_allclose(p2, [[0.8, 0.9, 0.7], [0.1, 0.3, 0.2], [0.5, 0.6, 0.7], [0.3, 0.2, 0.1]])
    np.testing.assert_array_equal(s2[0, 0], soft[0, 1])
    np.testing.assert_array_equal(s2[1, 1], soft[1, 2])


def test_query_vector_one_hot_and_silence_zero():
    q = np.asarray(query_vector(jnp.array([[3, 15, 18], [15, 15, 0]])))
    assert q.shape == (2, 54)
    expect = np.zeros((2, 54), np.float32)
    expect[0, 3] = expect[0, 18 + 15] = 1
    expect[1, 15] = expect[1, 18 + 15] = expect[1, 36 + 0] = 1
    np.testing.assert_array_equal(q, expect)
