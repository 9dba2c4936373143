"""Shared test fixtures: the golden folder, official-format checkpoints written from synthetic weights."""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A copy of ../shared/golden (outputs of the official PyTorch code) lives in the repo so a fresh clone tests alone.
GOLDEN = pathlib.Path(os.environ.get("S5JAX_GOLDEN", ROOT / "tests" / "golden"))


def load_synth():
    """The golden folder's synth.py (numpy-only generator of weights and signals)."""
    spec = importlib.util.spec_from_file_location("golden_synth", GOLDEN / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def golden_state_dict(folder: str, manifest: str, fixed: str) -> dict[str, np.ndarray]:
    synth = load_synth()
    with open(GOLDEN / folder / manifest) as f:
        man = json.load(f)
    fx = dict(np.load(GOLDEN / folder / fixed))
    return synth.synth_state_dict(man, fx)


def write_lightning_ckpt(state_dict: dict, path, extra: bool = True) -> str:
    """Write `state_dict` as an official Lightning checkpoint (with the non-weight entries a real one has)."""
    from s5jax.torchfile import save_torch_file

    obj = {"state_dict": state_dict}
    if extra:
        obj.update({
            "epoch": 42, "global_step": 1234, "pytorch-lightning_version": "2.4.0",
            "optimizer_states": [{"state": {0: {"step": np.zeros((), np.float32),
                                                "exp_avg": np.zeros(3, np.float32)}},
                                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": True}]}],
            "lr_schedulers": [], "loops": {"fit_loop": {"state_dict": {}}}, "callbacks": {},
            "hyper_parameters": {"lr": 1e-3, "batch_size": 32},
        })
    save_torch_file(obj, str(path))
    return str(path)


@pytest.fixture(scope="session")
def golden():
    if not GOLDEN.is_dir():
        pytest.fail(f"golden folder not found at {GOLDEN} (set S5JAX_GOLDEN)")
    return GOLDEN


def forced_tagger(src: str, out: str, classes) -> str:
    """A copy of the tagger checkpoint `src` whose track t always predicts `classes[t]` (18 = silence):
    a large bias on that class in each track's last layer. Deterministic labels for end-to-end tests."""
    from s5jax import checkpoint

    kind, config, variables = checkpoint.load(src)
    for t, c in enumerate(classes):
        bias = variables["params"]["head"][f"tracks_{t}_3"]["bias"]
        bias[...] = 0.0
        bias[c] = 1e4
    checkpoint.save(out, kind, config, variables, source=f"{src} (forced {list(classes)})")
    return out


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """The tiny official checkpoints (golden/*/tiny_lightning*.ckpt) converted by `s5jax convert`, and
    forced-label variants of the tagger: {"tagger", "separator", "forced", "forced_other"}."""
    from s5jax.cli import main

    root = tmp_path_factory.mktemp("tiny_ckpt")
    assert main(["convert", str(GOLDEN / "m2d" / "tiny_lightning_1c.ckpt"), str(root / "tagger"),
                 "--set", "num_heads=4"]) == 0
    assert main(["convert", str(GOLDEN / "resunet" / "tiny_lightning.ckpt"), str(root / "separator"),
                 "--set", "hop=40"]) == 0
    return {"tagger": str(root / "tagger"), "separator": str(root / "separator"),
            "forced": forced_tagger(str(root / "tagger"), str(root / "forced"), (18, 3, 15)),
            "forced_other": forced_tagger(str(root / "tagger"), str(root / "forced_other"), (5, 18, 9))}
