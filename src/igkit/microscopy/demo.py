"""The cells ``igkit demo --microscopy`` explains: one per class, and one with two locations.

They come from the evaluation seed, which the shipped model was not trained on, and are written
as per-channel PNG files (``cell-NNNN_{red,green,blue,yellow}.png``), the HPA layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["demo_cells", "write_demo_cells"]


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
