"""The cells ``igkit demo --microscopy`` explains: one per class, and one with two locations.

They come from the evaluation seed, which the shipped model was not trained on, and are written
as per-channel PNG files (``cell-NNNN_{red,green,blue,yellow}.png``), the HPA layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["demo_cells", "write_cells", "write_demo_cells"]


def demo_cells(seed: int, classes: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, image, labels)`` of the first single-label cell of each class, then the first
    two-label cell."""
    from igkit.microscopy.synthetic import make_cell

    found: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
    pair = None
    index = 0
    while len(found) < classes or pair is None:
        image, labels, _ = make_cell(seed, index)
        ks = np.flatnonzero(labels)
        if ks.size == 1 and int(ks[0]) not in found:
            found[int(ks[0])] = (index, image, labels)
        elif ks.size == 2 and pair is None:
            pair = (index, image, labels)
        index += 1
    return [found[k] for k in range(classes)] + [pair]


def write_demo_cells(folder: str | os.PathLike[str]) -> list[tuple[str, list[str]]]:
    """Write the demo cells into ``folder``; returns each cell's id and true compartments."""
    from igkit.io.channels import DEFAULT_CHANNELS, DEFAULT_PATTERN, save_channel_files
    from igkit.microscopy.synthetic import CLASSES, SEEDS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, image, labels in demo_cells(SEEDS["evaluation"], len(CLASSES)):
        example_id = f"cell-{index:04d}"
        save_channel_files(folder, example_id, image, DEFAULT_CHANNELS, DEFAULT_PATTERN)
        written.append((example_id, [CLASSES[k] for k in np.flatnonzero(labels)]))
    return written


def write_cells(folder: str | os.PathLike[str], n: int, seed: int | None = None,
                *, masks: bool = True) -> list[tuple[str, list[str]]]:
    """Write ``n`` synthetic cells (per-channel PNGs, the HPA layout) into ``folder`` and, with
    ``masks``, every compartment's region as ``folder/masks/cell-NNNN_COMPARTMENT.png`` (white
    inside), the ground truth ``igkit evaluate --masks`` reads. Default seed: the evaluation
    seed, which the shipped model was not trained on. Returns each cell's id and true
    compartments."""
    from PIL import Image

    from igkit.io.channels import DEFAULT_CHANNELS, DEFAULT_PATTERN, save_channel_files
    from igkit.io.writers import atomic_open
    from igkit.microscopy.synthetic import CLASSES, SEEDS, make_cells

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cells = make_cells(n, SEEDS["evaluation"] if seed is None else seed, masks=masks)
    if masks:
        (folder / "masks").mkdir(exist_ok=True)
    written = []
    for i in range(len(cells)):
        example_id = f"cell-{i:04d}"
        save_channel_files(folder, example_id, cells.images[i], DEFAULT_CHANNELS,
                           DEFAULT_PATTERN)
        if cells.masks is not None:
            for k, name in enumerate(CLASSES):
                with atomic_open(folder / "masks" / f"{example_id}_{name}.png") as handle:
                    Image.fromarray(cells.masks[i, k].astype(np.uint8) * 255).save(
                        handle, format="PNG")
        written.append((example_id, cells.label_names(i)))
    return written
