"""Every figure of one explanation in one call: what ``igkit explain --figure`` draws.

:func:`explain_figures` takes one input and its :class:`~igkit.Result` and renders the requested
*styles* with the figure functions of :mod:`igkit.viz.figures`, so a notebook gets exactly the
pictures the command line writes. Two styles need the model itself:
``gradvis`` draws plain gradients beside IG (one extra gradient evaluation) and ``baselines``
recomputes IG against black, white, uniform and blurred baselines (up to four more IG runs at
the Result's step count). The figure functions the styles add, :func:`channel_figure`,
:func:`keras_gradvis_figure`, :func:`riemann_figure` and :func:`augment_figure` (the tutorial's
rotated / flipped / zoomed comparison, drawn by ``igkit explain --augment``), live with the other
figures and are importable from here too.

Styles are registered, not listed: a style is one function decorated with
:func:`register_style`, which names the style and declares what it needs (the model, the path
trace, a baseline image, SciPy); :func:`explain_figures` checks every need of the chosen styles
before it draws, and :func:`parse_figure_styles` accepts every registered name::

    @register_style("outline", needs=("scipy",))
    def outline(c: StyleContext) -> Figure:
        "Only the outlines of the strongest regions."
        return gradvis_figure(c.image, c.drawn, outlines=True, title=c.title, label=c.label)

matplotlib is imported only when a figure is drawn, as everywhere in :mod:`igkit.viz`.
"""


from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz._model import (
    COMPARED_BASELINES,
    _baseline_image,
    _baseline_runs,
    _result_hwc,
    _setting,
)
from igkit.viz.grids import augment_figure, channel_figure, compare_grid
from igkit.viz.panels import ig_panel, keras_gradvis_figure, regions_figure, sign_mask_figure
from igkit.viz.paths import path_strip, saturation_plots
from igkit.viz.registry import (
    STYLE_NEEDS,
    FigureStyle,
    StyleContext,
    compose_title,
    figure_filename,
    figure_styles,
    get_style,
    parse_figure_styles,
    register_style,
)
from igkit.viz.rules import riemann_figure as _rule_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "COMPARED_BASELINES",
    "FIGURE_STYLES",
    "RIEMANN_FILE",
    "STYLE_NEEDS",
    "FigureStyle",
    "StyleContext",
    "augment_figure",
    "channel_figure",
    "explain_figures",
    "figure_filename",
    "figure_styles",
    "keras_gradvis_figure",
    "parse_figure_styles",
    "register_style",
    "riemann_figure",
]

PathLike = str | os.PathLike[str]

#: File name of the ``riemann`` figure: it does not depend on the input, so one per folder.
RIEMANN_FILE = "riemann.png"

#: Alphas of the ``path`` strip.
PATH_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)

