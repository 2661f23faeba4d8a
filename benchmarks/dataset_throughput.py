"""Images per second of ``igkit explain-dataset``: the local engine and Ray with 1 and 2 workers.

Generates a small dataset of random PNGs and a small torch CNN (a ``package.module:function``
model in a temporary folder), then explains the dataset into a fresh store with each engine and
prints images/s. Timing covers the explaining phase (decoding, IG, commits to the store); the
Ray cluster is started once beforehand and its start-up time is printed separately, while the
actor start-up (model loading) of each Ray run is included. Run from the repository root::

    .venv/bin/python benchmarks/dataset_throughput.py [--images 48] [--size 32] [--steps 32]

Needs ``igkit[torch,dataset,ray]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_MODEL = '''
import torch
from torch import nn


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
'''


def _dataset(folder: Path, count: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:04d}.png")


def main() -> None:
    """Run the benchmark and print one line per engine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=32, help="model input size")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--commit-every", type=int, default=8)
    options = parser.parse_args()

    from igkit.runner.engine import DatasetExplainer, read_source
    from igkit.runner.local import run_local
    from igkit.runner.store import DatasetStore
    from igkit.workflow import ExplainSettings

    work = Path(tempfile.mkdtemp(prefix="igkit-bench-"))
    (work / "bench_model.py").write_text(_MODEL, encoding="utf-8")
    sys.path.insert(0, str(work))
    path = os.pathsep.join(filter(None, [str(work), os.environ.get("PYTHONPATH")]))
    os.environ["PYTHONPATH"] = path
    _dataset(work / "images", options.images)
    examples = read_source(work / "images")
    settings = ExplainSettings(
        model="bench_model:cnn", input_size=(options.size, options.size), preprocess="resize",
        steps=options.steps, method="gauss_legendre", tol=0.05, batch_size=16,
    )
    explainer = DatasetExplainer(settings)
    print(
        f"{options.images} images, input {options.size}x{options.size}, {options.steps} steps, "
        f"{os.cpu_count()} CPU cores"
    )

    def fresh_store(name: str) -> DatasetStore:
        return DatasetStore.create_or_open(
            work / name, settings.fingerprint(), examples, explainer.shape
        )

    import torch

    default_threads = torch.get_num_threads()
    for threads in dict.fromkeys((default_threads, 1)):
        torch.set_num_threads(threads)
        store = fresh_store(f"local{threads}")
        started = time.perf_counter()
        run_local(explainer, store, examples, commit_every=options.commit_every)
        seconds = time.perf_counter() - started
        print(
            f"{f'local, {threads} torch thread(s)':<24}: "
            f"{options.images / seconds:7.2f} images/s ({seconds:.1f} s)"
        )
    torch.set_num_threads(default_threads)

    import ray

    from igkit.runner.ray_engine import run_ray

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{'ray start-up':<24}: {time.perf_counter() - started:.1f} s (not counted below)")
    try:
        for workers in (1, 2):
            store = fresh_store(f"ray{workers}")
            started = time.perf_counter()
            run_ray(settings, store, examples, workers=workers,
                    commit_every=options.commit_every)
            seconds = time.perf_counter() - started
            print(
                f"{f'ray, {workers} worker(s)':<24}: "
                f"{options.images / seconds:7.2f} images/s ({seconds:.1f} s, actor start-up "
                "included)"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
