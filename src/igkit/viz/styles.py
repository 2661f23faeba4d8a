"""Every figure of one explanation in one call: what ``igkit explain --figure`` draws.

:func:`explain_figures` takes one input and its :class:`~igkit.Result` and renders the requested
*styles* (:data:`FIGURE_STYLES`) with the figure functions of :mod:`igkit.viz.figures`, so a
notebook gets exactly the pictures the command line writes. Two styles need the model itself:
``gradvis`` draws plain gradients beside IG (one extra gradient evaluation) and ``baselines``
recomputes IG against black, white, uniform and blurred baselines (up to four more IG runs at
the Result's step count). The figure functions the styles add, :func:`channel_figure`,
:func:`keras_gradvis_figure`, :func:`riemann_figure` and :func:`augment_figure` (the tutorial's
rotated / flipped / zoomed comparison, drawn by ``igkit explain --augment``), live with the other
figures and are importable from here too.

matplotlib is imported only when a figure is drawn, as everywhere in :mod:`igkit.viz`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz._draw import _result_line, _target
from igkit.viz._model import (
    COMPARED_BASELINES,
    _baseline_image,
    _baseline_runs,
    _result_hwc,
    _setting,
)
from igkit.viz.grids import augment_figure, channel_figure, compare_grid
from igkit.viz.panels import ig_panel, keras_gradvis_figure, sign_mask_figure
from igkit.viz.paths import path_strip, saturation_plots
from igkit.viz.rules import riemann_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "COMPARED_BASELINES",
    "FIGURE_STYLES",
    "RIEMANN_FILE",
    "augment_figure",
    "channel_figure",
    "explain_figures",
    "figure_filename",
    "keras_gradvis_figure",
    "parse_figure_styles",
    "riemann_figure",
]

PathLike = str | os.PathLike[str]

#: The figure styles, in the order they are drawn. ``panel``: the TF tutorial's 2 x 2 figure;
#: ``signs``: positive / negative attributions in red / blue (HPA notebook); ``gradvis``: the
#: Keras example's processing of plain gradients and IG; ``path``: images along the path;
#: ``saturation``: score and mean gradient over alpha; ``riemann``: the 1-D Riemann-sum
#: illustration (independent of the input); ``baselines``: IG against four baselines side by
#: side; ``channels``: each channel's view and attributions.
FIGURE_STYLES: tuple[str, ...] = (
    "panel",
    "signs",
    "gradvis",
    "path",
    "saturation",
    "riemann",
    "baselines",
    "channels",
)

#: File name of the ``riemann`` figure: it does not depend on the input, so one per folder.
RIEMANN_FILE = "riemann.png"

#: Alphas of the ``path`` strip.
PATH_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)

#: Rescale power of the ``signs`` masks: IG maps are peaky, so a square root shows their shape.
SIGN_POWER = 2.0


def parse_figure_styles(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The styles a spec names: ``"panel,signs"``, ``"all"`` or a sequence of names.

    Names are case-insensitive; repeats are dropped; the result is in :data:`FIGURE_STYLES`
    order.

    Args:
        spec: Comma-separated names, or a sequence of them; ``all`` means every style.

    Returns:
        The styles.

    Raises:
        ValueError: For an empty spec or an unknown name (the message lists the styles).
    """
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(p).strip().lower() for p in parts]
    choices = ", ".join(FIGURE_STYLES) + " or all"
    if not names or any(not n for n in names):
        raise ValueError(f"empty figure style in {spec!r}; choose from {choices}")
    unknown = [n for n in names if n != "all" and n not in FIGURE_STYLES]
    if unknown:
        raise ValueError(f"unknown figure style {unknown[0]!r}; choose from {choices}")
    if "all" in names:
        return FIGURE_STYLES
    return tuple(s for s in FIGURE_STYLES if s in names)


def figure_filename(name: str, style: str) -> str:
    """The file a style is saved as: ``NAME.png`` (panel), ``NAME.STYLE.png``, or riemann's."""
    if style == "panel":
        return f"{name}.png"
    if style == "riemann":
        return RIEMANN_FILE
    return f"{name}.{style}.png"


