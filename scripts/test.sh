#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, slow (full-size parity) tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# Two worker processes (S5JAX_TEST_WORKERS=N for another count, 0 for none), whole files per worker
# so module fixtures are built once; with one process XLA's compiles and the Python between calls
# leave a core idle much of the time (2 cores: 21.4 -> 15.6 min). --no-loadscope-reorder: files are
# handed out in the order tests/conftest.py gives (longest first), not by their number of tests.
python -m pytest -q -n "${S5JAX_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
