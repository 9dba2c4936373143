"""Parity cost of `--precision`: relative error against the official outputs for each setting.

    python bench/precision_parity.py

Converts the tiny official checkpoints (tests/golden/*/tiny_lightning*.ckpt) and runs them at
precision highest / high / default on this machine's default backend. On CPU, XLA computes float32
matmuls and convolutions in float32 whatever the setting, so all three agree; on GPU 'high'/'default'
allow TF32/bf16 passes and the table shows what that costs.
"""
from __future__ import annotations

import pathlib
import sys
import tempfile

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from s5jax.official.convert import convert_checkpoint  # noqa: E402
from s5jax.separator import Separator  # noqa: E402
from s5jax.tagger import Tagger  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    sys.path.insert(0, str(GOLDEN))
    import synth

    tg = np.load(GOLDEN / "m2d" / "tiny_1c_golden.npz")
    sg = np.load(GOLDEN / "resunet" / "tiny_golden.npz")
    with tempfile.TemporaryDirectory() as tmp:
        convert_checkpoint(str(GOLDEN / "m2d" / "tiny_lightning_1c.ckpt"), f"{tmp}/t", overrides={"num_heads": 4})
        convert_checkpoint(str(GOLDEN / "resunet" / "tiny_lightning.ckpt"), f"{tmp}/s", overrides={"hop": 40})
        wav_t = synth.synth_waveform(int(tg["seeds"][0]), 4, float(tg["seconds"][0]))[None]
        wav_s = synth.synth_waveform(int(sg["seeds"][0]), 4, float(sg["seconds"][0]))[None]
        print(f"backend: {jax.default_backend()}")
        print("| precision | tagger logits rel. err | labels equal | separator stems rel. err |")
        print("|---|---|---|---|")
        for p in ("highest", "high", "default"):
            tagger = Tagger.from_checkpoint(f"{tmp}/t", precision=p)
            sep = Separator.from_checkpoint(f"{tmp}/s", precision=p)
            pred = tagger.predict(wav_t)
            logits = np.asarray(tagger(wav_t))[0]
            stems = np.asarray(sep.separate_vector(wav_s, sg["case0_label_vector"][None]))[0]
            same = bool(np.array_equal(np.asarray(pred.labels)[0], tg["case0_pred_index"]))
            print(f"| {p} | {rel(logits, tg['case0_logits']):.2e} | {same} | "
                  f"{rel(stems[:2], sg['case0_stems'][:2]):.2e} |")


if __name__ == "__main__":
    main()
