"""Types that document: the public option aliases match the registries, and mypy passes on the
modules that are fully typed (the public API, the core, the backends, the model spec)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import get_args

import mypy  # noqa: F401 - in the test extra: a missing type checker is a failure, not a skip

import igkit
from igkit.backends.base import OUTPUT_NAMES, PRECISIONS
from igkit.core.baselines import available_baselines
from igkit.typing import BaselineName, Method, Output, Precision

ROOT = Path(__file__).resolve().parents[1]

#: Checked by mypy; grow this list as modules become clean, never shrink it.
TYPED = [
    "src/igkit/typing.py",
    "src/igkit/api.py",
    "src/igkit/core",
    "src/igkit/backends",
    "src/igkit/models/spec.py",
    "src/igkit/workflow",
    "src/igkit/cli",
    "src/igkit/runner",
    "src/igkit/methods",
    "src/igkit/metrics",
    "src/igkit/evaluation",
    "src/igkit/process.py",
]


def test_literal_aliases_list_the_registered_names() -> None:
    assert sorted(get_args(Method)) == igkit.available_methods()
    assert sorted(get_args(BaselineName)) == sorted(available_baselines())
    assert get_args(Output) == OUTPUT_NAMES == ("raw", "softmax", "sigmoid")
    assert get_args(Precision) == PRECISIONS


def test_mypy_passes_on_the_typed_modules() -> None:
    # The cache lives outside the repository (nothing to ignore) and survives between runs.
    cache = Path(tempfile.gettempdir()) / "igkit-mypy-cache"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--cache-dir", str(cache),
         *TYPED],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
