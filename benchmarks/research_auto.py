"""Research: how the refinement's change between levels relates to the true attribution error
for method="adaptive" on EfficientNet-Lite0 (calibrates the auto stopping rule).

    python benchmarks/research_auto.py --ref 2048
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import igkit  # noqa: E402
from igkit.core import adaptive  # noqa: E402
from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch  # noqa: E402
from igkit.models.photos import demo_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", type=int, default=2048)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    bs = 64 if dev == "cuda" else 16
    model = build_efficientnet_lite0_torch(args.weights).to(dev)
    photos = demo_photos()
    levels = []
    orig = adaptive.relative_change

    def spy(new, old):
        value = orig(new, old)
        levels.append((np.array(new, copy=True), value))
        return value

    adaptive.relative_change = spy
    print("| photo | nodes | change % | true error % | error/change | completeness % |")
    print("|---|---|---|---|---|---|")
    for name in ("chelsea", "coffee", "astronaut"):
        x = photos[name][None].transpose(0, 3, 1, 2).copy()
        ref = igkit.integrated_gradients(model, x, steps=args.ref, output="softmax",
                                         batch_size=bs)
        gap = float(ref.score[0] - ref.baseline_score[0])
        levels.clear()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            igkit.integrated_gradients(model, x, steps="auto", method="adaptive", tol=1e-6,
                                       max_steps=1024, output="softmax", batch_size=bs)
        nodes = 2 * adaptive.pilot_cells(65) + 1  # the auto ladder starts from a 17-node pilot
        nodes = (nodes + 1) // 2
        for level_attr, change in levels:
            nodes = 2 * nodes - 1
            err = np.linalg.norm(level_attr - ref.attributions[0]) / np.linalg.norm(
                ref.attributions[0])
            comp = abs(level_attr.sum() - gap) / abs(gap)
            print(f"| {name} | {nodes} | {100 * change:.2f} | {100 * err:.2f} | "
                  f"{err / change:.2f} | {100 * comp:.2f} |")


if __name__ == "__main__":
    main()
