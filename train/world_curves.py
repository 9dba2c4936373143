"""Plot the bundled models' training curves (log.jsonl of each run) into one PNG.

    python train/world_curves.py runs/world_train s5jax/data/world/training/curves.png
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = (("tagger4", "4-ch tagger"), ("tagger4_zero_target", "4-ch tagger, zero-target fine-tune"),
        ("tagger1", "1-ch tagger"), ("tagger1_more", "1-ch tagger, continued"), ("separator_a", "separator A"),
        ("separator_b", "separator B (fine-tune of A)"))


def main(runs: str, png: str) -> None:
    fig, axes = plt.subplots(2, len(RUNS), figsize=(4 * len(RUNS), 6), squeeze=False)
    for j, (name, title) in enumerate(RUNS):
        path = os.path.join(runs, name, "log.jsonl")
        if not os.path.isfile(path):
            continue
        rows = [json.loads(r) for r in open(path) if r.strip()]
        tr = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
        va = [(r["step"], r["valid/valid_loss"]) for r in rows if "valid/valid_loss" in r]
        ax = axes[0, j]
        ax.plot(*zip(*tr), lw=0.8, label="train") if tr else None
        ax.plot(*zip(*va), "o-", label="valid") if va else None
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax = axes[1, j]
        key, unit = (("valid/ca_sdri", "valid CA-SDRi (dB, oracle queries)") if name.startswith("separator")
                     else ("valid/accuracy_mixture", "valid mixture accuracy (%)"))
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-")
        ax.set_xlabel("step")
        ax.set_ylabel(unit)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=80)


if __name__ == "__main__":
    main(*sys.argv[1:3])
