"""Helpers shared by the dataset-runner tests (no tests here): a tiny model and images, and
stores with chosen attributions written through the store API (no model run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_MODULE = "igkit_dataset_testmodels"

_MODEL_SOURCE = '''
"""Tiny torch classifiers for the igkit dataset tests.

Two test-only hooks, set by environment variables of the process that imports this module (an
``igkit explain-dataset`` run whose model this is):

* ``IGKIT_TEST_START_AT`` (seconds since the epoch): importing the model waits until then, so
  two runs started together reach the store at the same moment;
* ``IGKIT_TEST_PAUSE_WRITE`` (``chunk:N`` or ``part:N``): the Nth attribution chunk or result
  part file the run writes gets half its bytes, flushed to disk, then the file
  ``IGKIT_TEST_PAUSE_SIGNAL`` appears and the run waits to be killed: a SIGKILL that lands in
  the middle of a write, every time. The writers themselves (Zarr's and igkit's atomic ones)
  run unchanged around it, into the file they opened.
"""

import contextlib
import io
import os
import time

import torch
from torch import nn


def _halt(handle, data) -> None:
    view = memoryview(data).cast("B")
    handle.write(view[: len(view) // 2])
    handle.flush()
    os.fsync(handle.fileno())
    with open(os.environ["IGKIT_TEST_PAUSE_SIGNAL"], "w") as signal:
        signal.write(getattr(handle, "name", ""))
    time.sleep(3600)


class _Halting:
    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data) -> int:
        _halt(self.handle, data)
        return 0


def _pause_writes(spec: str) -> None:
    kind, nth = spec.split(":")
    seen = [0]

    def due() -> bool:
        seen[0] += 1
        return seen[0] == int(nth)

    if kind == "chunk":
        import zarr.storage._local as local

        original = local._atomic_write

        @contextlib.contextmanager
        def atomic_write(path, mode, exclusive=False):
            with original(path, mode, exclusive=exclusive) as handle:
                chunk = "attributions.zarr" in str(path) and path.name.isdigit()
                yield _Halting(handle) if chunk and due() else handle

        local._atomic_write = atomic_write
    else:
        import pyarrow.parquet as pq

        original_write = pq.write_table

        def write_table(table, where, *args, **kwargs):
            # A result part (not examples.parquet), whatever its file is called while written.
            if "checksum" in table.column_names and due():
                buffer = io.BytesIO()
                original_write(table, buffer, *args, **kwargs)
                _halt(where, buffer.getvalue())
            return original_write(table, where, *args, **kwargs)

        pq.write_table = write_table


if os.environ.get("IGKIT_TEST_PAUSE_WRITE"):
    _pause_writes(os.environ["IGKIT_TEST_PAUSE_WRITE"])
if os.environ.get("IGKIT_TEST_START_AT"):
    time.sleep(max(0.0, float(os.environ["IGKIT_TEST_START_AT"]) - time.time()))


class Tiny(nn.Module):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)  # a slow model, so a run can be killed midway
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny() -> nn.Module:
    return Tiny()


def slow() -> nn.Module:
    return Tiny(0.04)
'''

#: Options of every test run: the tiny model at 16x16 with few steps. The model is a
#: ``module:function`` entry point, which runs code, so the runs pass ``--trust``.
RUN_OPTIONS = ["--input-size", "16", "--steps", "16", "--no-progress", "--trust"]


def write_model_module(folder: Path) -> Path:
    """Write the tiny model module into ``folder`` (to put on sys.path / PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODEL_MODULE}.py").write_text(_MODEL_SOURCE, encoding="utf-8")
    return folder


def make_images(folder: Path, count: int, *, seed: int = 0, broken: bool = False) -> list[Path]:
    """``count`` random 20x24 PNGs (and a corrupt ``zz_broken.png`` when ``broken``)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    if broken:
        path = folder / "zz_broken.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")
        paths.append(path)
    return paths


def cli_env(model_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for an ``igkit`` subprocess that can import the test model (and
    ``extra`` variables, e.g. the model module's test hooks)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(model_dir), *filter(None, [env.get("PYTHONPATH", "")])]
    )
    env.update(extra)
    return env


def igkit_command(*args: str) -> list[str]:
    """``python -m igkit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "igkit", *args]


def run_igkit(
    args: list[str], model_dir: Path, cwd: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``igkit ARGS`` to completion in a subprocess (``extra``: environment variables)."""
    return subprocess.run(
        igkit_command(*args),
        cwd=cwd,
        env=cli_env(model_dir, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


#: Settings of a store written by :func:`write_store`, as ``explain-dataset`` records them.
STORE_SETTINGS: dict[str, Any] = {
    "model": "tests:none", "weights": None, "model_digest": "", "input_size": None,
    "preprocess": None, "target": "top1", "steps": 8, "method": "gauss_legendre", "tol": 0.05,
    "max_steps": 1024, "batch_size": 16, "baseline": ["black"], "output": None, "seed": 0,
}


def write_store(
    root: Path,
    examples: Sequence[Mapping[str, Any]],
    *,
    shape: tuple[int, int, int],
    settings: Mapping[str, Any] | None = None,
    row_settings: Mapping[str, Any] | None = None,
) -> Path:
    """A store at ``root`` holding exactly the given examples, committed in one batch.

    Each example is a mapping with ``path`` and optional ``label``, ``target_label``,
    ``relative_error`` (default 0), ``converged`` (default: within the tolerance) and either
    ``attributions`` (an ``(H, W, C)`` array: an ok row) or ``error`` (a failed row).
    ``settings`` update :data:`STORE_SETTINGS`; ``row_settings`` update them further in the
    rows' ``settings`` only (where a run records what it resolved).
    """
    from igkit.runner.store import DatasetStore, Example

    full = {**STORE_SETTINGS, **(settings or {})}
    store = DatasetStore.create_or_open(
        root, full,
        [Example(i, str(e["path"]), e.get("label")) for i, e in enumerate(examples)], shape,
    )
    recorded = json.dumps({**full, **(row_settings or {})}, sort_keys=True)
    rows, arrays = [], {}
    for i, e in enumerate(examples):
        ok = "attributions" in e
        rel = float(e.get("relative_error", 0.0))
        rows.append({
            "id": i, "path": str(e["path"]), "label": e.get("label"), "target": 0,
            "target_label": e.get("target_label", "class 0"),
            "score": 0.9 if ok else None, "baseline_score": 0.1 if ok else None,
            "delta": 0.8 * rel if ok else None, "relative_error": rel if ok else None,
            "converged": bool(e.get("converged", abs(rel) <= full["tol"])) if ok else None,
            "steps": full["steps"] if ok else None, "evaluations": full["steps"] if ok else None,
            "seconds": 0.01, "status": "ok" if ok else "failed",
            "error": None if ok else str(e["error"]), "settings": recorded,
        })
        if ok:
            arrays[i] = np.asarray(e["attributions"], dtype=np.float32)
    store.commit(rows, arrays)
    return root


def kill_after_parts(
    command: list[str], store: Path, env: dict[str, str], cwd: Path, *, parts: int = 2,
    timeout: float = 240.0,
) -> None:
    """Start ``igkit COMMAND`` and SIGKILL it as soon as ``store`` holds ``parts`` committed
    part files (asserting it was still running then)."""
    import signal
    import time

    process = subprocess.Popen(
        igkit_command(*command), cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results = store / "results"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if results.is_dir() and len(list(results.glob("part-*.parquet"))) >= parts:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run finished (or failed) before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
