#!/usr/bin/env bash
# Reproduce the bundled models (s5jax/data/world/): make the world, train the four models with the
# committed configs, copy their best exports and training logs into the package.
#   bash train/world_recipe.sh            (≈ 70 min on 2 shared cores; the runs resume if interrupted)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/s5jax ] || bash scripts/setup.sh
. .venv/bin/activate
s5jax world make runs/world
# tagger4, tagger1 and separator_a are independent (they may also run side by side)
s5jax train tagger train/configs/world/tagger4.json
s5jax train tagger train/configs/world/tagger4_zero_target.json   # fine-tune of tagger4's best export
s5jax train tagger train/configs/world/tagger1.json
s5jax train tagger train/configs/world/tagger1_more.json        # 300 more steps from tagger1's best export
s5jax train separator train/configs/world/separator_a.json
s5jax train separator train/configs/world/separator_b.json      # a light fine-tune of A's best export
dest=s5jax/data/world
for pair in tagger4_zero_target:tagger-4ch tagger1_more:tagger-1ch separator_a:separator-a separator_b:separator-b; do
  run=${pair%%:*}; name=${pair##*:}
  rm -rf "$dest/$name"
  cp -r "runs/world_train/$run/export/best" "$dest/$name"
done
mkdir -p "$dest/training"
for run in tagger4 tagger4_zero_target tagger1 tagger1_more separator_a separator_b; do
  cp "runs/world_train/$run/log.jsonl" "$dest/training/$run.log.jsonl"
done
python train/world_curves.py runs/world_train "$dest/training/curves.png"
echo "bundled models written to $dest"
