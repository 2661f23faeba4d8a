"""Does the attribution fall where the signal is? Measured on synthetic cells with known truth.

For every held-out cell and every one of its true compartments, each method gives a map over the
model's input ``(3, H, W)``; the map's *positive* part is summed over channels (as the red mask
of the HPA figure is) into one ``(H, W)`` mass, and two numbers are taken against the ground-truth
mask of that compartment (grown by ``tolerance`` pixels, the reach of the images' optical blur):

* **in-mask share**: the share of the positive mass that lies inside the mask
  (:func:`igkit.metrics.mask_share`);
* **pointing game**: whether the pixel of largest mass lies inside the mask
  (:func:`igkit.metrics.pointing_game` of the positive mass).

The same numbers for any registered method and dataset come from ``igkit evaluate --masks``.

Methods: Integrated Gradients (black baseline, sigmoid output, each true label as a target: one
multi-target call over the whole set), plain gradients of the same output
(:func:`igkit.gradients`), gradient x input, and a uniform random map, whose expected share is
the mask's share of the image (chance level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from igkit.microscopy.synthetic import CLASSES, CellSet, grow_mask

__all__ = ["METHODS", "Evaluation", "evaluate", "format_report", "positive_mass"]

#: Methods compared, in table order.
METHODS: tuple[str, ...] = ("integrated_gradients", "gradients", "gradient_x_input", "random")
_TITLES = {
    "integrated_gradients": "Integrated Gradients",
    "gradients": "plain gradients",
    "gradient_x_input": "gradient x input",
    "random": "random map",
}


def positive_mass(attributions: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """``sum_c max(a_c, 0)``: the per-pixel positive attribution mass of one map."""
    return np.maximum(attributions, 0.0).sum(axis=channel_axis)


@dataclass(frozen=True)
class Evaluation:
    """Per-explanation scores of each method.

    Attributes:
        cell: ``(E,)`` the cell of each explanation (a (cell, true label) pair).
        target: ``(E,)`` the explained compartment.
        share: Method name to ``(E,)`` in-mask shares.
        hit: Method name to ``(E,)`` pointing-game hits.
        chance: ``(E,)`` the mask's share of the image (the random map's expected share).
        ig_relative_error: ``(E,)`` IG's completeness error of each explanation.
        steps: IG steps per path.
        tolerance: Pixels the masks were grown by.
    """

    cell: np.ndarray
    target: np.ndarray
    share: dict[str, np.ndarray]
    hit: dict[str, np.ndarray]
    chance: np.ndarray
    ig_relative_error: np.ndarray
    steps: int
    tolerance: int

    def summary(self) -> dict[str, tuple[float, float]]:
        """Method name to (mean in-mask share, pointing-game hit rate)."""
        return {m: (float(self.share[m].mean()), float(self.hit[m].mean())) for m in METHODS}

    def table(self) -> str:
        """The comparison as a markdown table, one row per method."""
        cells = int(np.unique(self.cell).size)
        lines = [
            f"| method ({len(self.cell)} explanations of {cells} held-out cells) "
            "| in-mask share of positive attribution | pointing game |",
            "| --- | ---: | ---: |",
        ]
        for method, (share, hit) in self.summary().items():
            lines.append(f"| {_TITLES[method]} | {share:.3f} | {hit:.3f} |")
        lines.append(f"| (chance: mask area / image area) | {self.chance.mean():.3f} | |")
        return "\n".join(lines)

    def class_table(self) -> str:
        """Mean in-mask share per compartment and method, as a markdown table."""
        head = " | ".join(_TITLES[m] for m in METHODS)
        lines = [
            f"| compartment | n | {head} | chance |",
            "| --- | ---: |" + " ---: |" * (len(METHODS) + 1),
        ]
        for k, name in enumerate(CLASSES):
            pick = self.target == k
            if not pick.any():
                continue
            values = " | ".join(f"{self.share[m][pick].mean():.3f}" for m in METHODS)
            lines.append(
                f"| {name} | {int(pick.sum())} | {values} | {self.chance[pick].mean():.3f} |"
            )
        return "\n".join(lines)


def evaluate(
    net: object,
    cells: CellSet,
    *,
    steps: int = 32,
    method: str = "gauss_legendre",
    tolerance: int = 1,
    seed: int = 0,
    batch_size: int = 128,
) -> Evaluation:
    """Scores every method on every (cell, true label) pair of ``cells``.

    Args:
        net: The torch network (RGB in [0, 1], channels first, logits out).
        cells: Held-out cells, with masks.
        steps: IG steps per path.
        method: IG quadrature rule.
        tolerance: Pixels to grow each mask by.
        seed: Seed of the random maps.
        batch_size: Path points per model call.

    Raises:
        ValueError: If ``cells`` has no masks.
    """
    import warnings

    import igkit

    if cells.masks is None:
        raise ValueError("the cells need masks; draw them with make_cells(..., masks=True)")
    x = cells.model_input()
    targets = cells.target_lists()
    with warnings.catch_warnings():
        # The evaluation reports the completeness errors it saw (median) itself.
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        ig = igkit.integrated_gradients(
            net,
            x,
            target=targets,
            baseline="black",
            output="sigmoid",
            steps=steps,
            method=method,
            batch_size=batch_size,
            channel_axis=1,
            input_range=(0.0, 1.0),
        )
    grads = igkit.gradients(net, x, target=targets, output="sigmoid", batch_size=batch_size)
    pairs = ig.pairs()
    rng = np.random.default_rng(seed)
    maps: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    for i, k in pairs:
        maps["integrated_gradients"].append(positive_mass(ig.attributions[i, k]))
        maps["gradients"].append(positive_mass(grads[i, k]))
        maps["gradient_x_input"].append(positive_mass(grads[i, k] * x[i]))
        maps["random"].append(rng.random(x.shape[2:]))
    cell = np.asarray([i for i, _ in pairs], dtype=np.int64)
    target = np.asarray([int(ig.target[i, k]) for i, k in pairs], dtype=np.int64)
    masks = [grow_mask(cells.masks[i, t], tolerance) for i, t in zip(cell, target, strict=True)]
    from igkit.metrics import mask_share, pointing_game

    regions = np.stack(masks)
    # A map without positive mass has no share in its mask (0, not undefined).
    share = {m: np.nan_to_num(mask_share(np.stack(maps[m]), regions).values, nan=0.0)
             for m in METHODS}
    hit = {m: pointing_game(np.stack(maps[m]), regions).values.astype(bool) for m in METHODS}
    chance = np.asarray([float(mask.mean()) for mask in masks])
    rel = np.asarray([float(ig.relative_error[i, k]) for i, k in pairs])
    return Evaluation(cell, target, share, hit, chance, rel, int(steps), int(tolerance))


def format_report(evaluation: Evaluation, extra: Sequence[str] = ()) -> str:
    """Both tables and the IG completeness numbers, as printed by the evaluation script."""
    rel = evaluation.ig_relative_error
    lines = [
        evaluation.table(),
        "",
        evaluation.class_table(),
        "",
        f"IG: black baseline, sigmoid output, {evaluation.steps} Gauss-Legendre steps; "
        f"completeness relative error median {np.median(rel):.2e}, max {rel.max():.2e}; "
        f"masks grown by {evaluation.tolerance} px.",
        *extra,
    ]
    return "\n".join(lines)
