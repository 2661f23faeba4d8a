"""Shared plumbing of igkit's figures: the Agg canvas, saving, layouts, titles and panels.

Private to :mod:`igkit.viz`; the conventions it implements are described in
:mod:`igkit.viz.figures`.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz.display import infer_value_range

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]

#: Resolution figures are saved at.
DPI = 120
_TITLE_SIZE = 11
_SUPTITLE_SIZE = 13


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on its own Agg canvas (no pyplot state involved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    """Save ``fig`` to ``path`` when given (creating its folder, atomically, in the format the
    suffix names: png by default) and return it."""
    if path is not None:
        from igkit.io.writers import atomic_open

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target) as handle:
            fig.savefig(handle, dpi=DPI, bbox_inches="tight", format=target.suffix[1:] or "png")
    return fig


def _image_and_attributions(
    image: ArrayLike, attributions: ArrayLike | Result, index: int, channel_axis: int | None
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


def literal(text: object) -> str:
    """``text`` as matplotlib shows it verbatim: every ``$`` escaped.

    matplotlib reads text between two unescaped ``$`` as mathtext: a class named ``$x$`` loses
    its dollars (drawn as an italic x), ``a $ b $ c`` draws as ``a  b  c``, and ``$x^$`` stops
    the figure with a parse error. With every ``$`` escaped no text is math, which is the only
    way into mathtext; matplotlib then draws ``\\$`` as ``$`` and every other character,
    backslashes included, as itself. Every title and label drawn from data goes through here
    once, where it is drawn (:func:`_title`, :func:`_show`, the axis labels of the figures and
    :mod:`igkit.report.charts`), so text composed earlier is never escaped twice.
    """
    return str(text).replace("$", "\\$")


def method_title(result: Result | None) -> str:
    """The short name of what made ``result``'s map, for panel labels: "IG" for Integrated
    Gradients, else the method's name (``saliency``, ``grad_cam``, ...)."""
    if result is None or result.attribution_method == "integrated_gradients":
        return "IG"
    return result.attribution_method


def _result_line(result: Result, index: int, label: str | None) -> str:
    """Class, score and completeness of one example, for a title."""
    target = int(np.asarray(result.target)[index])
    name = f"{label} (class {target})" if label else f"class {target}"
    if not result.complete:
        return (
            f"{name}: score {float(result.score[index]):.4g}\n"
            f"{result.attribution_method} (no completeness claim; "
            f"{int(result.evaluations[index])} model evaluations)"
        )
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
        fig.suptitle(literal("\n".join(lines)), fontsize=_SUPTITLE_SIZE)


def _show(ax: Axes, image: np.ndarray, title: str | None = None, **kwargs: Any) -> Any:
    """Draw an image without ticks and frame, with an optional panel title."""
    im = ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    if title:
        ax.set_title(literal(title), fontsize=_TITLE_SIZE)
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


def _target(result: Result, index: int) -> int:
    return int(np.asarray(result.target).reshape(-1)[index])