#: Rescale power of the ``signs`` masks: IG maps are peaky, so a square root shows their shape.
SIGN_POWER = 2.0


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

    Everything a style needs (:attr:`FigureStyle.needs`) is checked before anything is drawn,
    so a missing model or path trace fails at once, with nothing saved. Typical use in a notebook::

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
        styles: Names of registered styles (:func:`figure_styles`), comma-separated or a
            sequence, or ``"all"``.
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
        ``{style: figure}`` in registration order.

    Raises:
        ValueError: For an unknown style, a multi-target Result, or a style whose inputs are
            missing (``saturation`` without ``return_path=True``, ``gradvis`` or ``baselines``
            without a model, ``panel``/``path`` for a custom baseline without ``baseline=``).
        ImportError: For a style whose package is missing (``gradvis`` without SciPy).
    """
    chosen = [get_style(s) for s in parse_figure_styles(styles)]
    if getattr(result, "multi_target", False):
        raise ValueError(
            "explain_figures draws one explanation; pass one of result.per_target() for a "
            "multi-target Result"
        )
    if not 0 <= index < len(result):
        raise IndexError(f"index {index} out of range for a Result of {len(result)}")
    output = _output_of(result, output)
    if seed == 0 and result.seed is not None:
        seed = int(result.seed)
    setting = _setting(image, model, output, channel_axis, input_range)
    base: np.ndarray | None
    if baseline is not None:
        base = np.asarray(setting.given_to_hwc(np.asarray(baseline)), dtype=np.float32)
    else:
        base = _baseline_image(setting, str(result.baselines[0]), seed)
    context = StyleContext(
        image=np.asarray(setting.to_hwc(setting.x[0])),
        result=result,
        drawn=_result_hwc(result, setting),
        index=index,
        baseline=base,
        gradients=None if gradients is None else np.asarray(
            setting.given_to_hwc(np.asarray(gradients))
        ),
        title=title if title is not None else name,
        label=label,
        batch_size=batch_size,
        seed=seed,
        setting=setting,
    )
    for key, need in STYLE_NEEDS.items():
        for style in chosen:
            if key in style.needs and not need.met(context):
                raise need.error(
                    need.message.format(style=style.name, baseline=str(result.baselines[0]))
                )
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    writer = save or _save_png
    figures: dict[str, Figure] = {}
    for style in chosen:
        fig = figures[style.name] = style.draw(context)
        if folder is not None:
            writer(folder / figure_filename(name, style.name), fig)
    return figures


def riemann_figure(
    method: str | None = None, steps: int | str | None = None, *, path: PathLike | None = None
) -> Figure:
    """The quadrature rule a run used, on a 1-D stand-in for one pixel's gradient
    (``igkit.viz.rules.riemann_figure``). ``method="auto"`` chooses its rule per model, so a
    run's settings cannot say which one ran: it is drawn as "secant" (what "auto" runs with
    ``steps="auto"`` wherever the backend supports it) for ``steps="auto"``, and as
    "gauss_legendre" (what it runs for a fixed count) otherwise. A Result's own ``method``
    names the rule that ran."""
    if method == "auto":
        method = "secant" if steps in (None, "auto") else "gauss_legendre"
    return _rule_figure(method, steps, path=path)


def _save_png(path: Path, figure: Figure) -> None:
    from igkit.io.writers import write_figure_png

    write_figure_png(path, figure)


# ---------------------------------------------------------------------------- the styles


@register_style("panel", needs=("baseline",), file="{name}.png")
def _panel(c: StyleContext) -> Figure:
    """The TF tutorial's 2 x 2 figure: baseline, image, attribution mask, overlay."""
    return ig_panel(c.image, c.drawn, c.baseline, title=c.title, label=c.label, index=c.index)


@register_style("signs")
def _signs(c: StyleContext) -> Figure:
    """Positive / negative attributions in red / blue (the HPA notebook)."""
    return sign_mask_figure(
        c.image, c.drawn, c.baseline, power=SIGN_POWER, title=c.title, label=c.label,
        index=c.index,
    )


@register_style("gradvis", needs=("gradients", "scipy"))
def _gradvis(c: StyleContext) -> Figure:
    """The Keras example's processing of plain gradients beside IG."""
    grads = c.gradients
    if grads is None:
        import igkit

        s = c.setting
        at_input = igkit.gradients(
            s.net, s.x, target=c.target, output=s.output, batch_size=c.batch_size, batched=True
        )
        grads = np.asarray(s.to_hwc(at_input[0]))
    return keras_gradvis_figure(c.image, c.drawn, grads, title=c.title, label=c.label,
                                index=c.index)


@register_style("path", needs=("baseline",))
def _path(c: StyleContext) -> Figure:
    """Images along the straight path from the baseline to the input."""
    assert c.baseline is not None  # a need of the style
    what = "interpolated images x' + alpha (x - x') along the straight path"
    return path_strip(c.baseline, c.image, PATH_ALPHAS, title=c.heading(what))