def _compose_title(
    title: str | None, result: Result | None, index: int, label: str | None
) -> str | None:
    """The title lines the result-aware figures put on top: title, class, score, completeness."""
    lines = [title] if title else []
    if result is not None:
        lines.append(_result_line(result, index, label))
    elif label:
        lines.append(label)
    return "\n".join(lines) or None


# ------------------------------------------------------------------------------- the bundle


def explain_figures(
    image: ArrayLike,
    result: Result,
    index: int = 0,
    *,
    styles: str | Sequence[str] = ("panel",),
    model: object | None = None,
    output: object | None = None,
    label: str | None = None,
    title: str | None = None,
    name: str = "figure",
    baseline: ArrayLike | None = None,
    gradients: ArrayLike | None = None,
    channel_axis: int | None = None,
    input_range: tuple[float, float] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    out_dir: PathLike | None = None,
    save: Callable[[Path, Figure], None] | None = None,
) -> dict[str, Figure]:
    """Render the requested figure styles for one explained input.

    Everything a style needs is checked before anything is drawn, so a missing model or path
    trace fails at once, with nothing saved. Typical use in a notebook::

        result = igkit.integrated_gradients(net, x, target=285, output="softmax",
                                            return_path=True)
        figs = igkit.viz.explain_figures(x[0], result, styles="all", model=net,
                                         output="softmax", label="Egyptian cat",
                                         channel_axis=0)  # x is NCHW for a torch model

    Args:
        image: The explained input, one example in the model's own layout (``channel_axis``
            says where its channels are; None means channels-last). With a
            :class:`~igkit.models.spec.LoadedModel` it is the channels-last pixel image.
        result: Its Result (single-target; for a multi-target Result pass one of
            ``result.per_target()``).
        index: Which example of a batched Result ``image`` is.
        styles: Names from :data:`FIGURE_STYLES`, comma-separated or a sequence, or ``"all"``.
        model: The model (as given to :func:`igkit.integrated_gradients`, or a LoadedModel from
            :func:`igkit.load_model`); needed by ``gradvis`` (unless ``gradients`` are given) and
            ``baselines``.
        output: What the Result explains, as passed to :func:`igkit.integrated_gradients`
            ("softmax", ...); default "raw", or the LoadedModel's own.
        label: Class name, shown in titles with the class index, score and completeness.
        title: First title line of every figure (default ``name``).
        name: File stem when saving: ``NAME.png`` (panel), ``NAME.STYLE.png`` (others) and
            :data:`RIEMANN_FILE`.
        baseline: The baseline image (same layout as ``image``); rebuilt from the Result's
            first baseline name when None (black, white, blur, constants; random ones with
            ``seed``). Needed for a custom baseline by ``panel`` and ``path``.
        gradients: Plain gradients at the input (same layout as ``image``) for ``gradvis``;
            computed with :func:`igkit.gradients` when None.
        channel_axis: Channel axis of ``image``, ``baseline`` and ``gradients``.
        input_range: ``(low, high)`` of valid inputs (for white and uniform baselines);
            inferred when None ((0, 1) for a LoadedModel).
        batch_size: Path points per model call in the extra computations.
        seed: Seed of random baselines (as given to :func:`igkit.integrated_gradients`).
        out_dir: Folder to save the figures in (created when missing); nothing is saved when
            None. Each file is written atomically.
        save: How to save ``(path, figure)``; an atomic PNG writer by default.

    Returns:
        ``{style: figure}`` in :data:`FIGURE_STYLES` order.

    Raises:
        ValueError: For an unknown style, a multi-target Result, or a style whose inputs are
            missing (``saturation`` without ``return_path=True``, ``gradvis`` or ``baselines``
            without a model, ``panel``/``path`` for a custom baseline without ``baseline=``).
    """
    chosen = parse_figure_styles(styles)
    if getattr(result, "multi_target", False):
        raise ValueError(
            "explain_figures draws one explanation; pass one of result.per_target() for a "
            "multi-target Result"
        )
    if not 0 <= index < len(result):
        raise IndexError(f"index {index} out of range for a Result of {len(result)}")
    if "saturation" in chosen and result.path is None:
        raise ValueError(
            "the 'saturation' style needs the path trace: compute the Result with "
            "return_path=True"
        )
    if model is None and ("baselines" in chosen or ("gradvis" in chosen and gradients is None)):
        needs = "baselines" if "baselines" in chosen else "gradvis"
        raise ValueError(f"the {needs!r} style runs the model: pass model=")
    setting = _setting(image, model, output, channel_axis, input_range)
    img = np.asarray(setting.to_hwc(setting.x[0]))
    drawn = _result_hwc(result, setting)
    base: np.ndarray | None
    if baseline is not None:
        base = np.asarray(setting.given_to_hwc(np.asarray(baseline)), dtype=np.float32)
    else:
        base = _baseline_image(setting, str(result.baselines[0]), seed)
    if base is None and ("panel" in chosen or "path" in chosen):
        raise ValueError(
            f"the Result used a {result.baselines[0]!r} baseline that cannot be rebuilt; pass "
            "baseline="
        )
    head = title if title is not None else name
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    writer = save or _save_png
    t = _target(result, index)
    figures: dict[str, Figure] = {}
    for style in chosen:
        fig: Any
        if style == "panel":
            fig = ig_panel(img, drawn, base, title=head, label=label, index=index)
        elif style == "signs":
            fig = sign_mask_figure(
                img, drawn, base, power=SIGN_POWER, title=head, label=label, index=index
            )
        elif style == "gradvis":
            if gradients is not None:
                grads = np.asarray(setting.given_to_hwc(np.asarray(gradients)))
            else:
                import igkit

                grads = setting.to_hwc(
                    igkit.gradients(
                        setting.net, setting.x, target=t, output=setting.output,
                        batch_size=batch_size, batched=True,
                    )[0]
                )
            fig = keras_gradvis_figure(img, drawn, grads, title=head, label=label, index=index)
        elif style == "path":
            fig = path_strip(
                base, img, PATH_ALPHAS,
                title=_compose_title(
                    f"{head}: interpolated images x' + alpha (x - x') along the straight path",
                    result, index, label,
                ),
            )
        elif style == "saturation":
            fig = saturation_plots(
                result, index, title=f"{head}: gradient saturation along the path", label=label
            )
        elif style == "riemann":
            fig = riemann_figure(result.method, int(np.asarray(result.steps).reshape(-1)[index]))
        elif style == "baselines":
            runs = _baseline_runs(setting, result, index, batch_size, seed)
            fig = compare_grid(
                img,
                [run for _, _, run in runs],
                [_baseline_title(n, run) for n, _, run in runs],
                rows=("baseline", "mask", "overlay"),
                baselines=[b for _, b, _ in runs],
                title=_compose_title(
                    f"{head}: IG against four baselines (each mask on its own scale)",
                    None,
                    index,
                    f"{label} (class {t})" if label else f"class {t}",
                ),
            )
        else:  # channels
            fig = channel_figure(img, drawn, title=head, label=label, index=index)
        figures[style] = fig
        if folder is not None:
            writer(folder / figure_filename(name, style), fig)
    return figures


def _baseline_title(name: str, run: Result) -> str:
    """Column title of the baselines comparison: the baseline's score and IG's error."""
    base = float(np.asarray(run.baseline_score).reshape(-1)[0])
    err = float(np.asarray(run.relative_error).reshape(-1)[0])
    total = float(np.asarray(run.attributions).sum())
    return f"{name} baseline\nF(x') = {base:.2g}\nsum of IG = {total:.3g}\nIG error {err:.1%}"


def _save_png(path: Path, figure: Figure) -> None:
    from igkit.io.writers import write_figure_png

    write_figure_png(path, figure)
