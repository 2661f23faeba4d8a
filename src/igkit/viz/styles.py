"""Every figure of one explanation in one call: what ``igkit explain --figure`` draws.

:func:`explain_figures` takes one input and its :class:`~igkit.Result` and renders the requested
*styles* (:data:`FIGURE_STYLES`) with the figure functions of :mod:`igkit.viz.figures`, so a
notebook gets exactly the pictures the command line writes. Two styles need the model itself:
``gradvis`` draws plain gradients beside IG (one extra gradient evaluation) and ``baselines``
recomputes IG against black, white, uniform and blurred baselines (up to four more IG runs at
the Result's step count). :func:`channel_figure` (per-channel views and attributions) and
:func:`augment_figure` (the tutorial's rotated / flipped / zoomed comparison) are defined here.

matplotlib is imported only when a figure is drawn, as everywhere in :mod:`igkit.viz`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from igkit.core.result import Result
from igkit.viz.figures import (
    _example,
    _finish,
    _hwc,
    _image_and_attributions,
    _new_figure,
    _result_line,
    _show,
    _title,
    compare_grid,
    ig_panel,
    path_strip,
    riemann_illustration,
    saturation_plots,
    sign_mask_figure,
)
from igkit.viz.transforms import (
    attribution_mask,
    channel_views,
    display_rgb,
    rgby_to_rgb,
)

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

#: The baselines the ``baselines`` style compares, as the TF tutorial and the Keras example do.
COMPARED_BASELINES: tuple[str, ...] = ("black", "white", "uniform", "blur")

#: File name of the ``riemann`` figure: it does not depend on the input, so one per folder.
RIEMANN_FILE = "riemann.png"

#: Alphas of the ``path`` strip.
PATH_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)

#: Rescale power of the ``signs`` masks: IG maps are peaky, so a square root shows their shape.
SIGN_POWER = 2.0

_CHANNEL_NAMES: dict[int, tuple[str, ...]] = {
    1: ("grey",),
    3: ("red", "green", "blue"),
    4: ("red", "green", "blue", "yellow"),
}


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


# ------------------------------------------------------------------------------ model plumbing


@dataclass(frozen=True)
class _Setting:
    """One input as the model sees it, and how to get back to channels-last for drawing."""

    x: np.ndarray  # batch of one, model layout
    channel_axis: int  # of the batch
    input_range: tuple[float, float]
    to_hwc: Callable[[np.ndarray], np.ndarray]  # one example, model layout -> (H, W, C)
    given_to_hwc: Callable[[np.ndarray], np.ndarray]  # one example, caller's layout -> HWC
    net: object | None
    output: object


def _setting(
    image: ArrayLike,
    model: object | None,
    output: object | None,
    channel_axis: int | None,
    input_range: tuple[float, float] | None,
) -> _Setting:
    """Resolve the model (a plain one or a :class:`~igkit.models.spec.LoadedModel`) and layout."""
    from igkit.api import _infer_range
    from igkit.models.spec import LoadedModel

    if isinstance(model, LoadedModel):
        loaded = model
        img = _hwc(image, channel_axis, "image")
        return _Setting(
            x=loaded.to_model_layout(img[None]),
            channel_axis=loaded.channel_axis,
            input_range=input_range or (0.0, 1.0),
            to_hwc=loaded.to_hwc,
            given_to_hwc=lambda a: _hwc(a, channel_axis, "array"),
            net=loaded.model,
            output=output if output is not None else loaded.default_output,
        )
    arr = np.asarray(image)
    if arr.ndim != 3:
        raise ValueError(f"image must be one example, (H, W, C) or (C, H, W); got {arr.shape}")
    axis = 2 if channel_axis is None else channel_axis % 3
    x = arr[None].astype(np.float32) if arr.dtype.kind in "iub" else arr[None]
    return _Setting(
        x=x,
        channel_axis=axis + 1,
        input_range=input_range or _infer_range(x),
        to_hwc=lambda a: np.moveaxis(np.asarray(a), axis, -1),
        given_to_hwc=lambda a: np.moveaxis(np.asarray(a), axis, -1),
        net=model,
        output=output if output is not None else "raw",
    )


def _baseline_image(setting: _Setting, spec: str, seed: int) -> np.ndarray | None:
    """A named (or ``constant V``) baseline rebuilt as the engine builds it, channels-last."""
    from igkit.core.baselines import BaselineContext, available_baselines, make_baselines

    item: str | float
    if spec in available_baselines():
        item = spec
    elif spec.startswith("constant "):
        item = float(spec.split(" ", 1)[1])
    else:
        return None
    context = BaselineContext(
        inputs=setting.x.astype(np.float32),
        channel_axis=setting.channel_axis,
        input_range=setting.input_range,
        rng=np.random.default_rng(seed),
    )
    _, array = make_baselines([item], context)[0]
    return np.asarray(setting.to_hwc(array[0]), dtype=np.float32)


def _result_hwc(result: Result, setting: _Setting) -> Result:
    """The Result with channels-last attributions, so the figure functions can draw it."""
    from dataclasses import replace

    attrs = np.asarray(result.attributions)
    if attrs.ndim == setting.x.ndim:  # a batch
        moved = np.stack([np.asarray(setting.to_hwc(a)) for a in attrs])
    else:
        moved = np.asarray(setting.to_hwc(attrs))
    return replace(result, attributions=moved)


def _target(result: Result, index: int) -> int:
    return int(np.asarray(result.target).reshape(-1)[index])


def _baseline_runs(
    setting: _Setting, result: Result, index: int, batch_size: int | None, seed: int
) -> list[tuple[str, np.ndarray, Result]]:
    """IG of the input against each of :data:`COMPARED_BASELINES`, at the Result's settings.

    The Result itself is reused for a deterministic baseline it was computed against.
    """
    import igkit

    runs = []
    for name in COMPARED_BASELINES:
        base = _baseline_image(setting, name, seed)
        assert base is not None  # every compared baseline is a registered name
        if tuple(result.baselines) == (name,) and name != "uniform" and len(result) == 1:
            runs.append((name, base, _result_hwc(result, setting)))
            continue
        other = igkit.integrated_gradients(
            setting.net,
            setting.x,
            target=_target(result, index),
            baseline=name,
            steps=int(np.asarray(result.steps).reshape(-1)[index]),
            method=result.method,
            output=setting.output,
            batch_size=batch_size,
            tol=result.tol,
            seed=seed,
            channel_axis=setting.channel_axis,
            input_range=setting.input_range,
            batched=True,
        )
        runs.append((name, base, _result_hwc(other, setting)))
    return runs


# ----------------------------------------------------------------------------- new figures


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


def riemann_figure(method: str | None = None, steps: int | str | None = None) -> Figure:
    """The tutorial's Riemann-sum illustration, titled with the rule a run actually uses.

    The picture integrates ``sin(pi alpha)``, a stand-in for how one pixel's gradient varies
    along the path, with five intervals and the four Riemann rules, so the error of each rule is
    seen; the title names the run's own quadrature rule and step count when given.

    Args:
        method: The run's quadrature rule.
        steps: The run's step count (or "auto").

    Returns:
        The figure.
    """
    title = "Riemann sums of a 1-D stand-in for one pixel's gradient along the path"
    if method is not None:
        title += f"\n(the attributions here integrate with {method}"
        title += f", {steps} steps)" if steps is not None else ")"
    return riemann_illustration(steps=5, title=title)


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
) -> Figure:
    """The Keras example's two visualisations of plain gradients beside IG, one per row.

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

    Returns:
        The figure.
    """
    from igkit.viz.transforms import gradvis_image

    attr_arr, result = _example(attributions, index)
    img_rgb = display_rgb(_hwc(image, channel_axis, "image"))
    maps = {
        "Plain gradients": _hwc(gradients, channel_axis, "gradients"),
        "Integrated gradients": _hwc(attr_arr, channel_axis, "attributions"),
    }
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
        ax.set_ylabel(caption, fontsize=10)
    _title(fig, title, result, index, label, default="Gradients and integrated gradients")
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
