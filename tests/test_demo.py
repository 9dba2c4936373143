"""`s5jax demo` end to end (through the library, as the CLI runs it): scenes, synthetic official
checkpoints, conversion, inference with scoring, then a re-run that only resumes."""
from __future__ import annotations

import json
import os

import pytest

from s5jax.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_resumes(tmp_path):
    lines = []
    assert run_demo(str(tmp_path), clips=2, batch_size=1, seconds=1.0, log=lines.append) == 0
    out = tmp_path / "infer"
    results = json.loads((out / "results.json").read_text())
    assert [r["soundscape"] for r in results["probabilities"]] == ["synth_0000", "synth_0001"]
    assert results["nparams"] > 100_000_000
    summary = json.loads((out / "scores" / "summary.json").read_text())
    assert summary["clips"] == 2 and not summary["skipped"]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["separator", "tagger-4ch"]
    assert "resumed 2 clip(s), processed 0" in lines
    assert [l.split("]")[0] for l in lines if l.startswith("[")] == [f"[{i}/5" for i in range(1, 6)]
