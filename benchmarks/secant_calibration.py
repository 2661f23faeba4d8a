"""Calibration of ``method="secant"``'s free error estimate (``igkit.core.pieces``).

    python benchmarks/secant_calibration.py [--photos a,b,...] [--cache DIR]

For each photo and 48, 64, 80 and 96 pieces, prints the true attribution error (relative L2 to
a Gauss-Legendre 2048 reference), its ratio to the estimate without the safety factor
(``sqrt(sum_c (d_c k_c^-1.5)^2)``: ``ERROR_SCALE`` is the largest ratio), and the ratio of the
measured sum to the sum predicted from the pilot's roughness (``PILOT_ERROR_PER_ROUGHNESS`` is
chosen from it). Reads igkit's internals (the pilot's and the final pass's region integrals),
so it is a research script, not an example.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_all import load_photos, reference  # noqa: E402

import igkit  # noqa: E402
from igkit.core import pieces  # noqa: E402
from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch  # noqa: E402

CALIBRATION = ("chelsea", "coffee", "astronaut", "hubble_deep_field", "retina", "colorwheel")
LEVELS = (48, 64, 80, 96)


class _Recording(pieces.SecantRun):
    """Keeps the pilot's region attributions and the last pass's, with their piece counts."""

    seen: dict = {}

    def pilot(self, paths):
        integrals, rough = super().pilot(paths)
        _Recording.seen.update(pilot=integrals[0], rough=rough[0])
        return integrals, rough

    def _by_region(self, paths, ends, weights, regions):
        sums, taken, residual = super()._by_region(paths, ends, weights, regions)
        counts = np.bincount(regions[0][:-1], minlength=pieces.PILOT_PIECES)
        _Recording.seen.update(final=self._diff[paths[0]][None] * sums[0], counts=counts)
        return sums, taken, residual


def measure(model, x, target: int, ref: np.ndarray, n: int) -> tuple[float, float, float]:
    """(true error, true error / unscaled estimate, measured / roughness-predicted sum)."""
    res = igkit.integrated_gradients(model, x, target=target, steps=n, method="secant",
                                     output="softmax", batch_size=16)
    seen = _Recording.seen
    attr = res.attributions[0]
    norm = float(np.linalg.norm(attr))
    k, rough = seen["counts"], seen["rough"]
    change = np.linalg.norm((seen["pilot"] - seen["final"]).reshape(k.shape[0], -1), axis=1)
    estimate = pieces.region_error(change, rough, k) / pieces.ERROR_SCALE / norm
    measured = np.where(k >= 2, change, 0.0) * k.astype(float) ** -pieces.ERROR_POWER
    predicted = rough / k.shape[0] * k.astype(float) ** -pieces.ERROR_POWER
    error = float(np.linalg.norm(attr - ref) / np.linalg.norm(ref))
    return error, error / estimate, float(np.linalg.norm(measured) / np.linalg.norm(predicted))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=",".join(CALIBRATION))
    ap.add_argument("--cache", default=None, help="folder of references (run_all.py --cache)")
    args = ap.parse_args()
    names = args.photos.split(",")
    photos = load_photos(names)
    model = build_efficientnet_lite0_torch()
    pieces.SecantRun = _Recording  # the engine looks the class up at each call
    print("| photo | error at " + " / ".join(map(str, LEVELS)) + " pieces (%) | true error / "
          "estimate | measured / predicted sum |")
    print("|---|---|---|---|")
    for name in names:
        x = photos[name][None].transpose(0, 3, 1, 2).copy()
        ref, target, _ = reference(model, x, "cpu", 2048, 16,
                                   Path(args.cache) if args.cache else None, name)
        rows = [measure(model, x, target, ref[0], n) for n in LEVELS]
        errors, ratios, shares = zip(*rows, strict=True)
        print(f"| {name} | " + " / ".join(f"{100 * e:.2f}" for e in errors)
              + f" | {min(ratios):.2f}-{max(ratios):.2f} | {min(shares):.2f}-{max(shares):.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
