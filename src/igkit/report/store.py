"""A dataset store as report items: rows, settings as the run used them, and figures drawn.

A store keeps no figures, so the report draws them: each example's image is read again from the
path in its row and prepared as the run prepared it (:func:`igkit.io.images.load_image`, then
:func:`igkit.io.images.preprocess` at the attributions' size with the run's preprocessing), and
the overlay is the one of ``igkit explain``'s panel (:func:`igkit.viz.overlay` of the image and
:func:`igkit.viz.attribution_mask`, inferno, the image at alpha 0.4). When the image file is gone
or cannot be read, or the store does not say how it was preprocessed (and the presets differ for
it), the gallery shows the attribution mask and the page says why. Settings a run left as None
(the model's default) are shown as what the built-in models use, else as "model default"
(:func:`igkit.runner.aggregate.setting_value`); the page never prints "None".
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

import numpy as np

from igkit.report.items import ReportItem, finite, text_of, write_map_png, write_rgb_png

__all__ = ["draw_figures", "load_store"]


def load_store(root: Path) -> tuple[list[ReportItem], list[dict[str, Any]], Any]:
    """The items of a dataset store, its per-class summaries and the store itself.

    The store is read through its check (:func:`igkit.runner.aggregate.summarize`): damaged or
    missing examples are neither items nor counted, and each damaged thing is named on stderr
    with how to repair the store.

    Raises:
        ValueError: If ``root`` is not a store or its ``store.json`` is damaged.
    """
    from igkit.runner.aggregate import setting_value, summarize
    from igkit.runner.store import DatasetStore

    store = DatasetStore.open(root)
    summary = summarize(store)
    for line in summary.check.messages(root):
        print(line, file=sys.stderr)
    tol = float(store.settings.get("tol", 0.05))
    items = []
    for row in summary.check.rows:
        ok = row["status"] == "ok"
        fields = {k: text_of(row[k]) for k in (
            "id", "path", "label", "target", "target_label", "score", "baseline_score", "delta",
            "relative_error", "converged", "steps", "evaluations", "seconds", "status", "error",
        ) if row.get(k) is not None}
        fields["tol"] = f"{tol:.6g}"
        settings = _row_settings(row["settings"], store.settings)
        fields.update(_settings_fields(settings, store.shape))
        mode, _ = setting_value(settings, "preprocess")
        rel = finite(row["relative_error"]) if ok else None
        if ok:
            words = (
                f"|F(x) - F(x') - sum(attributions)| / |F(x) - F(x')| = {abs(rel or 0):.3g}, "
                f"{'within' if row['converged'] else 'above'} the tolerance {tol:g}."
            )
        else:
            words = f"failed: {row['error'] or ''}"
        items.append(
            ReportItem(
                name=os.path.basename(row["path"] or f"example {row['id']}"),
                target_label=str(row["target_label"] or ""),
                label=row["label"],
                score=finite(row["score"]) if ok else None,
                relative_error=rel,
                status=("converged" if row["converged"] else "not converged") if ok else "failed",
                fields=fields,
                completeness=words,
                load_attributions=_reader(store, row["id"]) if ok else None,
                image_path=row["path"] if ok else None,
                preprocess=mode if isinstance(mode, str) else None,
            )
        )
    summaries, names = summary.classes, summary.channels
    classes = [
        {"name": s.name, "count": s.count, "failed": s.failed, "map": s.mean_map,
         "shares": s.channel_share, "channels": names, "mean_err": s.mean_abs_relative_error,
         "within_tol": s.within_tol}
        for s in summaries
    ]
    return items, classes, store


def _reader(store: Any, example_id: int) -> Callable[[], np.ndarray]:
    return lambda: store.attributions(example_id)


def _row_settings(text: str | None, store_settings: Mapping[str, Any]) -> dict[str, Any]:
    """A row's settings JSON over the store's settings (the same for rows of one run)."""
    settings = dict(store_settings)
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        settings.update(parsed)
    return settings


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if value != "" else "n/a"


def _settings_fields(settings: Mapping[str, Any], shape: tuple[int, int, int]) -> dict[str, str]:
    """The detail page's ``setting: KEY`` rows: what the run used, never "None".

    A value the run recorded is shown as recorded; None (the model's default) becomes the
    built-in model's default marked "(model default)", the store's own size for the input size,
    or "model default" when only loading the model could tell.
    """
    from igkit.runner.aggregate import MODEL_DEFAULT, channel_names, setting_value

    fields = {}
    for key in sorted(settings):
        value, source = setting_value(settings, key)
        if key == "input_size" and source == "unknown":
            value, source = list(shape[:2]), "default"  # the attributions have the input's size
        if source == "unknown":
            text = MODEL_DEFAULT
        elif source == "default":
            text = f"{_value_text(value)} ({MODEL_DEFAULT})"
        else:
            text = _value_text(value)
        fields[f"setting: {key}"] = text
    fields["channels"] = ", ".join(channel_names(settings, shape[2]))
    return fields


_MASK_CAPTION = "attribution mask (sum over channels of |attribution|)"
_OVERLAY_CAPTION = "overlay: the image at alpha 0.4 over the attribution mask (inferno)"


def draw_figures(dest: Path, i: int, item: ReportItem,
                  attributions: np.ndarray) -> list[tuple[str, str]]:
    """The overlay (when the image can be prepared again) and the mask of an item without
    figures; sets ``item.note`` when the overlay cannot be drawn."""
    from igkit.viz.transforms import attribution_mask

    mask = attribution_mask(attributions)
    figures = []
    if item.image_path is not None:
        image, why = _model_input(item.image_path, item.preprocess, mask.shape)
        if image is not None:
            try:
                from igkit.viz.transforms import display_rgb, overlay

                drawn = overlay(display_rgb(image, (0.0, 1.0)), mask, "inferno", 0.4)
            except ImportError:
                why = "drawing the overlay needs matplotlib (pip install 'igkit[viz]')"
            else:
                rel = f"img/{i}_overlay.png"
                write_rgb_png(drawn, dest / rel)
                figures.append((rel, _OVERLAY_CAPTION))
        if why:
            item.note = f"No overlay: {why}; the gallery shows the attribution mask."
    rel = f"img/{i}_mask.png"
    write_map_png(mask, dest / rel)
    figures.append((rel, _MASK_CAPTION))
    return figures


def _model_input(path: str, mode: str | None,
                 size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The image at ``path`` as the run fed it to the model, or None and why not.

    With the preprocessing unknown (an older store of a model that only loading could tell
    about) the image is used only when every preset gives the same input, as they do when its
    aspect ratio is the input's.
    """
    from igkit.io.images import ImageError, Mode, load_image, preprocess

    if not Path(path).is_file():
        return None, f"the image file {path} is gone"
    try:
        image = load_image(path)
    except ImageError as exc:
        return None, f"the image file cannot be read ({exc})"
    if mode is not None:
        try:
            return preprocess(image, size, mode), ""  # type: ignore[arg-type]
        except ValueError as exc:  # a mode this igkit does not know
            return None, str(exc)
    inputs = [preprocess(image, size, m) for m in get_args(Mode)]
    if all(np.array_equal(inputs[0], other) for other in inputs[1:]):
        return inputs[0], ""
    return None, ("the store does not record how the run preprocessed the images (the model's "
                  "default) and the presets differ for this image")
