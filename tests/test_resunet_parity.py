"""The full-size separator against the official PyTorch code's outputs (golden/resunet): official
state_dict -> its kind detected from the keys -> `s5jax convert`'s conversion -> Separator. What the
command adds around the conversion (the .ckpt read, the folder written and loaded) is the same code at
any size, run here on the tiny official checkpoint (test_explicit_kind_converts_as_the_detected_one)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import compare_separator_case, load_synth, traced_separator, write_lightning_ckpt
from s5jax import checkpoint
from s5jax.cli import main
from s5jax.errors import CheckpointError
from s5jax.official.convert import convert_state_dict, detect_kind
from s5jax.official.resunet import convert_separator_state_dict
from s5jax.separator import Separator

TOL = 1e-4


def _rel(ours, ref):
    return np.linalg.norm(ours - ref) / np.linalg.norm(ref)


@pytest.fixture(scope="module")
def state_dict(golden_weights):
    return golden_weights("resunet", "manifest.json", "fixed.npz")


@pytest.fixture(scope="module")
def separator(state_dict):
    """The full-size state_dict converted once in this process, its kind detected from the keys (through
    the files, `s5jax convert` + Separator.from_checkpoint, it took 10 s more; an explicit `--kind
    separator` gives the same folder as the detected kind: test_explicit_kind_converts_as_the_detected_one,
    on the tiny official checkpoint)."""
    kind = detect_kind(state_dict)
    assert kind == "separator"
    config, variables = convert_state_dict(state_dict, kind, "golden separator")
    return Separator(Separator.CONFIG.from_dict(config), variables, kind)


@pytest.fixture(scope="module")
def program(separator):
    """One jitted program of the full-size separator for both checks of each golden length."""
    return traced_separator(separator)


def test_explicit_kind_converts_as_the_detected_one(golden, tmp_path):
    ckpt = str(golden / "resunet" / "tiny_lightning.ckpt")
    assert main(["convert", ckpt, str(tmp_path / "auto"), "--set", "hop=40"]) == 0
    assert main(["convert", ckpt, str(tmp_path / "explicit"), "--kind", "separator", "--set", "hop=40"]) == 0
    (kind_a, config_a, var_a), (kind_b, config_b, var_b) = (checkpoint.load(tmp_path / n) for n in ("auto", "explicit"))
    assert kind_a == kind_b == "separator" and config_a == config_b
    assert checkpoint.identity(tmp_path / "auto")["sha256"] == checkpoint.identity(tmp_path / "explicit")["sha256"]
    leaves_a, leaves_b = _leaves(var_a), _leaves(var_b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)


def _leaves(tree):
    import jax

    return [np.asarray(v) for v in jax.tree.leaves(tree)]


@pytest.mark.slow
@pytest.mark.parametrize("case", [0, 1])
def test_every_golden_field(separator, program, golden, case, monkeypatch):
    """stems, STFT magnitude, source mask, conditions, FiLM betas, bottleneck, head logits and ISTFT
    inputs (see conftest.compare_separator_case), and the user call (class ids) against the golden stems.
    The user call runs Separator.__call__ (input checks, class ids -> query vector) on the program the
    fields were read from (`apply_fn` traced, conftest.traced_separator): the same compile, not a
    second full-size one of the same shape; and not a second run either when the user call hands the
    program the very inputs the field comparison gave it (the golden's mixture and query vector, so
    the same outputs): a full-size run at 4 s is seconds of the suite. Any other inputs are run."""
    g = dict(np.load(golden / "resunet" / "golden.npz"))
    ran = []

    def remembered(*args):
        ran.append((args, program(*args)))
        return ran[-1][1]

    errors = compare_separator_case(separator, g, case, program=remembered)
    assert len(errors) >= 8 + 32 and len(ran) == 1
    mix = load_synth().synth_waveform(int(g["seeds"][case]), 4, float(g["seconds"][case]))[None]
    queries = g["queries"][case][None]
    calls = []

    def user_call(*args):
        calls.append(args)
        (variables, *inputs), outputs = ran[0]
        if args[0] is variables and all(np.array_equal(a, b) for a, b in zip(args[1:], inputs, strict=True)):
            return outputs[0]
        return program(*args)[0]

    monkeypatch.setattr(separator, "_jitted", user_call)
    stems = np.asarray(separator(mix, queries))[0]
    assert len(calls) == 1
    ref = g[f"case{case}_stems"]
    for slot, cls in enumerate(queries[0]):
        if cls == 18:
            assert np.all(stems[slot] == 0) and np.all(ref[slot] == 0)
        else:
            assert _rel(stems[slot], ref[slot]) <= TOL, f"slot {slot} (class {cls})"


def _window_path(separator, samples: int) -> list[int]:
    """In order, how many time windows each 3x3 convolution block of the separator runs in
    (models.resunet.time_windows: the only branch of the model on the input's length) for a
    [1, 4, samples] mixture: traced abstractly (jax.eval_shape, nothing compiled or computed)."""
    import jax

    from s5jax.models import resunet

    seen, real = [], resunet.time_windows

    def spy(frames: int, bins: int) -> int:
        seen.append(real(frames, bins))
        return seen[-1]

    resunet.time_windows = spy
    try:
        jax.eval_shape(separator.apply_fn, separator.variables,
                       jax.ShapeDtypeStruct((1, 4, samples), np.float32),
                       jax.ShapeDtypeStruct((1, separator.config.query_dim), np.float32))
    finally:
        resunet.time_windows = real
    return seen


def test_dcase_length_takes_the_path_of_the_golden_cases(separator, golden):
    """A 10 s clip (the DCASE length) runs the code the golden cases (4 and 2.5 s, compared field by
    field above) run: the full-resolution level in time windows, every lower level whole. What a
    full-size 10 s comparison with the PyTorch port checked (30 s in the suite, test_torch_port),
    the goldens check on the same path; this says the path is the same."""
    g = np.load(golden / "resunet" / "golden.npz")
    ten = _window_path(separator, 10 * 32000)
    assert len(ten) >= 10 and resunet_windows() in ten and 1 in ten       # windowed and whole blocks
    for seconds in g["seconds"]:
        assert _window_path(separator, int(round(float(seconds) * 32000))) == ten, float(seconds)
    assert _window_path(separator, 9610) == [1] * len(ten)                 # a short clip: none windowed


def resunet_windows() -> int:
    from s5jax.models import resunet

    return resunet.TIME_WINDOWS


def _one_hot(queries):
    from s5jax.separator import query_vector

    return np.asarray(query_vector(queries))


def _stripped(sd):
    return {k[len("model."):]: v for k, v in sd.items()}


def test_wrong_stft_kernel_is_rejected(state_dict, tmp_path, capsys):
    bad = dict(state_dict)
    bad["model.base.stft.conv_real.weight"] = bad["model.base.stft.conv_real.weight"] * 1.01
    with pytest.raises(CheckpointError, match="stft_real.*differs from our front end"):
        convert_separator_state_dict(_stripped(bad), "bad.ckpt")
    # and through the CLI: one line, exit status 2, no folder written
    path = write_lightning_ckpt(bad, tmp_path / "bad.ckpt", extra=False)
    assert main(["convert", path, str(tmp_path / "out")]) == 2
    assert "differs from our front end" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["base.encoder_block3.conv_block1.bn2.running_var",
                                 "film.decoder_block2->conv_block2->beta1.bias",
                                 "base.pre_conv.weight", "base.istft.ola_window"])
def test_removed_key_is_named(state_dict, key):
    bad = _stripped(state_dict)
    del bad[key]
    with pytest.raises(CheckpointError) as e:
        convert_separator_state_dict(bad, "cut.ckpt")
    assert repr(key) in str(e.value) and "cut.ckpt" in str(e.value)


def test_unknown_key_is_named(state_dict):
    bad = _stripped(state_dict)
    bad["base.extra_block.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match="base.extra_block.weight"):
        convert_separator_state_dict(bad, "extra.ckpt")
