"""The test suite's own settings (tests/conftest.py): which tests compile with XLA's default
optimisations and which without most of them, in this process and in the processes they start."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _disabled() -> bool:
    from jax._src import compiler          # the flag's holder: jax.config has no attribute for it

    return compiler._DISABLE_MOST_OPTIMIZATIONS.value


def _disabled_in_a_new_process() -> bool:
    code = "from jax._src import compiler; print(compiler._DISABLE_MOST_OPTIMIZATIONS.value)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.strip() == "True"


def test_an_ordinary_test_compiles_without_most_optimisations():
    assert _disabled() and os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS") == "1"
    assert _disabled_in_a_new_process()             # what a started process reads (the variable)


def test_a_test_reading_the_goldens_compiles_as_users_do(golden):
    assert not _disabled() and "JAX_DISABLE_MOST_OPTIMIZATIONS" not in os.environ


@pytest.mark.xla_default
def test_a_marked_test_compiles_as_users_do():
    assert not _disabled() and "JAX_DISABLE_MOST_OPTIMIZATIONS" not in os.environ


def test_the_official_comparison_files_are_marked():
    from conftest import XLA_DEFAULT_FILES

    here = os.path.dirname(os.path.abspath(__file__))
    assert {"test_torch_port.py", "test_losses.py"} <= set(XLA_DEFAULT_FILES)
    assert all(os.path.isfile(os.path.join(here, f)) for f in XLA_DEFAULT_FILES)
