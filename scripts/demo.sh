#!/usr/bin/env bash
# Set up (if needed) and run the main job: `s5jax demo` (synthetic scenes, synthetic-weight official
# checkpoints -> convert -> infer -> score -> resume). Outputs in runs/demo/ (or the folder given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
S5JAX_NO_TORCH=1 bash scripts/setup.sh
. .venv/bin/activate
s5jax demo --out "${1:-runs/demo}"
