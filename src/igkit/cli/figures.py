"""The figure options of ``igkit explain``: ``--figure STYLE[,STYLE...]`` and ``--augment SPEC``.

``--figure`` picks which of :data:`igkit.viz.report.FIGURE_STYLES` are written per image and
target (``NAME.png`` for the panel, ``NAME.STYLE.png`` for the others; the input-independent
``riemann`` figure once per run). ``--augment`` adds the TF tutorial's debugging use case: each
image is also explained rotated, flipped or zoomed, the predictions of every variant are printed,
and ``NAME.augment.png`` puts the variants side by side.

Both options are parsed by argparse ``type=`` functions, so a bad spec is a usage error before
anything is loaded or written. Drawing goes through :func:`igkit.viz.explain_figures`, the same
call a notebook uses, and every file is written atomically. Nothing here imports matplotlib or a
framework at module level.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from igkit.cli._base import UsageError

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.models.spec import LoadedModel
    from igkit.viz.augment import Augmentation

__all__ = [
    "DEFAULT_STYLES",
    "Variant",
    "add_augment_argument",
    "add_figure_argument",
    "augment_spec",
    "check_figure_dependencies",
    "figure_styles",
    "make_variants",
    "requested_styles",
    "riemann_filename",
    "write_augment_figure",
    "write_image_figures",
    "write_riemann_figure",
]

#: What ``--figure`` draws when not given: the tutorial's panel, ``NAME.png``.
DEFAULT_STYLES: tuple[str, ...] = ("panel",)


# ---------------------------------------------------------------------------- argument types


def figure_styles(text: str) -> tuple[str, ...]:
    """argparse type of ``--figure``: comma-separated styles or ``all``."""
    from igkit.viz.report import parse_figure_styles

    try:
        return parse_figure_styles(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def augment_spec(text: str) -> tuple[Augmentation, ...]:
    """argparse type of ``--augment``: e.g. ``rot90,flip,zoom=0.45``."""
    from igkit.viz.augment import parse_augment

    try:
        return parse_augment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_figure_argument(parser: argparse.ArgumentParser) -> None:
    """``--figure`` (shared by ``igkit explain`` and ``igkit demo``)."""
    parser.add_argument(
        "--figure",
        type=figure_styles,
        default=None,
        metavar="STYLE[,STYLE...]",
        help="figures to write per image and target, comma-separated, or 'all': panel (the "
        "TF tutorial's 2x2, NAME.png), signs (positive/negative in red/blue), gradvis (the "
        "Keras example's processing, plain gradients beside IG: one extra gradient "
        "evaluation), path (images along the path), saturation (score and gradient over "
        "alpha), riemann (Riemann sums in 1-D, one riemann.png per run), baselines (IG "
        "against black, white, uniform and blur baselines side by side: runs IG up to four "
        "more times per target), channels (each colour channel and its attributions); all but "
        "the panel are written as NAME.STYLE.png (default: panel)",
    )


def add_augment_argument(parser: argparse.ArgumentParser) -> None:
    """``--augment`` of ``igkit explain``."""
    parser.add_argument(
        "--augment",
        type=augment_spec,
        default=None,
        metavar="A[,A...]",
        help="also explain each image transformed, the TF tutorial's debugging use case: "
        "rot90, rot180, rot270 (counter-clockwise), flip (left-right), vflip (upside down), "
        "zoom=F (the central F of the image, 0 < F < 1, resized back); prints each variant's "
        "predictions, writes NAME.VARIANT.npz, a summary row per variant and the comparison "
        "NAME.augment.png. Runs IG once more per variant and target",
    )


def requested_styles(args: argparse.Namespace) -> tuple[str, ...]:
    """The styles to draw: none with ``--no-figures``, else ``--figure`` or the panel.

    Raises:
        UsageError: If ``--figure`` and ``--no-figures`` are both given.
    """
    chosen = getattr(args, "figure", None)
    if getattr(args, "no_figures", False):
        if chosen:
            raise UsageError("--figure and --no-figures contradict each other; pass one")
        return ()
    return tuple(chosen) if chosen else DEFAULT_STYLES


def check_figure_dependencies(styles: Sequence[str]) -> None:
    """Check that the packages the styles draw with are installed.

    Raises:
        UsageError: Naming what to install, or ``--no-figures``.
    """
    try:
        import matplotlib  # noqa: F401 - only checking that it is there

        from igkit.viz.report import explain_figures  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"PNG figures need matplotlib and igkit.viz ({exc}); install them with "
            "`pip install igkit[viz]`, or pass --no-figures"
        ) from None
    if "gradvis" in styles:
        try:
            import scipy.ndimage  # noqa: F401 - the Keras clean-up and outlines use it
        except ImportError:
            raise UsageError(
                "--figure gradvis needs SciPy: `pip install igkit[viz]`, or leave gradvis out"
            ) from None


# ----------------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One version of an input: the original or an augmentation, with its predictions.

    Attributes:
        name: "original" or the augmentation as typed (``rot90``, ``zoom=0.45``).
        slug: For file names: "" for the original, else e.g. ``zoom0.45``.
        pixels: The model input, ``(H, W, 3)`` float32 in [0, 1].
        scores: The model's transformed outputs on it, ``(classes,)``.
    """

    name: str
    slug: str
    pixels: np.ndarray
    scores: np.ndarray


