"""Explanations side by side: comparison grids, augmentations, channels, RGBY microscopy.

:func:`compare_grid` (one column per explanation), :func:`augment_figure` (the tutorial's
rotated / flipped / zoomed comparison, built on it), :func:`channel_figure` (each channel and
its attributions) and :func:`rgby_figure` (the four HPA stains and their blend). Conventions:
:mod:`igkit.viz.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz._draw import (
    _TITLE_SIZE,
    PathLike,
    _example,
    _finish,
    _hwc,
    _image_and_attributions,
    _new_figure,
    _shared_range,
    _show,
    _target,
    _title,
    _wrap,
    literal,
)
from igkit.viz.display import (
    attribution_mask,
    channel_views,
    display_rgb,
    overlay,
    rgby_to_rgb,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["augment_figure", "channel_figure", "compare_grid", "rgby_figure"]

_HPA_CHANNELS = (
    "Red: microtubules",
    "Green: protein of interest",
    "Blue: nucleus",
    "Yellow: endoplasmic reticulum",
)
_CHANNEL_NAMES: dict[int, tuple[str, ...]] = {
    1: ("grey",),
    3: ("red", "green", "blue"),
    4: ("red", "green", "blue", "yellow"),
}


def compare_grid(
    images: ArrayLike | Sequence[ArrayLike],
    attributions: Sequence[ArrayLike | Result],
    titles: Sequence[str] | None = None,
    *,
    rows: Sequence[str] = ("image", "mask", "overlay"),
    cmap: str = "inferno",
    alpha: float = 0.4,
    shared_scale: bool = False,
    title: str | None = None,
    index: int = 0,
    baselines: ArrayLike | Sequence[ArrayLike] | None = None,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Several explanations side by side, one column each.

    Use it for several inputs or target classes, for one input under several baselines, or for
    an input and its augmentations (rotated, flipped, zoomed). Rows, chosen by ``rows``: the
    image, the baseline (when ``baselines`` are given, drawn on the image's value range so
    black looks black), the attribution mask ``sum_c |a|`` and the overlay. With
    ``shared_scale`` all masks use one colour scale (with one colour bar), so columns can be
    compared by brightness; otherwise each is scaled to its own maximum, which shows each map's
    shape best.

    Args:
        images: One image per column, or one image for every column.
        attributions: One attribution array (``(H, W, C)``) or Result per column.
        titles: Column titles.
        rows: Any of ``"image"``, ``"baseline"``, ``"mask"``, ``"overlay"``, in the order to
            draw (``"baseline"`` needs ``baselines``).
        cmap: Colormap of masks and overlays.
        alpha: Image weight in the overlays.
        shared_scale: One colour scale for all masks.
        title: Figure title.
        index: Which example of each batched Result to draw.
        baselines: One baseline per column, or one for every column, for the baseline row.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    n = len(attributions)
    if n == 0:
        raise ValueError("attributions is empty")
    single = isinstance(images, np.ndarray) and images.ndim in (2, 3)
    image_list = [images] * n if single else list(images)  # type: ignore[arg-type]
    if len(image_list) != n:
        raise ValueError(f"{len(image_list)} images for {n} attribution maps")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} columns")
    unknown = [r for r in rows if r not in ("image", "baseline", "mask", "overlay")]
    if unknown or not rows:
        raise ValueError(
            f"rows must be drawn from 'image', 'baseline', 'mask', 'overlay'; got {rows!r}"
        )
    base_list: list[ArrayLike] = []
    if baselines is not None:
        one = isinstance(baselines, np.ndarray) and baselines.ndim in (2, 3)
        base_list = [baselines] * n if one else list(baselines)  # type: ignore[arg-type]
        if len(base_list) != n:
            raise ValueError(f"{len(base_list)} baselines for {n} columns")
    elif "baseline" in rows:
        raise ValueError("the 'baseline' row needs baselines=")
    imgs = [_hwc(im, channel_axis, "image") for im in image_list]
    bases = [_hwc(b, channel_axis, "baseline") for b in base_list]
    masks = [attribution_mask(_hwc(_example(a, index)[0], channel_axis, "attributions"))
             for a in attributions]
    vmax = max(float(m.max()) for m in masks) if shared_scale else None
    vrange = (0.0, vmax) if vmax else None

    fig = _new_figure(3.0 * n + (0.8 if shared_scale else 0.0), 3.0 * len(rows) + 0.7)
    axs = np.array(fig.subplots(len(rows), n, squeeze=False))
    row_names = {
        "image": "input", "baseline": "baseline", "mask": "attribution mask", "overlay": "overlay"
    }
    im = None
    for j in range(n):
        img_rgb = display_rgb(imgs[j])
        for i, row in enumerate(rows):
            ax = axs[i, j]
            if row == "image":
                _show(ax, img_rgb)
            elif row == "baseline":
                _show(ax, display_rgb(bases[j], _shared_range(imgs[j], bases[j])))
                # A thin frame, so a white baseline is seen against the white page.
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_edgecolor("0.6")
            elif row == "mask":
                kwargs: dict[str, Any] = {"vmin": 0.0, "vmax": vmax} if vrange else {}
                im = _show(ax, masks[j], cmap=cmap, **kwargs)
            else:
                _show(ax, overlay(img_rgb, masks[j], cmap, alpha, value_range=vrange))
        if titles is not None:
            axs[0, j].set_title(literal(_wrap(str(titles[j]))), fontsize=_TITLE_SIZE)
    for i, row in enumerate(rows):
        # Row names as y labels: keep the axis on for the label but hide ticks and frame.
        ax = axs[i, 0]
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        if row != "baseline":  # baselines keep their frame
            for spine in ax.spines.values():
                spine.set_visible(False)
        ax.set_ylabel(literal(row_names[row]), fontsize=_TITLE_SIZE)
    if shared_scale and im is not None:
        fig.colorbar(im, ax=axs.ravel().tolist(), shrink=0.6, label="sum |attribution|")
    _title(fig, title)
    return _finish(fig, path)


def rgby_figure(
    image: ArrayLike,
    *,
    green_boost: float = 1.0,
    channel_names: Sequence[str] = _HPA_CHANNELS,
    value_max: float | None = None,
    title: str | None = None,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """A four-channel RGBY microscopy image: each channel in its colour, then the RGB blend.

    Args:
        image: ``(H, W, 4)`` in R, G, B, Y order.
        green_boost: Factor on green in the blend (see :func:`~igkit.viz.rgby_to_rgb`).
        channel_names: Panel titles of the four channels (the HPA stains by default).
        value_max: Full-intensity value; inferred when None.
        title: Figure title.
        channel_axis: Channel axis; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.

    Raises:
        ValueError: If the image does not have four channels.
    """
    img = _hwc(image, channel_axis, "image")
    if img.shape[-1] != 4:
        raise ValueError(f"rgby_figure expects four channels (R, G, B, Y); got shape {img.shape}")
    if len(channel_names) != 4:
        raise ValueError(f"channel_names needs four names; got {len(channel_names)}")
    views = channel_views(img, value_max=value_max)
    merged = rgby_to_rgb(img, green_boost, value_max=value_max)
    blend = "Merged RGBY as RGB" + (f"\n(green x {green_boost:g})" if green_boost != 1 else "")
    fig = _new_figure(17.0, 4.3)
    axs = fig.subplots(1, 5)
    for ax, view, name in zip(axs[:4], views, channel_names, strict=True):
        _show(ax, view, _wrap(name, 22))
    _show(axs[4], merged, blend)
    _title(fig, title)
    return _finish(fig, path)


def augment_figure(
    images: Sequence[ArrayLike],
    attributions: Sequence[ArrayLike | Result],
    names: Sequence[str],
    *,
    predictions: Sequence[tuple[str, float]] | None = None,
    label: str | None = None,
    title: str | None = None,
    cmap: str = "inferno",
    alpha: float = 0.4,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The TF tutorial's debugging comparison: an image and its augmentations side by side.

    One column per variant (original, rotated, flipped, zoomed, ...): the image and the IG
    overlay, titled with the variant, the model's top prediction on it and, for Results, the
    explained class's score and completeness error. A CNN is not rotation- or scale-invariant:
    where the prediction changes, the overlays show which parts of the picture moved the model.

    Args:
        images: One image per variant, ``(H, W, C)``.
        attributions: One attribution array or Result per variant.
        names: Variant names, e.g. ``["original", "rot90", "flip"]``.
        predictions: Per variant, the top-1 ``(class name, score)``.
        label: Name of the explained class, for the figure title.
        title: First line of the figure title.
        cmap: Colormap of the overlays.
        alpha: Image weight in the overlays.
        index: Which example of each batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    n = len(names)
    if len(images) != n or len(attributions) != n:
        raise ValueError(f"{len(images)} images and {len(attributions)} attributions for {n} names")
    if predictions is not None and len(predictions) != n:
        raise ValueError(f"{len(predictions)} predictions for {n} variants")
    titles = []
    explained: str | None = None
    for j, (name, attr) in enumerate(zip(names, attributions, strict=True)):
        lines = [name]
        if predictions is not None:
            top, p = predictions[j]
            # ImageNet names list synonyms after commas; the first is enough for a title.
            lines.append(f"top-1: {top.split(', ')[0]} {p:.2f}")
        if isinstance(attr, Result):
            t = _target(attr, index)
            explained = f"{label} (class {t})" if label else f"class {t}"
            score = float(np.asarray(attr.score).reshape(-1)[index])
            err = float(np.asarray(attr.relative_error).reshape(-1)[index])
            lines.append(f"class {t}: {score:.3f}, err {err:.1%}")
        titles.append("\n".join(lines))
    head = [title] if title else []
    if explained:
        head.append(f"IG of {explained} on each variant (overlay: image at alpha {alpha:g})")
    return compare_grid(
        list(images),
        list(attributions),
        titles,
        rows=("image", "overlay"),
        cmap=cmap,
        alpha=alpha,
        title="\n".join(head) or None,
        index=index,
        channel_axis=channel_axis,
        path=path,
    )


def channel_figure(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    *,
    channel_names: Sequence[str] | None = None,
    green_boost: float = 1.0,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Each channel of the input in its own colour, above that channel's attributions.

    Top row: the channels (red, green, blue, and yellow for four-channel RGBY microscopy), then
    the merged image (RGBY blended to RGB with ``green_boost``). Bottom row: each channel's signed
    attributions on one shared, symmetric scale (red for, blue against; clipped at the 99.5th
    percentile of ``|a|`` so a few extreme pixels do not hide the rest), titled with the
    channel's sum (its share of ``F(x) - F(x')`` by completeness) and its share of ``sum |a|``;
    then the tutorial's mask ``sum_c |a|``. Attributions may have fewer channels than the image
    (a channel dropped before the model); each is then labelled by its index.

    Args:
        image: The input, ``(H, W, C)``.
        attributions: ``(H, W, C')`` attributions or a Result.
        channel_names: Names of the image's channels; red/green/blue(/yellow) by default.
        green_boost: Factor on green in the merged view of four-channel images.
        title: First line of the figure title.
        label: Class name (see :func:`~igkit.viz.ig_panel`).
        index: Which example of a batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    img, attr, result = _image_and_attributions(image, attributions, index, channel_axis)
    attr = attr.astype(np.float64)
    c, ca = img.shape[-1], attr.shape[-1]
    names = list(channel_names or _CHANNEL_NAMES.get(c, tuple(f"channel {i}" for i in range(c))))
    if len(names) != c:
        raise ValueError(f"{len(names)} channel names for {c} channels")
    attr_names = names if ca == c else [f"attribution channel {i}" for i in range(ca)]
    merged = rgby_to_rgb(img, green_boost) if c == 4 else display_rgb(img)
    views = channel_views(img) if c <= 4 else [display_rgb(img[..., i : i + 1]) for i in range(c)]
    sums = attr.sum(axis=(0, 1))
    mass = np.abs(attr).sum(axis=(0, 1))
    total = float(mass.sum())
    limit = float(np.percentile(np.abs(attr), 99.5)) if attr.size else 0.0
    limit = limit if limit > 0 else float(np.abs(attr).max(initial=0.0)) or 1.0

    cols = max(c, ca) + 1
    fig = _new_figure(3.0 * cols + 0.8, 6.9 if result is None else 7.5)
    axs = np.array(fig.subplots(2, cols, squeeze=False))
    for i, view in enumerate(views):
        _show(axs[0, i], view, f"{names[i]} channel")
    merged_name = "merged (RGBY as RGB)" if c == 4 else "all channels"
    _show(axs[0, cols - 1], merged, merged_name)
    im = None
    for k in range(ca):
        share = float(mass[k]) / total if total > 0 else 0.0
        im = _show(
            axs[1, k],
            attr[..., k],
            f"{attr_names[k]}: sum {sums[k]:+.3g}\n{share:.0%} of sum |IG|",
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
        )
    _show(axs[1, cols - 1], attribution_mask(attr), "sum over channels\nof |IG|", cmap="inferno")
    for ax in list(axs[0, len(views) : cols - 1]) + list(axs[1, ca : cols - 1]):
        ax.set_visible(False)
    if im is not None:
        cb = fig.colorbar(im, ax=axs[1, :ca].tolist(), shrink=0.8, pad=0.02)
        cb.set_label("attribution (red for, blue against)")
    _title(fig, title, result, index, label, default="Attributions per channel")
    return _finish(fig, path)
