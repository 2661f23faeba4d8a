"""The items of a report: one image and target each, from an ``igkit explain`` folder.

:class:`ReportItem` is what every page of the report is made from; :func:`load_explain_folder`
reads an explain folder's ``NAME.npz`` files and figures, :mod:`igkit.report.store` a dataset
store. The PNG writers draw the figures the report makes itself (masks, overlays, class maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ReportItem",
    "finite",
    "load_explain_folder",
    "text_of",
    "write_map_png",
    "write_rgb_png",
]

_SCALAR_ORDER = ("score", "baseline_score", "delta", "relative_error", "tol", "converged")


@dataclass
class ReportItem:
    """One image and target of the report.

    Attributes:
        name: The display name (file stem or image path's name).
        target_label: The explained class.
        label: The true class, or None when unknown.
        score: F(x), or None for a failed example.
        relative_error: The completeness check's relative error, or None.
        status: ``"converged"``, ``"not converged"`` or ``"failed"``.
        figures: Figure files to copy (the first is the thumbnail).
        npz: An npz file to copy, or None.
        fields: Every number and setting to show on the detail page, in order.
        top_k: ``(label, index, score)`` predictions.
        completeness: The completeness check in words.
        attributions: Attributions to render a thumbnail from when there is no figure.
        load_attributions: Reads the attributions when they are needed (a store's items, so a
            large store is not held in memory at once).
        image_path: The image file to draw the overlay on (a store's items), or None.
        preprocess: How the run turned that image into a model input ("pad", "resize",
            "center_crop") at the attributions' size, or None when the store does not say.
        note: What the page should say about the figures (e.g. why there is no overlay).
    """

    name: str
    target_label: str
    label: str | None
    score: float | None
    relative_error: float | None
    status: str
    figures: list[Path] = field(default_factory=list)
    npz: Path | None = None
    fields: dict[str, str] = field(default_factory=dict)
    top_k: list[tuple[str, int, float]] = field(default_factory=list)
    completeness: str = ""
    attributions: np.ndarray | None = None
    load_attributions: Callable[[], np.ndarray] | None = None
    image_path: str | None = None
    preprocess: str | None = None
    note: str = ""


def finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def text_of(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return f"{item:.6g}" if isinstance(item, float) else str(item)
    return ", ".join(str(v) for v in array.tolist())


def load_explain_folder(folder: Path) -> list[ReportItem]:
    """The items of an ``igkit explain`` output folder (one per ``NAME.npz``)."""
    items = []
    npzs = sorted(folder.glob("*.npz"))
    stems = {p.stem for p in npzs}
    pngs: dict[str, list[Path]] = {}
    for png in sorted(folder.glob("*.png")):
        # Each figure belongs to the longest stem it starts with: NAME.png, NAME.STYLE.png.
        base = png.name[: -len(".png")]
        owners = [base[:k] for k in range(len(base), 0, -1)
                  if (k == len(base) or base[k] == ".") and base[:k] in stems]
        if owners:
            pngs.setdefault(owners[0], []).append(png)
    for path in npzs:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        stem = path.stem
        # The panel (NAME.png) first: it is the thumbnail.
        figures = sorted(pngs.get(stem, []), key=lambda f: (f.name != f"{stem}.png", f.name))
        converged = bool(arrays["converged"]) if "converged" in arrays else False
        fields = {
            key: text_of(arrays[key])
            for key in (*_SCALAR_ORDER, *sorted(arrays))
            if key in arrays and arrays[key].ndim <= 1 and not key.startswith("top_k")
        }
        top_k = []
        if "top_k_labels" in arrays:
            top_k = [
                (str(lab), int(idx), float(sc))
                for lab, idx, sc in zip(
                    arrays["top_k_labels"].tolist(),
                    arrays["top_k_indices"].tolist(),
                    arrays["top_k_scores"].tolist(),
                    strict=False,
                )
            ]
        items.append(
            ReportItem(
                name=stem,
                target_label=str(arrays.get("target_label", "")),
                label=None,
                score=finite(arrays.get("score")),
                relative_error=finite(arrays.get("relative_error")),
                status="converged" if converged else "not converged",
                figures=figures,
                npz=path,
                fields=fields,
                top_k=top_k,
                completeness=str(arrays.get("completeness", "")),
                attributions=None if figures else arrays.get("attributions"),
            )
        )
    return items


def write_map_png(values: np.ndarray, path: Path, size: int = 128) -> None:
    """A greyscale PNG of a non-negative ``(H, W)`` map, upscaled to about ``size`` pixels."""
    from PIL import Image

    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    top = values.max() if values.size else 0.0
    grey = (255 * values / top).astype(np.uint8) if top > 0 else np.zeros(values.shape, np.uint8)
    image = Image.fromarray(grey)
    scale = max(1, size // max(values.shape))
    image.resize((values.shape[1] * scale, values.shape[0] * scale), Image.NEAREST).save(path)


def write_rgb_png(rgb: np.ndarray, path: Path, size: int = 128) -> None:
    """An RGB image in [0, 1] as a PNG, upscaled (nearest) to about ``size`` pixels."""
    from PIL import Image

    pixels = np.round(255 * np.clip(np.nan_to_num(rgb), 0.0, 1.0)).astype(np.uint8)
    height, width = pixels.shape[:2]
    scale = max(1, size // max(height, width))
    Image.fromarray(pixels).resize((width * scale, height * scale), Image.NEAREST).save(path)
