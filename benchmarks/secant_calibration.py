"""Calibration of the error estimates ``steps="auto"`` stops on, on nets built here.

    python benchmarks/secant_calibration.py [--quick]

Every net has seeded random weights and every input is seeded noise: no photo (and none of the
demo photos the benchmarks evaluate on) enters the calibration. Each net runs in float64, so
the reference is exact to far below the tolerances: secant with 4096 pieces on the ReLU nets
(exact per piece wherever no unit switches twice inside it; it agrees with Gauss-Legendre 4096
to the latter's error), Gauss-Legendre 256 on the smooth nets (converged to rounding).

Two tables:

1. The secant estimate at fixed piece counts: the true attribution error (relative L2) over the
   estimate without its safety factor (``sqrt(sum_c (d_c k_c^-1.5)^2) / ||attributions||``,
   see ``igkit.core.pieces``). ``ERROR_SCALE`` is chosen from these ratios.
2. The default call (``method="auto"``, ``steps="auto"``) at several tolerances: the rule it
   chose, evaluations, the true error, true error / tol (the aim: between 1/4 and 1) and true
   error / ``Result.error_estimate``.
3. What "auto" runs where a backend has no secant: Gauss-Legendre with ``steps="auto"`` on the
   ReLU nets, whose estimate is the change between its last two levels extrapolated with their
   rate (``igkit.core.strategies.PointRefinement.estimate``).

Reads igkit's internals (``igkit.core.pieces``), so it is a research script, not an example.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from torch import nn

import igkit
from igkit.core import pieces


def relu_cnn(seed: int, width: int = 8, size: int = 16) -> nn.Module:
    """Three ReLU convolutions (two strided) and a linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 10),
    ).double().eval()


def relu_mlp(seed: int, width: int = 64, size: int = 16) -> nn.Module:
    """Two ReLU layers on the flattened image."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * size * size, width), nn.ReLU(), nn.Linear(width, width),
        nn.ReLU(), nn.Linear(width, 10),
    ).double().eval()


class SmoothNet(nn.Module):
    """Convolution, LayerNorm and GELU (ConvNeXt-like), then a strided GELU convolution."""

    def __init__(self, seed: int, width: int = 16, size: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(3, width, 3, padding=1)
        self.n1 = nn.LayerNorm([width, size, size])
        self.c2 = nn.Conv2d(width, width, 3, padding=1, stride=2)
        self.fc = nn.Linear(width * (size // 2) ** 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.n1(self.c1(x)))
        x = nn.functional.gelu(self.c2(x))
        return self.fc(x.flatten(1))


def nets(quick: bool) -> list[tuple[str, nn.Module, bool]]:
    """(name, net, smooth) of the calibration nets."""
    out = [(f"relu_cnn s{s}", relu_cnn(s), False) for s in range(2 if quick else 4)]
    out += [("relu_cnn w16 s7", relu_cnn(7, width=16), False)]
    out += [(f"relu_mlp s{s}", relu_mlp(s), False) for s in range(1 if quick else 2)]
    out += [(f"smooth s{s}", SmoothNet(s).double().eval(), True) for s in range(1 if quick else 2)]
    return out


def image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(100 + seed).uniform(0.0, 1.0, (1, 3, size, size))


def reference(net: nn.Module, x: np.ndarray, smooth: bool) -> np.ndarray:
    method, steps = ("gauss_legendre", 256) if smooth else ("secant", 4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return igkit.integrated_gradients(net, x, target=0, method=method, steps=steps,
                                          tol=1.0).attributions


def relative(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer nets")
    args = ap.parse_args()
    cases = [(name, net, smooth, image(i)) for i, (name, net, smooth) in
             enumerate(nets(args.quick))]
    refs = {name: reference(net, x, smooth) for name, net, smooth, x in cases}

    print("## secant: true error / unscaled estimate at fixed pieces "
          f"(ERROR_SCALE = {pieces.ERROR_SCALE})")
    print("| net | 48 | 64 | 96 | 128 |")
    print("|---|---|---|---|---|")
    for name, net, _, x in cases:
        cells = []
        for n in (48, 64, 96, 128):
            res = igkit.integrated_gradients(net, x, target=0, method="secant", steps=n, tol=1.0)
            true = relative(res.attributions, refs[name])
            cells.append(f"{true / (res.error_estimate[0] / pieces.ERROR_SCALE):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    print("\n## default auto: evaluations, true error / tol, true error / estimate")
    print("| net | tol | rule | evaluations | true error | true / tol | true / estimate |")
    print("|---|---|---|---|---|---|---|")
    for name, net, _, x in cases:
        for tol in (1e-2, 3e-3, 1e-3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = igkit.integrated_gradients(net, x, target=0, tol=tol)
            true = relative(res.attributions, refs[name])
            flag = " (not converged)" if caught else ""
            print(f"| {name} | {tol:g} | {res.method} | {int(res.evaluations[0])}{flag} | "
                  f"{true:.2e} | {true / tol:.2f} | {true / res.error_estimate[0]:.2f} |",
                  flush=True)

    print("\n## Gauss-Legendre auto (auto without secant) on the ReLU nets")
    print("| net | tol | evaluations | true error | true / tol | true / estimate |")
    print("|---|---|---|---|---|---|")
    for name, net, smooth, x in cases:
        if smooth:
            continue
        for tol in (1e-2, 3e-3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = igkit.integrated_gradients(net, x, target=0, tol=tol,
                                                 method="gauss_legendre")
            true = relative(res.attributions, refs[name])
            flag = " (not converged)" if caught else ""
            print(f"| {name} | {tol:g} | {int(res.evaluations[0])}{flag} | {true:.2e} | "
                  f"{true / tol:.2f} | {true / res.error_estimate[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
