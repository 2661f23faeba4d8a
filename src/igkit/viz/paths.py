"""The path from baseline to input: interpolated images and the saturation plots.

:func:`path_strip` draws ``x' + alpha (x - x')`` at a few alphas; :func:`saturation_plots` the
target score and mean gradient along the path (from :func:`saturation_trace`). Conventions:
:mod:`igkit.viz.figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import PathTrace, Result
from igkit.viz._draw import (
    _TITLE_SIZE,
    PathLike,
    _finish,
    _hwc,
    _new_figure,
    _shared_range,
    _show,
    _title,
    literal,
)
from igkit.viz.display import display_rgb, normalize_for_display

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["path_strip", "saturation_plots", "saturation_trace"]


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
    ax1.set_ylabel(literal(score_label or ("model p(target class)" if is_prob
                                           else "target score F")))
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
