"""Helpers shared by the dataset-runner tests (no tests here): a tiny model and images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

MODEL_MODULE = "igkit_dataset_testmodels"

_MODEL_SOURCE = '''
"""Tiny torch classifiers for the igkit dataset tests."""

import time

import torch
from torch import nn


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

#: Options of every test run: the tiny model at 16x16 with few steps.
RUN_OPTIONS = ["--input-size", "16", "--steps", "16", "--no-progress"]


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


def cli_env(model_dir: Path) -> dict[str, str]:
    """The environment for an ``igkit`` subprocess that can import the test model."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(model_dir), *filter(None, [env.get("PYTHONPATH", "")])]
    )
    return env


def igkit_command(*args: str) -> list[str]:
    """``python -m igkit ARGS`` with this interpreter."""
    return [sys.executable, "-m", "igkit", *args]


def run_igkit(args: list[str], model_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``igkit ARGS`` to completion in a subprocess."""
    return subprocess.run(
        igkit_command(*args),
        cwd=cwd,
        env=cli_env(model_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
