"""The per-pixel pictures of one explanation: the tutorial's panel, sign masks, gradvis.

:func:`ig_panel` (the TF tutorial's 2 x 2 figure), :func:`sign_mask_figure` (the HPA notebook's
red / blue masks), :func:`gradvis_figure` (the Keras example's visualiser, any settings) and
:func:`keras_gradvis_figure` (the Keras example's two settings, plain gradients beside IG).
Conventions: :mod:`igkit.viz.figures`.
"""

from __future__ import annotations

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
    _title,
    literal,
    method_title,
)
from igkit.viz.display import attribution_mask, display_rgb, overlay, sign_masks
from igkit.viz.gradvis import PolarityName, gradvis_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "gradvis_figure", "ig_panel", "keras_gradvis_figure", "regions_figure", "sign_mask_figure",
]


def ig_panel(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    baseline: ArrayLike | None = None,
    *,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    cmap: str = "inferno",
    alpha: float = 0.4,
    colorbar: bool = True,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The TF tutorial's 2 x 2 figure: baseline, image, attribution mask, overlay.

    The mask is ``sum_c |attribution|`` (:func:`~igkit.viz.attribution_mask`) drawn with
    ``cmap``; the overlay draws the image at ``alpha`` over the coloured mask. Baseline and image
    are drawn on one shared value range, so a black baseline looks black.

    Args:
        image: The explained input, ``(H, W, C)``.
        attributions: ``(H, W, C)`` attributions, or a :class:`~igkit.Result`.
        baseline: The baseline; a black image when None.
        title: First line of the figure title.
        label: Class name; with a Result the title then reads "label (class k): score ...,
            completeness ...".
        index: Which example of a batched Result to draw.
        cmap: Colormap of the mask (the tutorial uses inferno).
        alpha: Image weight in the overlay.
        colorbar: Add a colour bar for the mask.
        channel_axis: Channel axis of image, baseline and attributions; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    attr_arr, result = _example(attributions, index)
    img = _hwc(image, channel_axis, "image")
    attr = _hwc(attr_arr, channel_axis, "attributions")
    base = np.zeros_like(img) if baseline is None else _hwc(baseline, channel_axis, "baseline")
    if attr.shape[:2] != img.shape[:2] or base.shape != img.shape:
        raise ValueError(
            f"shapes differ: image {img.shape}, baseline {base.shape}, attributions {attr.shape}"
        )
    rng = _shared_range(img, base)
    img_rgb, base_rgb = display_rgb(img, rng), display_rgb(base, rng)
    mask = attribution_mask(attr)

    fig = _new_figure(8.0, 8.6 if result is None else 9.0)
    axs = fig.subplots(2, 2)
    _show(axs[0, 0], base_rgb, "Baseline image")
    _show(axs[0, 1], img_rgb, "Original image")
    what = method_title(result)
    im = _show(axs[1, 0], mask, f"Attribution mask\n(sum over channels of |{what}|)", cmap=cmap)
    _show(axs[1, 1], overlay(img_rgb, mask, cmap, alpha), f"Overlay\n(image at alpha {alpha:g})")
    if colorbar:
        cb = fig.colorbar(im, ax=axs[1, :], shrink=0.85, pad=0.02)
        cb.set_label("sum |attribution|")
    _title(fig, title, result, index, label,
           default="Integrated Gradients" if what == "IG" else what)
    return _finish(fig, path)


def sign_mask_figure(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    baseline: ArrayLike | None = None,
    *,
    power: float = 1.0,
    alpha: float = 0.5,
    shared_scale: bool = False,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The HPA notebook's figure: positive attributions in red, negative in blue.

    Panels: the image, the positive mask, the negative mask, then the baseline (when given), both
    masks combined and the combined mask under the image at ``alpha``. Masks come from
    :func:`~igkit.viz.sign_masks` with ``power``; the image may have any channel count (four are
    shown as RGBY blended to RGB).

    Args:
        image: The explained input, ``(H, W, C)``.
        attributions: ``(H, W, C')`` attributions (``C'`` may differ from ``C``) or a Result.
        baseline: The baseline, drawn when given.
        power: Rescale power; larger values brighten weak attributions.
        alpha: Image weight in the overlay.
        shared_scale: Scale both signs by the same maximum.
        title: First line of the figure title.
        label: Class name (see :func:`ig_panel`).
        index: Which example of a batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    img, attr, result = _image_and_attributions(image, attributions, index, channel_axis)
    masks = sign_masks(attr, power, shared_scale=shared_scale)
    arrays = [img] if baseline is None else [img, _hwc(baseline, channel_axis, "baseline")]
    rng = _shared_range(*arrays)
    img_rgb = display_rgb(img, rng)
    combined = masks.combined
    suffix = f" (power {power:g})" if power != 1 else ""
    panels: list[tuple[np.ndarray, str]] = [
        (img_rgb, "Original image"),
        (masks.positive, "Positive attributions" + suffix),
        (masks.negative, "Negative attributions" + suffix),
    ]
    if baseline is not None:
        panels.append((display_rgb(arrays[1], rng), "Baseline image"))
    panels += [
        (combined, "Both signs\n(red +, blue -)"),
        (np.clip(alpha * img_rgb + (1 - alpha) * combined, 0, 1), f"Overlay (image at {alpha:g})"),
    ]
    rows = 2
    fig = _new_figure(11.0, 7.8 if result is None else 8.3)
    axs = fig.subplots(rows, 3)
    for ax, (picture, name) in zip(axs.ravel(), panels, strict=False):
        _show(ax, picture, name)
    for ax in axs.ravel()[len(panels):]:
        ax.set_visible(False)
    _title(fig, title, result, index, label, default="Attributions by sign")
    return _finish(fig, path)


def gradvis_figure(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    gradients: ArrayLike | None = None,
    *,
    polarity: PolarityName = "positive",
    clip_above: float = 99.9,
    clip_below: float = 0.0,
    cleanup: bool = False,
    outlines: bool = False,
    outline_percentage: float = 90.0,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
    **style: Any,
) -> Figure:
    """The Keras example's visualiser: input, plain gradients (when given) and IG, processed.

    Both attribution maps go through :func:`~igkit.viz.gradvis_image` with the same settings:
    polarity, clipping at cumulative-mass percentiles, the linear ramp from ``lower_end`` to 1,
    optional morphological clean-up and outlines of the strongest components, painted in green
    (positive) / red (negative) over the image. Seeing gradients beside IG shows what
    integrating along the path adds: gradients of a saturated model are noisy and scattered.

    Args:
        image: The explained input, ``(H, W, C)``.
        attributions: IG attributions ``(H, W, C)`` or a Result.
        gradients: Plain gradients at the input, same layout; the panel is left out when None.
        polarity: ``"positive"``, ``"negative"`` or ``"both"``.
        clip_above: Percentile of cumulative mass saturated.
        clip_below: Percentile of cumulative mass dropped.
        cleanup: Apply the morphological clean-up.
        outlines: Draw outlines of the strongest components instead of the mask.
        outline_percentage: Share of mass the outlined components must reach.
        title: First line of the figure title.
        label: Class name (see :func:`ig_panel`).
        index: Which example of a batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.
        **style: How the maps are painted, passed on to :func:`~igkit.viz.gradvis_image` with
            its defaults: ``lower_end`` (display value of the weakest kept attribution, 0 as in
            the Keras example; e.g. 0.2 with ``clip_below > 0``), ``structure`` (of the
            clean-up, 3 x 3 when None), ``draw_overlay`` (paint over the image rather than on
            black), ``positive_color`` / ``negative_color`` (RGB of the evidence, green / red)
            and ``alpha`` (image weight where the mask is full, 0.2).

    Returns:
        The figure.
    """
    attr_arr, result = _example(attributions, index)
    img = _hwc(image, channel_axis, "image")
    img_rgb = display_rgb(img)
    settings: dict[str, Any] = {
        "mode": polarity,
        "clip_above": clip_above,
        "clip_below": clip_below,
        "cleanup": cleanup,
        "outlines": outlines,
        "outline_percentage": outline_percentage,
    }
    settings.update(style)
    panels: list[tuple[np.ndarray, str]] = [(img_rgb, "Input")]
    if gradients is not None:
        grads = _hwc(gradients, channel_axis, "gradients")
        panels.append((gradvis_image(img_rgb, grads, **settings), "Gradients"))
    attr = _hwc(attr_arr, channel_axis, "attributions")
    panels.append((gradvis_image(img_rgb, attr, **settings), "Integrated gradients"))

    fig = _new_figure(4.0 * len(panels), 4.9 if result is None else 5.4)
    axs = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (picture, name) in zip(axs, panels, strict=True):
        _show(ax, picture, name)
    sign = {"positive": "positive (green)", "negative": "negative (red)",
            "both": "positive (green) and negative (red)"}[polarity]
    steps = [f"{sign} evidence", f"clipped at {clip_above:g}% / {clip_below:g}% of mass"]
    if cleanup:
        steps.append("cleaned up")
    if outlines:
        steps.append(f"outlines of top components ({outline_percentage:g}% of mass)")
    fig.supxlabel(", ".join(steps), fontsize=_TITLE_SIZE - 1)
    _title(fig, title, result, index, label)
    return _finish(fig, path)


def keras_gradvis_figure(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    gradients: ArrayLike,
    *,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
    names: tuple[str, str] | None = None,
) -> Figure:
    """The Keras example's two visualisations of plain gradients beside IG, one per row, or of
    any two methods' maps side by side (``names``).

    Columns: the input, plain gradients, integrated gradients, each processed by
    :func:`~igkit.viz.gradvis_image` with the example's settings. Top row: positive evidence
    clipped at 99 % of the cumulative mass, painted green over the image. Bottom row: clipped at
    95 % / 28 %, morphologically cleaned up, and only the outlines of the strongest connected
    components drawn. Gradients of a saturated model are scattered specks; IG, integrated along
    the path, gathers on the object.

    Args:
        image: The explained input, ``(H, W, C)``.
        attributions: IG attributions ``(H, W, C)`` or a Result.
        gradients: Plain gradients at the input, same layout.
        title: First line of the figure title.
        label: Class name (see :func:`~igkit.viz.ig_panel`).
        index: Which example of a batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.
        names: Column titles of ``gradients`` and ``attributions``, for two other methods
            (e.g. ``("SmoothGrad", "XRAI")`` with their maps); default plain gradients and,
            for a Result, the method that made it.

    Returns:
        The figure.
    """
    from igkit.viz.transforms import gradvis_image

    attr_arr, result = _example(attributions, index)
    img_rgb = display_rgb(_hwc(image, channel_axis, "image"))
    if names is None:
        second = "IG" if result is None else method_title(result)
        names = ("Plain gradients", "Integrated gradients" if second == "IG" else second)
    maps = {
        names[0]: _hwc(gradients, channel_axis, "gradients"),
        names[1]: _hwc(attr_arr, channel_axis, "attributions"),
    }
    if len(maps) != 2:
        raise ValueError(f"names must be two different titles, got {names!r}")
    settings: list[tuple[str, dict[str, Any]]] = [
        ("positive evidence,\nclipped at 99% of mass", {"clip_above": 99.0, "clip_below": 0.0}),
        (
            "outlines of the top components,\nclipped at 95% / 28% of mass, cleaned up",
            {"clip_above": 95.0, "clip_below": 28.0, "cleanup": True, "outlines": True},
        ),
    ]
    fig = _new_figure(12.0, 8.6 if result is None else 9.2)
    axs = np.array(fig.subplots(2, 3, squeeze=False))
    for row, (caption, options) in enumerate(settings):
        _show(axs[row, 0], img_rgb, "Input" if row == 0 else None)
        for col, (name, values) in enumerate(maps.items(), start=1):
            _show(
                axs[row, col],
                gradvis_image(img_rgb, values, mode="positive", **options),
                name if row == 0 else None,
            )
        ax = axs[row, 0]
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(literal(caption), fontsize=10)
    _title(fig, title, result, index, label, default="Gradients and integrated gradients")
    return _finish(fig, path)


def regions_figure(
    image: ArrayLike,
    attributions: ArrayLike | Result,
    *,
    top: float = 0.3,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The PAIR notebook's XRAI figure, for any method: the image, the attribution map as a
    heatmap, and the image with only its most salient ``top`` share of pixels shown.

    For ``xrai`` the map is constant on each region, so the top share is whole regions.

    Args:
        image: The explained input, ``(H, W, C)``.
        attributions: ``(H, W, C)`` attributions or a Result.
        top: The share of pixels kept in the third panel (PAIR shows 30 %).
        title, label, index, channel_axis, path: As for :func:`ig_panel`.
    """
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must be in (0, 1], got {top!r}")
    attr_arr, result = _example(attributions, index)
    img_rgb = display_rgb(_hwc(image, channel_axis, "image"))
    attr = _hwc(attr_arr, channel_axis, "attributions")
    heat = np.asarray(attr, dtype=np.float64).sum(axis=-1)
    keep = heat >= np.percentile(heat, 100.0 * (1.0 - top))
    shown = np.where(keep[..., None], img_rgb, 0.0)
    what = method_title(result)
    fig = _new_figure(12.0, 4.6 if result is None else 5.2)
    axs = fig.subplots(1, 3)
    _show(axs[0], img_rgb, "Input")
    _show(axs[1], heat, f"{what} heatmap", cmap="inferno")
    _show(axs[2], shown, f"Top {top:.0%} of {what}")
    _title(fig, title, result, index, label, default=what)
    return _finish(fig, path)