def make_variants(
    model: LoadedModel,
    pixels: np.ndarray,
    augmentations: Sequence[Augmentation],
    output: str,
    batch_size: int,
) -> list[Variant]:
    """The augmented versions of one model input and the model's predictions on them.

    Args:
        model: The loaded model.
        pixels: The (original) model input, ``(H, W, 3)``.
        augmentations: What to apply.
        output: How raw outputs become scores ("softmax", "sigmoid" or "raw").
        batch_size: Images per forward pass.

    Returns:
        One :class:`Variant` per augmentation, in order.
    """
    from igkit.models.spec import transform_outputs
    from igkit.viz.augment import augment_image

    images = [augment_image(pixels, aug) for aug in augmentations]
    scores = transform_outputs(model.predict(np.stack(images), batch_size=batch_size), output)
    return [
        Variant(aug.name, aug.slug, image, row)
        for aug, image, row in zip(augmentations, images, scores, strict=True)
    ]


# ------------------------------------------------------------------------------------ figures


def _atomic_png(path: Path, figure: object) -> None:
    from igkit.io.writers import write_figure_png

    write_figure_png(path, figure)  # type: ignore[arg-type]


def write_image_figures(
    out: Path,
    stem: str,
    styles: Sequence[str],
    *,
    model: LoadedModel,
    pixels: np.ndarray,
    result: Result,
    baseline_hwc: np.ndarray,
    label: str,
    output: str,
    batch_size: int,
    seed: int,
) -> list[str]:
    """Draw and atomically write the per-image styles of one explanation.

    ``riemann`` is left out (it is written once per run by :func:`write_riemann_figure`).

    Args:
        out: Output folder.
        stem: File stem, ``NAME`` or ``NAME_TARGET``.
        styles: Requested styles.
        model: The loaded model (the gradvis and baselines styles run it).
        pixels: The model input, ``(H, W, 3)``.
        result: Its Result (with the path trace when ``saturation`` is asked for).
        baseline_hwc: The (first) baseline, ``(H, W, 3)``.
        label: Name of the explained class.
        output: What is explained ("softmax", ...).
        batch_size: Path points per model call in the extra computations.
        seed: Seed of random baselines.

    Returns:
        The names of the files written, in style order.
    """
    from igkit.viz.report import explain_figures, figure_filename

    per_image = [s for s in styles if s != "riemann"]
    if not per_image:
        return []
    explain_figures(
        pixels,
        result,
        styles=per_image,
        model=model,
        output=output,
        label=label,
        title=f"{stem} ({model.name}, {output})",
        name=stem,
        baseline=baseline_hwc,
        batch_size=batch_size,
        seed=seed,
        out_dir=out,
        save=_atomic_png,
    )
    return [figure_filename(stem, s) for s in per_image]


def write_augment_figure(
    path: Path,
    variants: Sequence[Variant],
    results: Sequence[Result],
    attributions: Sequence[np.ndarray],
    *,
    label_of: Callable[[int], str],
    label: str,
    title: str,
) -> None:
    """The debugging comparison of one image and target: every variant side by side.

    Args:
        path: Where to write it (``NAME.augment.png``).
        variants: The original first, then the augmentations.
        results: Their Results, same order.
        attributions: Their attributions, ``(H, W, 3)``.
        label_of: Class index to class name.
        label: Name of the explained class.
        title: First title line.
    """
    from dataclasses import replace

    from igkit.viz.report import augment_figure

    top = [int(np.argmax(v.scores)) for v in variants]
    fig = augment_figure(
        [v.pixels for v in variants],
        [replace(r, attributions=a) for r, a in zip(results, attributions, strict=True)],
        [v.name for v in variants],
        predictions=[(label_of(t), float(v.scores[t])) for t, v in zip(top, variants, strict=True)],
        label=label,
        title=title,
    )
    _atomic_png(path, fig)


def riemann_filename(names: Sequence[str]) -> str:
    """The Riemann figure's file name, moved aside if an input would write the same name."""
    from igkit.viz.report import RIEMANN_FILE

    stem = RIEMANN_FILE.removesuffix(".png")
    return RIEMANN_FILE if stem not in names else f"{stem}-sums.png"


def write_riemann_figure(out: Path, names: Sequence[str], method: str, steps: int | str) -> str:
    """Write the 1-D Riemann-sum illustration once for the run; returns its file name."""
    from igkit.viz.report import riemann_figure

    filename = riemann_filename(names)
    _atomic_png(out / filename, riemann_figure(method, steps))
    return filename
