"""Figures for Integrated Gradients: the tutorial's panels, the Keras and HPA variants.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path=``, also saves it
as an image (PNG unless the suffix says otherwise) at 120 dpi with a tight bounding box. Figures
are built on matplotlib's Agg canvas directly, without ``pyplot``: they work headless, leave the
caller's current figure and backend alone, and are freed when no longer referenced, so there is
nothing to close. matplotlib is imported inside the functions, so ``import igkit.viz`` does not
import it.

Images and attributions are channels-last ``(H, W, C)``. Pass ``channel_axis=0`` (or convert
with :func:`igkit.viz.to_hwc`) for channels-first arrays such as PyTorch's; an array that is
plainly channels-first, ``(C, H, W)`` with ``C <= 4 < W``, is refused rather than drawn
scrambled. Where attributions are accepted a :class:`igkit.Result` may be passed instead; its
``index``-th example is drawn and its completeness numbers go into the title.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import PathTrace, Result
from igkit.viz.transforms import (
    PolarityName,
    RiemannRule,
    attribution_mask,
    channel_views,
    display_rgb,
    gradvis_image,
    infer_value_range,
    normalize_for_display,
    overlay,
    rgby_to_rgb,
    riemann_nodes,
    sign_masks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "compare_grid",
    "gradvis_figure",
    "ig_panel",
    "path_strip",
    "rgby_figure",
    "riemann_illustration",
    "saturation_plots",
    "saturation_trace",
    "sign_mask_figure",
]

PathLike = str | os.PathLike[str]

#: Resolution figures are saved at.
DPI = 120
_TITLE_SIZE = 11
_SUPTITLE_SIZE = 13
_HPA_CHANNELS = (
    "Red: microtubules",
    "Green: protein of interest",
    "Blue: nucleus",
    "Yellow: endoplasmic reticulum",
)


# ------------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on its own Agg canvas (no pyplot state involved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    """Save ``fig`` to ``path`` when given (creating its folder) and return it."""
    if path is not None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=DPI, bbox_inches="tight")
    return fig


def _image_and_attributions(
    image: np.ndarray, attributions: object, index: int, channel_axis: int | None
) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(image HWC, attributions HWC, Result or None)``, refusing different (H, W)."""
    attr_arr, result = _example(attributions, index)
    img = _hwc(image, channel_axis, "image")
    attr = _hwc(attr_arr, channel_axis, "attributions")
    if attr.shape[:2] != img.shape[:2]:
        raise ValueError(f"image {img.shape} and attributions {attr.shape} differ in (H, W)")
    return img, attr, result


