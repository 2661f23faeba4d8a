"""An explanation as HTML for Jupyter: the completeness check in words, its numbers, a figure.

:func:`result_html` renders one input of an :class:`igkit.Result` (every target of it, for a
multi-target Result): the completeness sentence of :meth:`~igkit.Result.completeness_report`,
the key numbers in a table, and inline as a base64 PNG the TF tutorial's panel
(:func:`~igkit.viz.ig_panel`) when the Result carries its inputs, else the attribution map
(``sum_c |attribution|``). Every string is escaped. matplotlib is imported when the figure is
drawn, and its absence leaves the words and numbers.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.core.result import Result
from igkit.viz._draw import _finish, _new_figure, _show, _title, method_title
from igkit.viz.display import attribution_mask

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["result_html"]

#: Resolution of the inline figures (smaller than saved ones: they sit in a notebook cell).
NOTEBOOK_DPI = 80


def result_html(
    result: Result,
    index: int = 0,
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
) -> str:
    """An HTML snippet showing input ``index`` of ``result``: words, numbers and a figure.

    Per explanation of the input (one; one per target for a multi-target Result): the
    completeness check in words, a table of the target, ``F(x)``, ``F(x')``, delta, relative
    error, steps, evaluations, method and baselines, and an inline PNG. The PNG is the TF
    tutorial's panel (baseline, input, mask, overlay) when the Result carries ``inputs`` (and
    ``baseline_inputs``, or a black baseline), else the attribution map ``sum_c |a|``; inputs
    that are not images (rank other than 2 or 3 per example) get no figure.

    Args:
        result: The Result.
        index: Which input.
        labels: Class names, indexed by class (a list such as ImageNet's, or a mapping).

    Returns:
        The HTML, every string from data escaped.

    Raises:
        IndexError: If ``index`` is not an input of ``result``.
    """
    if not 0 <= index < len(result):
        raise IndexError(f"index {index} out of range for a Result of {len(result)}")
    parts = ['<div class="igkit-result">']
    for (i, slot), single in zip(result.pairs(), result.per_target(), strict=True):
        if i != index:
            continue
        words = (
            result.completeness_report(index, slot)
            if result.multi_target
            else result.completeness_report(index)
        )
        numbers = single.numbers(0)
        label = _label(labels, int(numbers["target"]))  # type: ignore[call-overload]
        parts.append('<div class="igkit-explanation" style="margin-bottom:1em">')
        parts.append(f"<p><b>{html.escape(_heading(numbers['target'], label))}</b>: ")
        parts.append(f"{html.escape(words)}</p>")
        parts.append(_table(single, numbers))
        png = _figure_png(result, single, index, label)
        if png is not None:
            alt = html.escape(f"attributions for {_heading(numbers['target'], label)}")
            parts.append(
                f'<img src="data:image/png;base64,{png}" alt="{alt}" style="max-width:100%"/>'
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _label(labels: Sequence[str] | Mapping[int, str] | None, target: int) -> str | None:
    if labels is None:
        return None
    try:
        return str(labels[target])
    except (IndexError, KeyError):
        return None


def _heading(target: object, label: str | None) -> str:
    return f"{label} (class {target})" if label else f"class {target}"


def _table(single: Result, numbers: dict[str, object]) -> str:
    """The key numbers of one explanation as an HTML table."""
    rows = [
        ("target", f"{numbers['target']}"),
        ("score F(x)", f"{numbers['score']:.6g}"),
        ("baseline score F(x')", f"{numbers['baseline_score']:.6g}"),
        ("delta", f"{numbers['delta']:.3g}"),
        ("relative error", f"{numbers['relative_error']:.3%} (tolerance {single.tol:.1%})"),
        ("steps", f"{numbers['steps']}"),
        ("evaluations", f"{numbers['evaluations']}"),
        ("method", str(single.method)),
        ("baselines", ", ".join(str(b) for b in single.baselines)),
    ]
    cells = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{html.escape(k)}</th>'
        f'<td style="text-align:left">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    return f'<table class="igkit-numbers">{cells}</table>'


# ---------------------------------------------------------------------------------- figure


def _figure_png(result: Result, single: Result, index: int, label: str | None) -> str | None:
    """The panel, or the attribution map, as base64 PNG; None when there is nothing to draw."""
    axis = getattr(result, "channel_axis", None)
    attr = _image_hwc(_example(single.attributions, 0, 1), axis)
    if attr is None:
        return None
    image = _input_example(result, index, "inputs", axis)
    base = _input_example(result, index, "baseline_inputs", axis)
    if base is None and image is not None and str(result.baselines[0]) == "black":
        base = np.zeros_like(image)
    try:
        if image is not None and base is not None and image.shape[:2] == attr.shape[:2]:
            from igkit.viz.panels import ig_panel

            drawn = replace(single, attributions=attr[None])
            figure = ig_panel(image, drawn, base, label=label, index=0)
        else:
            figure = _attribution_map(attr, single, label)
        return _png(figure)
    except ImportError:  # no matplotlib: the words and numbers still say everything
        return None


def _example(array: Any, row: int, inputs: int) -> np.ndarray:
    """Example ``row`` of an array holding ``inputs`` examples: a batch ``(N, ...)``, or for
    one input either a batch of one or the example itself."""
    arr = np.asarray(array)
    # One image is rank 2 (H, W) or 3; a batch of one has a leading axis of 1 (for a grey
    # (1, H, W) example, taking it away leaves the same image).
    if inputs > 1 or arr.ndim == 4 or (arr.ndim in (2, 3) and arr.shape[0] == 1):
        return arr[row]
    return arr


def _input_example(result: Result, index: int, name: str, axis: int | None) -> np.ndarray | None:
    """Input ``index`` of ``inputs`` or ``baseline_inputs``, channels-last, or None.

    Read with getattr: Results made before these fields existed have neither.
    """
    whole = getattr(result, name, None)
    if whole is None:
        return None
    return _image_hwc(_example(whole, index, len(result)), axis)


def _image_hwc(arr: np.ndarray, batch_channel_axis: int | None) -> np.ndarray | None:
    """One example as ``(H, W, C)``; None when it is not an image.

    ``batch_channel_axis`` counts the axes of a batch, as ``integrated_gradients`` takes it.
    Without it, an example that is plainly channels-first (``C <= 4 < W``) is moved.
    """
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        return None
    if batch_channel_axis is None:
        channels_first = arr.shape[0] <= 4 < arr.shape[-1]
        return np.moveaxis(arr, 0, -1) if channels_first else arr
    axis = batch_channel_axis - 1 if batch_channel_axis > 0 else batch_channel_axis
    return np.moveaxis(arr, axis, -1) if -3 <= axis < 3 else None


def _attribution_map(attr: np.ndarray, single: Result, label: str | None) -> Figure:
    """The tutorial's mask alone, for a Result without its inputs."""
    fig = _new_figure(5.0, 5.4)
    ax = fig.subplots()
    im = _show(ax, attribution_mask(attr),
               f"Attribution mask\n(sum over channels of |{method_title(single)}|)",
               cmap="inferno")
    fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02).set_label("sum |attribution|")
    _title(fig, None, single, 0, label)
    return _finish(fig, None)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=NOTEBOOK_DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
