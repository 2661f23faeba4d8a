"""Render every igkit.viz figure for synthetic data, to look at them.

Usage::

    python scripts/render_viz_examples.py [OUT_DIR]    # default: igkit-out/viz-examples

No model is involved: the image is a smooth synthetic scene, the attributions a positive blob on
the "object" and a negative one on a distractor, the plain gradients a noisy scattered version,
and the path trace a saturating sigmoid, so each figure shows what it is meant to show.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

import igkit.viz as viz
from igkit.core.result import PathTrace, Result


def scene(size: int = 128) -> np.ndarray:
    """A float RGB image in [0, 1]: sky gradient, a yellow disc and a grey square."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.35 + 0.3 * yy, 0.55 + 0.2 * yy, 0.9 - 0.3 * yy], axis=-1)
    disc = (xx - 0.35) ** 2 + (yy - 0.45) ** 2 < 0.18**2
    img[disc] = (0.95, 0.8, 0.25)
    square = (np.abs(xx - 0.75) < 0.1) & (np.abs(yy - 0.7) < 0.1)
    img[square] = (0.35, 0.3, 0.4)
    return img


def blob(size: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def attributions(size: int = 128, seed: int = 0) -> np.ndarray:
    """(H, W, 3): positive on the disc, negative on the square, a little noise."""
    rng = np.random.default_rng(seed)
    pos = blob(size, 0.35, 0.45, 0.09)
    neg = blob(size, 0.75, 0.7, 0.06)
    base = pos - 0.6 * neg
    per_channel = np.stack([1.0 * base, 0.6 * base, 0.3 * base], axis=-1)
    return 1e-2 * (per_channel + 0.05 * rng.standard_normal((size, size, 3)))


def gradients(size: int = 128, seed: int = 1) -> np.ndarray:
    """(H, W, 3): scattered, noisy gradients loosely around the disc."""
    rng = np.random.default_rng(seed)
    envelope = 0.3 + blob(size, 0.35, 0.45, 0.2)
    return envelope[..., None] * rng.standard_normal((size, size, 3)) ** 3


def rgby_cells(size: int = 128, seed: int = 2) -> np.ndarray:
    """(H, W, 4) uint8 microscopy-like image: nuclei, filaments, spots, ER ring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    centres = [(0.3, 0.35), (0.7, 0.4), (0.5, 0.75)]
    nuclei = sum(blob(size, cx, cy, 0.07) for cx, cy in centres)
    cells = sum(blob(size, cx, cy, 0.16) for cx, cy in centres)
    filaments = cells * (0.5 + 0.5 * np.sin(40 * (xx + 0.5 * yy))) ** 4
    spots = np.zeros((size, size))
    for _ in range(40):
        cx, cy = rng.uniform(0.15, 0.85, size=2)
        spots += 0.6 * blob(size, cx, cy, 0.012)
    er = cells * (1 - nuclei) * 0.9
    stack = np.stack([filaments, spots * cells * 1.5, nuclei, er], axis=-1)
    stack = np.clip(stack / stack.max(axis=(0, 1)), 0, 1) * np.array([1.0, 1.0, 1.0, 0.5])
    return (255 * stack).astype(np.uint8)


def trace() -> PathTrace:
    """A saturating path: p(alpha) = sigmoid(12 (alpha - 0.2)), mean |grad| its derivative."""
    alphas = np.linspace(0.0, 1.0, 51)
    p = 1.0 / (1.0 + np.exp(-12.0 * (alphas - 0.2)))
    return PathTrace([alphas], [p], [12.0 * p * (1.0 - p) * 1e-3])


def fake_result(attr: np.ndarray) -> Result:
    """A Result as the engine would return it for one input, completeness within 1 %."""
    score, base = 0.93, 0.01
    delta = float(attr.sum()) - (score - base)
    values = {
        "attributions": attr,
        "delta": np.array([delta]),
        "relative_error": np.array([0.004]),
        "score": np.array([score]),
        "baseline_score": np.array([base]),
        "target": np.array([417]),
        "steps": np.array([64]),
        "method": "gauss_legendre",
        "tol": 0.01,
        "converged": np.array([True]),
        "evaluations": np.array([64]),
    }
    names = {f.name for f in dataclasses.fields(Result)}
    return Result(**{k: v for k, v in values.items() if k in names})


def main(out_dir: str = "igkit-out/viz-examples") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img = scene()
    attr = attributions()
    black = np.zeros_like(img)
    rng = np.random.default_rng(3)
    written: list[Path] = []

    def save(name: str) -> Path:
        written.append(out / name)
        return out / name

    viz.ig_panel(img, fake_result(attr), black, label="balloon", path=save("ig_panel.png"))
    viz.ig_panel(img, attr, black, title="Plain arrays, no Result", path=save("ig_panel_plain.png"))
    viz.sign_mask_figure(img, attr, black, power=2.0, title="Sign masks",
                         path=save("sign_masks.png"))
    viz.gradvis_figure(img, attr, gradients(), clip_above=99.0, clip_below=0.0,
                       title="Gradients vs IG", path=save("gradvis.png"))
    viz.gradvis_figure(img, attr, gradients(), clip_above=95.0, clip_below=28.0, cleanup=True,
                       outlines=True, title="With clean-up and outlines",
                       path=save("gradvis_outlines.png"))
    viz.gradvis_figure(img, attr, polarity="both", clip_below=70.0, lower_end=0.2,
                       title="Both polarities",
                       path=save("gradvis_both.png"))
    viz.path_strip(black, img, path=save("path_strip.png"))
    viz.saturation_plots(trace(), path=save("saturation.png"))
    viz.riemann_illustration(steps=5, path=save("riemann_5.png"))
    viz.riemann_illustration(steps=10, path=save("riemann_10.png"))
    shifted = np.roll(attr, 20, axis=1)
    viz.compare_grid(img, [attr, 0.5 * shifted, 0.3 * attr + 0.2 * shifted],
                     ["Black baseline", "White baseline", "Uniform-noise baseline (averaged)"],
                     shared_scale=True, title="Baselines compared",
                     path=save("compare_baselines.png"))
    flipped = img[:, ::-1]
    rotated = np.rot90(img)
    viz.compare_grid([img, flipped, rotated],
                     [attr, attr[:, ::-1], np.rot90(attr)],
                     ["original", "flipped left-right", "rotated 90 degrees"],
                     title="Augmentations", path=save("compare_augmentations.png"))
    cells = rgby_cells()
    viz.rgby_figure(cells, title="RGBY microscopy", path=save("rgby.png"))
    viz.rgby_figure(cells, green_boost=2.0, title="RGBY, green boosted",
                    path=save("rgby_boost.png"))
    # Evidence for the class on the protein spots of the upper cells, against it on the lower.
    green = cells[..., 1].astype(np.float64) / 255.0
    upper = np.linspace(1.0, -1.0, 128)[:, None]
    cell_attr = 0.02 * (green * upper)[..., None] * np.array([0.2, 1.0, 0.3])
    cell_attr += 1e-5 * rng.standard_normal(cell_attr.shape)
    viz.sign_mask_figure(cells, cell_attr, title="4-channel image, 3-channel attributions",
                         power=3.0, path=save("sign_masks_rgby.png"))
    return written


if __name__ == "__main__":
    for p in main(*sys.argv[1:2]):
        print(p)
