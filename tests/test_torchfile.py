"""The torch-free reader on what real Lightning/M2D files hold besides tensors."""
import collections
import pathlib

import numpy as np

from conftest import require_torch
from s5jax.official.convert import read_state_dict
from s5jax.official.torchfile import Opaque, load_torch_file


def test_real_lightning_extras_load_inert(tmp_path):
    torch = require_torch()
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    obj = {
        "state_dict": collections.OrderedDict([("model.w", w), ("model.n", torch.tensor(3))]),
        "hyper_parameters": {"root": pathlib.PurePosixPath("/data/dev_set"),
                             "counts": collections.defaultdict(int, {"a": 1}),
                             "size": torch.Size([2, 3]), "dev": torch.device("cpu")},
        "loops": {"x": [1, 2, {"y": torch.zeros(2, dtype=torch.float16)}]},
        "param": torch.nn.Parameter(torch.ones(2, 2)),                      # a tensor subclass
        "bf16": torch.ones(3, dtype=torch.bfloat16),
    }
    path = tmp_path / "real.ckpt"
    torch.save(obj, path)
    got = load_torch_file(path)
    np.testing.assert_array_equal(got["state_dict"]["model.w"], w.numpy())
    assert got["state_dict"]["model.n"].shape == () and int(got["state_dict"]["model.n"]) == 3
    hp = got["hyper_parameters"]
    assert isinstance(hp["root"], Opaque) and hp["root"].name.endswith("PurePosixPath")
    assert isinstance(hp["counts"], Opaque) and hp["counts"]["a"] == 1      # items absorbed, nothing run
    np.testing.assert_array_equal(got["param"], np.ones((2, 2), np.float32))
    assert got["loops"]["x"][2]["y"].dtype == np.float16
    assert float(np.asarray(got["bf16"], np.float32).sum()) == 3.0
    assert read_state_dict(str(path)).keys() == {"model.w", "model.n"}


def test_conversion_never_imports_torch(tmp_path):
    """`s5jax convert` reads and converts an official checkpoint without torch (not even imported)."""
    import subprocess
    import sys

    from s5jax.synthetic_weights import write_synthetic_checkpoint

    ckpt = write_synthetic_checkpoint("separator", str(tmp_path / "sep.ckpt"))
    code = ("import sys; from s5jax.cli import main; rc = main(['convert', sys.argv[1], sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, ckpt, str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1000:]
    assert (tmp_path / "out" / "config.json").is_file()


def test_missing_torch_fails_under_ci(tmp_path):
    """With torch unimportable, a cross-check test is skipped normally and fails under CI=true."""
    import os
    import subprocess
    import sys

    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "torch.py").write_text("raise ModuleNotFoundError('No module named torch (blocked for this test)', name='torch')\n")
    test = tmp_path / "test_x.py"
    test.write_text("from conftest import require_torch\n\ndef test_x():\n    require_torch()\n")
    tests = os.path.dirname(os.path.abspath(__file__))
    for ci, expect in (("", "1 skipped"), ("true", "1 failed")):
        env = dict(os.environ, CI=ci, PYTHONPATH=os.pathsep.join([str(tmp_path / "block"), tests,
                                                                 os.environ.get("PYTHONPATH", "")]))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test),
                            "--rootdir", str(tmp_path), "--confcutdir", str(tmp_path)],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
        assert expect in r.stdout, (ci, r.stdout[-800:])


def test_torch_cross_checks_are_required_in_ci():
    """Every torch cross-check goes through require_torch (fails under CI=true), and CI sets CI=true:
    a bare importorskip would let CI pass with the check skipped."""
    import pathlib
    import re

    tests = pathlib.Path(__file__).resolve().parent
    bare = [p.name for p in sorted(tests.glob("*.py"))
            if p.name != "conftest.py" and re.search(r"importorskip\(\s*['\"]torch['\"]", p.read_text())]
    assert bare == [], f"use conftest.require_torch() instead of a bare importorskip of torch in {bare}"
    run = (tests.parent / ".ci" / "run").read_text()
    assert re.search(r"^export CI=true$", run, re.M), ".ci/run must export CI=true"
    setup = (tests.parent / "scripts" / "setup.sh").read_text()
    assert "pip install -q torch" in setup