@register_style("saturation", needs=("path",))
def _saturation(c: StyleContext) -> Figure:
    """The target score and mean gradient over alpha."""
    return saturation_plots(
        c.result, c.index, title=f"{c.title}: gradient saturation along the path", label=c.label
    )


@register_style("riemann", file=RIEMANN_FILE)
def _riemann(c: StyleContext) -> Figure:
    """The run's quadrature rule in 1-D (independent of the input: one file per folder)."""
    return riemann_figure(c.result.method, c.steps)


@register_style("baselines", needs=("model",))
def _baselines(c: StyleContext) -> Figure:
    """IG against black, white, uniform and blur baselines side by side."""
    again = [b for b in COMPARED_BASELINES
             if not (tuple(c.result.baselines) == (b,) and b != "uniform" and len(c.result) == 1)]
    if again:
        # Each is a full IG run (the Result's method and requested steps): say so, since a
        # figure is otherwise quick.
        steps = c.result.requested_steps if c.result.requested_steps is not None else c.steps
        print(f"igkit: the baselines figure runs IG against {', '.join(again)} "
              f"({c.result.method}, steps={steps})", file=sys.stderr, flush=True)
    runs = _baseline_runs(c.setting, c.result, c.index, c.batch_size, c.seed)
    explained = f"{c.label} (class {c.target})" if c.label else f"class {c.target}"
    return compare_grid(
        c.image,
        [run for _, _, run in runs],
        [_baseline_title(n, run) for n, _, run in runs],
        rows=("baseline", "mask", "overlay"),
        baselines=[b for _, b, _ in runs],
        title=compose_title(
            f"{c.title}: IG against four baselines (each mask on its own scale)",
            None, c.index, explained,
        ),
    )


def _baseline_title(name: str, run: Result) -> str:
    """Column title of the baselines comparison: the baseline's score and IG's error."""
    base = float(np.asarray(run.baseline_score).reshape(-1)[0])
    err = float(np.asarray(run.relative_error).reshape(-1)[0])
    total = float(np.asarray(run.attributions).sum())
    return f"{name} baseline\nF(x') = {base:.2g}\nsum of IG = {total:.3g}\nIG error {err:.1%}"


@register_style("channels")
def _channels(c: StyleContext) -> Figure:
    """Each channel's view and attributions."""
    return channel_figure(c.image, c.drawn, title=c.title, label=c.label, index=c.index)


@register_style("regions")
def _regions(c: StyleContext) -> Figure:
    """The PAIR notebook's XRAI figure for any method: heatmap and the top 30 % of pixels."""
    return regions_figure(c.image, c.drawn, title=c.title, label=c.label, index=c.index)



#: The built-in figure styles, in the order they are drawn (:func:`figure_styles` also lists
#: styles registered later). ``panel``: the TF tutorial's 2 x 2 figure; ``signs``: positive /
#: negative attributions in red / blue (HPA notebook); ``gradvis``: the Keras example's
#: processing of plain gradients and IG; ``path``: images along the path; ``saturation``: score
#: and mean gradient over alpha; ``riemann``: the run's quadrature rule in 1-D (independent of
#: the input); ``baselines``: IG against four baselines side by side; ``channels``: each
#: channel's view and attributions.
FIGURE_STYLES: tuple[str, ...] = figure_styles()


def _output_of(result: Result, output: object | None) -> object | None:
    """What the figures that run the model again explain: the Result's own output.

    A different ``output=`` would draw, say, softmax attributions beside logit ones, so it is
    refused; for a Result that does not record its output the argument decides.
    """
    recorded = result.output
    if recorded is None or recorded == "callable":
        return output
    if output is not None and not callable(output) and output != recorded:
        raise ValueError(
            f"the Result explains output={recorded!r} and output={output!r} was given: figures "
            "that run the model again must explain what the Result explains; drop output= "
            "or recompute the Result"
        )
    return output if callable(output) else recorded
