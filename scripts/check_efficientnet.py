"""Print EfficientNet-Lite0 top-5 predictions on the demo photos, in PyTorch and in Keras.

A quick manual check of the port: both frameworks should name the same classes with the same
probabilities (chelsea -> Egyptian cat 0.3846, coffee -> espresso 0.9398, astronaut ->
bobsled 0.1973), and their logits should differ by float32 rounding only (~1e-5).

    PYTHONPATH=src python scripts/check_efficientnet.py [--weights FILE.pth|FILE.npz]

A framework that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import numpy as np

from igkit.models.efficientnet_lite import (
    build_efficientnet_lite0_keras,
    build_efficientnet_lite0_torch,
)
from igkit.models.imagenet import imagenet_labels
from igkit.models.photos import demo_photos


def torch_logits(batch: np.ndarray, weights: str | None) -> np.ndarray:
    """Logits of the PyTorch model for an NHWC batch."""
    import torch

    model = build_efficientnet_lite0_torch(weights)
    with torch.no_grad():
        return model(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy()


def keras_logits(batch: np.ndarray, weights: str | None) -> np.ndarray:
    """Logits of the Keras model for an NHWC batch."""
    model = build_efficientnet_lite0_keras(weights)
    return np.asarray(model(batch, training=False))


def print_top5(framework: str, names: list[str], logits: np.ndarray) -> None:
    labels = imagenet_labels()
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    for name, p in zip(names, probabilities, strict=True):
        print(f"[{framework}] {name}")
        for index in np.argsort(p)[::-1][:5]:
            print(f"    {index:4d}  {p[index]:.4f}  {labels[index]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help=".pth or .npz weights (default: the packaged file)")
    args = parser.parse_args(argv)

    photos = demo_photos()
    names = list(photos)
    batch = np.stack([photos[name] for name in names])

    results: dict[str, np.ndarray] = {}
    for framework, module, run in (
        ("torch", "torch", torch_logits),
        ("keras", "tensorflow", keras_logits),
    ):
        if importlib.util.find_spec(module) is None:
            print(f"[{framework}] skipped: {module} is not installed")
            continue
        results[framework] = run(batch, args.weights)
        print_top5(framework, names, results[framework])

    if len(results) == 2:
        difference = np.abs(results["torch"] - results["keras"]).max()
        print(f"max |logit difference| torch vs keras: {difference:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
