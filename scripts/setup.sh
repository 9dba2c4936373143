#!/usr/bin/env bash
# Create .venv (if needed) and install s5jax with its test extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python -m pip install -q -e '.[test]'
# torch is only used by tests that cross-check our torch-free checkpoint reader/writer against
# torch.load; the library never imports it. 2.13.0 is the CPU wheel on this machine's disk.
if [ "${S5JAX_NO_TORCH:-0}" != 1 ] && ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q torch==2.13.0 || echo "warning: torch not installed; its cross-check tests will be skipped"
fi