def _hwc(array: ArrayLike, channel_axis: int | None, name: str) -> np.ndarray:
    """One image-like array as ``(H, W, C)``, refusing an obviously channels-first one."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be one image, (H, W, C) or (H, W); got shape {arr.shape}. "
            "Index a batch first"
        )
    if channel_axis is None:
        if arr.shape[0] <= 4 < arr.shape[-1]:
            raise ValueError(
                f"{name} has shape {arr.shape}, which looks channels-first (C, H, W); figures "
                "take channels-last (H, W, C). Pass channel_axis=0, or convert with "
                "igkit.viz.to_hwc(array, channel_axis=0)"
            )
        return arr
    if not -3 <= channel_axis < 3:
        raise ValueError(f"channel_axis={channel_axis} is not an axis of {name} {arr.shape}")
    return np.moveaxis(arr, channel_axis, -1)


def _example(attributions: ArrayLike | Result, index: int) -> tuple[np.ndarray, Result | None]:
    """The attribution array to draw and the Result it came from, if any."""
    if isinstance(attributions, Result):
        a = np.asarray(attributions.attributions)
        if not 0 <= index < len(attributions):
            raise IndexError(f"index {index} out of range for a Result of {len(attributions)}")
        if a.ndim == 4 or len(attributions) > 1:
            a = a[index]
        return a, attributions
    return np.asarray(attributions), None


def _result_line(result: Result, index: int, label: str | None) -> str:
    """Class, score and completeness of one example, for a title."""
    target = int(np.asarray(result.target)[index])
    name = f"{label} (class {target})" if label else f"class {target}"
    err = float(result.relative_error[index])
    verdict = "OK" if err <= result.tol else "NOT met"
    relation = "<=" if err <= result.tol else ">"
    return (
        f"{name}: score {float(result.score[index]):.4g}\n"
        f"completeness {verdict}: relative error {100 * err:.3g}% {relation} "
        f"tolerance {100 * result.tol:.3g}% "
        f"({int(result.steps[index])} steps, {result.method})"
    )


def _title(
    fig: Figure,
    title: str | None,
    result: Result | None = None,
    index: int = 0,
    label: str | None = None,
    default: str | None = None,
) -> None:
    """Set the figure's suptitle from ``title``, a Result's numbers and a label."""
    lines = []
    if title:
        lines.append(title)
    elif label and result is None:
        lines.append(label)
    if result is not None:
        lines.append(_result_line(result, index, label))
    if not lines and default:
        lines.append(default)
    if lines:
        fig.suptitle("\n".join(lines), fontsize=_SUPTITLE_SIZE)


def _show(ax: Axes, image: np.ndarray, title: str | None = None, **kwargs: Any) -> Any:
    """Draw an image without ticks and frame, with an optional panel title."""
    im = ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=_TITLE_SIZE)
    return im


def _shared_range(*arrays: np.ndarray) -> tuple[float, float]:
    """One display range for several images, so they are drawn on the same scale.

    Integer arrays contribute their dtype's range, float arrays the range inferred from all
    their values together; the union is returned.
    """
    ranges = [infer_value_range(a) for a in arrays if a.dtype.kind in "iub"]
    floats = [np.asarray(a, dtype=np.float64).ravel() for a in arrays if a.dtype.kind not in "iub"]
    if floats:
        ranges.append(infer_value_range(np.concatenate(floats)))
    return (min(r[0] for r in ranges), max(r[1] for r in ranges))


def _wrap(text: str, width: int = 28) -> str:
    """Wrap each line of ``text`` to ``width`` characters, keeping the line breaks given."""
    return "\n".join(
        "\n".join(textwrap.wrap(line, width)) if len(line) > width else line
        for line in text.split("\n")
    )


# --------------------------------------------------------------------------------- figures


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
    im = _show(axs[1, 0], mask, "Attribution mask\n(sum over channels of |IG|)", cmap=cmap)
    _show(axs[1, 1], overlay(img_rgb, mask, cmap, alpha), f"Overlay\n(image at alpha {alpha:g})")
    if colorbar:
        cb = fig.colorbar(im, ax=axs[1, :], shrink=0.85, pad=0.02)
        cb.set_label("sum |attribution|")
    _title(fig, title, result, index, label, default="Integrated Gradients")
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
    lower_end: float = 0.0,
    cleanup: bool = False,
    structure: np.ndarray | None = None,
    outlines: bool = False,
    outline_percentage: float = 90.0,
    draw_overlay: bool = True,
    positive_color: Sequence[float] = (0.0, 1.0, 0.0),
    negative_color: Sequence[float] = (1.0, 0.0, 0.0),
    alpha: float = 0.2,
    title: str | None = None,
    label: str | None = None,
    index: int = 0,
    channel_axis: int | None = None,
    path: PathLike | None = None,
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
        lower_end: Display value of the weakest kept attribution (0 as in the Keras example;
            use e.g. 0.2 with ``clip_below > 0``).
        cleanup: Apply the morphological clean-up.
        structure: Structuring element of the clean-up (3 x 3 when None).
        outlines: Draw outlines of the strongest components instead of the mask.
        outline_percentage: Share of mass the outlined components must reach.
        draw_overlay: Paint over the image rather than on black.
        positive_color: RGB of positive evidence.
        negative_color: RGB of negative evidence.
        alpha: Image weight where the mask is full.
        title: First line of the figure title.
        label: Class name (see :func:`ig_panel`).
        index: Which example of a batched Result to draw.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    attr_arr, result = _example(attributions, index)
    img = _hwc(image, channel_axis, "image")
    img_rgb = display_rgb(img)
    process = partial(
        gradvis_image,
        mode=polarity,
        clip_above=clip_above,
        clip_below=clip_below,
        lower_end=lower_end,
        cleanup=cleanup,
        structure=structure,
        outlines=outlines,
        outline_percentage=outline_percentage,
        draw_overlay=draw_overlay,
        positive_color=positive_color,
        negative_color=negative_color,
        alpha=alpha,
    )
    panels: list[tuple[np.ndarray, str]] = [(img_rgb, "Input")]
    if gradients is not None:
        panels.append((process(img_rgb, _hwc(gradients, channel_axis, "gradients")), "Gradients"))
    attr = _hwc(attr_arr, channel_axis, "attributions")
    panels.append((process(img_rgb, attr), "Integrated gradients"))

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


def path_strip(
    baseline: ArrayLike,
    image: ArrayLike,
    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    *,
    title: str | None = None,
    channel_axis: int | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The straight-line path from baseline to image: ``x' + alpha * (x - x')`` per panel.

    All panels share one display range, so the brightening along the path is what is seen.

    Args:
        baseline: The baseline, ``(H, W, C)``.
        image: The input, same shape.
        alphas: Interpolation constants in ``[0, 1]`` to show.
        title: Figure title.
        channel_axis: Channel axis of the arrays; None means channels-last.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    base = _hwc(baseline, channel_axis, "baseline")
    img = _hwc(image, channel_axis, "image")
    if base.shape != img.shape:
        raise ValueError(f"baseline {base.shape} and image {img.shape} differ in shape")
    steps = [float(a) for a in alphas]
    if not steps:
        raise ValueError("alphas is empty")
    rng = _shared_range(img, base)
    b64, x64 = base.astype(np.float64), img.astype(np.float64)
    fig = _new_figure(2.6 * len(steps), 3.4)
    axs = np.atleast_1d(fig.subplots(1, len(steps)))
    for ax, a in zip(axs, steps, strict=True):
        name = f"alpha = {a:.2f}"
        if a == 0.0:
            name += "\n(baseline)"
        elif a == 1.0:
            name += "\n(input)"
        _show(ax, display_rgb(b64 + a * (x64 - b64), rng), name)
    _title(fig, title, default="Interpolated images along the path")
    return _finish(fig, path)


def saturation_trace(result: Result, index: int = 0) -> PathTrace:
    """One input's path trace with the path's two ends added: what the saturation plots draw.

    The engine records the score and mean ``|gradient|`` at the alphas its rule evaluates; rules
    such as Gauss-Legendre never evaluate the ends. The Result knows the score at both anyway,
    ``F(x')`` at alpha 0 and ``F(x)`` at alpha 1, so they are added where missing, with a NaN
    mean gradient (not evaluated there; the plots skip it). With several baselines the trace is
    the first baseline's path while ``baseline_score`` is their average, so alpha 0 is then
    added only if the rule evaluated it.

    Args:
        result: A Result computed with ``return_path=True``.
        index: Which input.

    Returns:
        A :class:`~igkit.PathTrace` of one input, alphas increasing from 0 to 1.

    Raises:
        ValueError: If the Result has no path trace.
    """
    if result.path is None:
        raise ValueError("this Result has no path trace; compute it with return_path=True")
    alphas = np.asarray(result.path.alphas[index], dtype=np.float64)
    scores = np.asarray(result.path.scores[index], dtype=np.float64)
    grads = np.asarray(result.path.mean_abs_gradient[index], dtype=np.float64)
    ends = [(1.0, float(np.asarray(result.score).reshape(-1)[index]))]
    if len(result.baselines) == 1:
        ends.append((0.0, float(np.asarray(result.baseline_score).reshape(-1)[index])))
    for alpha, score in ends:
        if not np.any(np.isclose(alphas, alpha, rtol=0.0, atol=1e-9)):
            alphas = np.append(alphas, alpha)
            scores = np.append(scores, score)
            grads = np.append(grads, np.nan)
    order = np.argsort(alphas, kind="stable")
    return PathTrace([alphas[order]], [scores[order]], [grads[order]])


def saturation_plots(
    trace: PathTrace | Result,
    index: int = 0,
    *,
    score_label: str | None = None,
    title: str | None = None,
    label: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The tutorial's saturation plots: target score and mean gradient over alpha.

    Left, the target score ``F(x' + alpha (x - x'))`` at the evaluated alphas (limited to
    ``[0, 1]`` when it is a probability). Right, the mean ``|dF/dx|`` over the input's elements,
    min-max normalised. A score that flattens early while the gradient falls to zero is the
    saturation that makes plain gradients miss features and that IG integrates over.

    Args:
        trace: A :class:`~igkit.PathTrace`, or a Result computed with ``return_path=True``; a
            Result's curves also get the path's ends (:func:`saturation_trace`) and its class,
            score and completeness go into the title.
        index: Which input's path to draw.
        score_label: y-axis label of the score; "model p(target class)" for scores in
            ``[0, 1]``, else "target score F".
        title: Figure title.
        label: Class name, for the title when a Result is given.
        path: Where to save the figure.

    Returns:
        The figure.

    Raises:
        ValueError: If a Result without a path trace is given.
    """
    result: Result | None = None
    result_index = index
    if isinstance(trace, Result):
        result = trace
        trace = saturation_trace(trace, index)
        index = 0
    alphas = np.asarray(trace.alphas[index], dtype=np.float64)
    scores = np.asarray(trace.scores[index], dtype=np.float64)
    grads = np.asarray(trace.mean_abs_gradient[index], dtype=np.float64)
    order = np.argsort(alphas, kind="stable")
    alphas, scores, grads = alphas[order], scores[order], grads[order]
    is_prob = bool(scores.size and scores.min() >= 0.0 and scores.max() <= 1.0)
    marker = "o" if alphas.size <= 64 else None
    # Gradients may be missing (NaN) where only the score is known, e.g. at the path's ends.
    known = np.isfinite(grads)

    fig = _new_figure(10.0, 4.2 if result is None else 4.7)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(alphas, scores, marker=marker, markersize=3)
    ax1.set_title("Target class score over alpha", fontsize=_TITLE_SIZE)
    ax1.set_xlabel("alpha")
    ax1.set_ylabel(score_label or ("model p(target class)" if is_prob else "target score F"))
    ax1.set_xlim(0.0, 1.0)
    if is_prob:
        ax1.set_ylim(0.0, 1.0)
    ax2.plot(
        alphas[known], normalize_for_display(grads[known]), marker=marker, markersize=3,
        color="C1",
    )
    ax2.set_title("Mean |gradient| (normalised) over alpha", fontsize=_TITLE_SIZE)
    ax2.set_xlabel("alpha")
    ax2.set_ylabel("mean |dF/dx|, min-max scaled")
    ax2.set_xlim(0.0, 1.0)
    ax2.set_ylim(-0.02, 1.02)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    _title(fig, title, result, result_index, label)
    return _finish(fig, path)


def riemann_illustration(
    fn: Callable[[np.ndarray], np.ndarray] | None = None,
    steps: int = 5,
    *,
    start: float = 0.0,
    end: float = 1.0,
    exact: float | None = None,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The tutorial's picture of left, right, midpoint and trapezoid Riemann sums.

    Each panel draws ``fn`` on ``[start, end]``, the ``steps`` rectangles (or trapezoids) of one
    rule, its sample points, and its value against the exact integral, so the error of each rule
    is visible and stated.

    Args:
        fn: Vectorised function of one variable; ``sin(pi x)`` when None (integral ``2 / pi``
            on ``[0, 1]``), a stand-in for how one feature's gradient varies along the path.
        steps: Number of intervals.
        start: Lower limit.
        end: Upper limit.
        exact: The true integral; computed by a fine trapezoid rule when None (and ``fn`` is
            not the default).
        title: Figure title.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    default_fn = fn is None
    f: Callable[[np.ndarray], np.ndarray] = (
        (lambda x: np.sin(np.pi * x)) if fn is None else fn
    )
    if exact is None:
        if default_fn and (start, end) == (0.0, 1.0):
            exact = 2.0 / np.pi
        else:
            fine, weights = riemann_nodes("trapezoid", 1 << 14, start, end)
            exact = float(np.sum(weights * np.asarray(f(fine), dtype=np.float64)))
    xs = np.linspace(start, end, 400)
    ys = np.asarray(f(xs), dtype=np.float64)
    h = (end - start) / steps
    names: dict[RiemannRule, str] = {
        "left": "Left", "right": "Right", "midpoint": "Midpoint", "trapezoid": "Trapezoidal"
    }

    fig = _new_figure(16.0, 4.4)
    axs = fig.subplots(1, 4, sharey=True)
    for ax, (rule, name) in zip(axs, names.items(), strict=True):
        nodes, weights = riemann_nodes(rule, steps, start, end)
        heights = np.asarray(f(nodes), dtype=np.float64)
        value = float(np.sum(weights * heights))
        ax.plot(xs, ys, color="C0", linewidth=1.5, zorder=3)
        if rule == "trapezoid":
            for i in range(steps):
                ax.fill(
                    [nodes[i], nodes[i], nodes[i + 1], nodes[i + 1]],
                    [0.0, heights[i], heights[i + 1], 0.0],
                    facecolor="C0", edgecolor="C0", alpha=0.25,
                )
        else:
            left = nodes - {"left": 0.0, "right": h, "midpoint": h / 2}[rule]
            ax.bar(left, heights, width=h, align="edge", color="C0", alpha=0.25, edgecolor="C0")
        ax.plot(nodes, heights, "o", color="C3", markersize=5, zorder=4, clip_on=False)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_title(
            f"{name} Riemann sum, m = {steps}\n{value:.4f} (exact {exact:.4f}, "
            f"error {value - exact:+.4f})",
            fontsize=_TITLE_SIZE,
        )
        ax.set_xlabel("alpha")
    low, high = min(0.0, float(ys.min())), max(0.0, float(ys.max()))
    pad = 0.06 * (high - low if high > low else 1.0)
    axs[0].set_ylim(low - pad, high + pad)
    axs[0].set_ylabel("sin(pi alpha)" if default_fn else "f(alpha)")
    _title(fig, title)
    return _finish(fig, path)


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
                kwargs = {"vmin": 0.0, "vmax": vmax} if vrange else {}
                im = _show(ax, masks[j], cmap=cmap, **kwargs)
            else:
                _show(ax, overlay(img_rgb, masks[j], cmap, alpha, value_range=vrange))
        if titles is not None:
            axs[0, j].set_title(_wrap(str(titles[j])), fontsize=_TITLE_SIZE)
    for i, row in enumerate(rows):
        # Row names as y labels: keep the axis on for the label but hide ticks and frame.
        ax = axs[i, 0]
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
        if row != "baseline":  # baselines keep their frame
            for spine in ax.spines.values():
                spine.set_visible(False)
        ax.set_ylabel(row_names[row], fontsize=_TITLE_SIZE)
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
