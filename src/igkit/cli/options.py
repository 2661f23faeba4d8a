"""The options shared by ``explain``, ``demo`` and ``explain-dataset``, and the settings they
make.

Every option is parsed by an argparse ``type=`` that wraps a parser of
:mod:`igkit.workflow.settings`, so a bad value is one usage error before anything is loaded.
Choices come from the library's registries (quadrature rules, baselines, figure styles, model
sources). :func:`settings_from_args` turns the parsed arguments into the workflow's one typed
settings object.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from igkit.cli._base import UsageError
from igkit.workflow import settings as ws

__all__ = [
    "add_augment_argument",
    "add_channel_arguments",
    "add_figure_argument",
    "add_ig_arguments",
    "add_input_arguments",
    "add_model_arguments",
    "add_replace_argument",
    "non_negative_float",
    "positive_int",
    "settings_from_args",
]


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


_positive_int = ws.number_parser(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = ws.number_parser(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = ws.number_parser(
    float, lambda v: v > 0 and np.isfinite(v), "a positive number"
)
_finite_float = ws.number_parser(float, np.isfinite, "a number")


def _figure_styles(text: str) -> tuple[str, ...]:
    from igkit.viz.styles import parse_figure_styles

    return parse_figure_styles(text)


def _augmentations(text: str) -> tuple[Any, ...]:
    from igkit.viz.augment import parse_augment

    return parse_augment(text)


positive_int = _typed(_positive_int)
non_negative_float = _typed(ws.number_parser(float, lambda v: v >= 0, "a number >= 0"))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights``, ``--trust``."""
    from igkit.models.sources import available_schemes

    parser.add_argument(
        "--model",
        default=ws.DEFAULT_MODEL,
        metavar="M",
        help=f"model to explain (default: {ws.DEFAULT_MODEL}); one of: "
        + ", ".join(available_schemes()),
    )
    parser.add_argument(
        "--weights",
        metavar="PATH",
        help="local weights file for models that would otherwise download theirs",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow models that run their own code when loaded or called: TorchScript files, "
        "pickled torch models, SavedModel folders and tfhub: modules, Keras files with Lambda "
        "layers or custom objects, and package.module:function; only for models from a source "
        "you trust (--weights files are always read as data only)",
    )


def add_input_arguments(parser: argparse.ArgumentParser, *, several_targets: bool) -> None:
    """``--target``, ``--preprocess``, ``--input-size`` (and ``--top-k`` for explain)."""
    if several_targets:
        parser.add_argument(
            "--target",
            action="append",
            type=_typed(ws.parse_target),
            metavar="top1|topN|INT|LABEL",
            help="class to explain: top1 (the prediction), topN (the N best), a class index or "
            "a class name; repeat for several (default: top1)",
        )
        parser.add_argument(
            "--top-k",
            type=positive_int,
            default=ws.DEFAULT_TOP_K,
            metavar="K",
            help=f"predictions to print per image (default: {ws.DEFAULT_TOP_K})",
        )
    else:
        parser.add_argument(
            "--target",
            type=_typed(ws.parse_target),
            default=None,
            metavar="top1|INT|LABEL",
            help="class to explain per example: top1 (the prediction), a class index or a "
            "class name; a manifest's target column overrides it (default: top1)",
        )
    from igkit.models.spec import PREPROCESS_MODES

    parser.add_argument(
        "--preprocess",
        choices=PREPROCESS_MODES,
        default=None,
        help="how photos become model inputs: pad (keep aspect ratio, pad with black), "
        "resize (stretch) or center_crop (default: the model's own)",
    )
    parser.add_argument(
        "--input-size",
        type=_typed(ws.parse_input_size),
        default=None,
        metavar="N|HxW",
        help="model input size in pixels, for model files that do not state theirs "
        "(default: the model's own, else 224)",
    )


def add_ig_arguments(parser: argparse.ArgumentParser) -> None:
    """The attribution settings, ``--no-figures`` and ``--figure``."""
    from igkit.backends.base import OUTPUT_NAMES
    from igkit.core.baselines import available_baselines
    from igkit.core.quadrature import available_methods

    parser.add_argument(
        "--steps",
        type=_typed(ws.parse_steps),
        default=ws.DEFAULT_STEPS,
        metavar="N|auto",
        help="'auto' to refine until the attributions are within --tol, or gradient "
        f"evaluations per path (default: {ws.DEFAULT_STEPS})",
    )
    from igkit.methods import method_names

    parser.add_argument(
        "--method",
        choices=method_names(),
        default=ws.DEFAULT_METHOD,
        metavar="NAME",
        help=f"attribution method: an Integrated Gradients rule ({', '.join(available_methods())};"
        f" default: {ws.DEFAULT_METHOD}) or another method ("
        + ", ".join(n for n in method_names() if n not in available_methods()) + ")",
    )
    parser.add_argument(
        "--option",
        action="append",
        type=_typed(ws.parse_method_option),
        default=None,
        metavar="KEY=VALUE",
        help="an option of --method, repeatable: layer=NAME (grad_cam, layer methods), "
        "samples=N and stdev=S (smoothgrad, expected_gradients), window=H,W (occlusion), ... "
        "(see igkit.methods.get_method(NAME).options)",
    )
    parser.add_argument(
        "--tol",
        type=_typed(_positive_float),
        default=ws.DEFAULT_TOL,
        metavar="T",
        help="relative tolerance of completeness and, with --steps auto, of the estimated "
        f"attribution error (default: {ws.DEFAULT_TOL})",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=ws.DEFAULT_MAX_STEPS,
        metavar="N",
        help="the most gradient evaluations per path of --steps auto, all refinements "
        f"included (default: {ws.DEFAULT_MAX_STEPS})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=ws.DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"path points per model call (default: {ws.DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--baseline",
        type=_typed(ws.parse_baselines),
        default=("black",),
        metavar="B[,B...]",
        help=f"{', '.join(available_baselines())} or a pixel value in [0, 1]; a comma list "
        "averages the attributions over the baselines (default: black)",
    )
    parser.add_argument(
        "--output",
        choices=OUTPUT_NAMES,
        default=None,
        help="what to explain: softmax probability, raw model output, or sigmoid "
        "(default: the model's own, softmax for ImageNet classifiers)",
    )
    parser.add_argument(
        "--seed",
        type=_typed(_non_negative_int),
        default=0,
        metavar="S",
        help="seed of the random baselines (default: 0)",
    )
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="skip the PNG figures (no matplotlib needed)",
    )
    add_figure_argument(parser)


def add_figure_argument(parser: argparse.ArgumentParser) -> None:
    """``--figure STYLE[,STYLE...]``."""
    parser.add_argument(
        "--figure",
        type=_typed(_figure_styles),
        default=None,
        metavar="STYLE[,STYLE...]",
        help="figures to write per image and target, comma-separated, or 'all': panel (the "
        "TF tutorial's 2x2, NAME.png), signs (positive/negative in red/blue), gradvis (the "
        "Keras example's processing, plain gradients beside IG: one extra gradient "
        "evaluation), path (images along the path), saturation (score and gradient over "
        "alpha), riemann (the quadrature rule in 1-D, one riemann.png per run), baselines (IG "
        "against black, white, uniform and blur baselines side by side: runs IG up to four "
        "more times per target), channels (each colour channel and its attributions); all but "
        "the panel are written as NAME.STYLE.png (default: panel)",
    )


def add_augment_argument(parser: argparse.ArgumentParser) -> None:
    """``--augment``."""
    parser.add_argument(
        "--augment",
        type=_typed(_augmentations),
        default=None,
        metavar="A[,A...]",
        help="also explain each image transformed, the TF tutorial's debugging use case: "
        "rot90, rot180, rot270 (counter-clockwise), flip (left-right), vflip (upside down), "
        "zoom=F (the central F of the image, 0 < F < 1, resized back); prints each variant's "
        "predictions, writes NAME.VARIANT.npz, a summary row per variant and the comparison "
        "NAME.augment.png. Runs IG once more per variant and target",
    )


def add_replace_argument(parser: argparse.ArgumentParser) -> None:
    """``--replace``: an output folder holds one run."""
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace the earlier run in --out (only the files its igkit-run.json lists); "
        "without it a folder holding an earlier run is refused. Files igkit did not write "
        "are never overwritten",
    )


def add_channel_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-channel / multi-label options (the microscopy workflow)."""
    from igkit.io.channels import DEFAULT_PATTERN

    group = parser.add_argument_group(
        "multi-channel and multi-label examples (microscopy)",
        "Give any of these to read each example from per-channel files or a multi-channel TIFF "
        "and to explain every predicted label.",
    )
    group.add_argument(
        "--channels",
        default=None,
        metavar="C[,C...]",
        help="the channels of each example, in order: the {channel} names of the files, or a "
        "TIFF's pages (default: red,green,blue,yellow)",
    )
    group.add_argument(
        "--channel-files",
        default=None,
        metavar="PATTERN",
        help=f"per-channel file names with {{id}} and {{channel}} (default: {DEFAULT_PATTERN}); "
        "IMAGE_OR_DIR are folders searched for them, or files of the examples",
    )
    group.add_argument(
        "--model-channels",
        default=None,
        metavar="C[,C...]",
        help="the channels the model takes, in order (default: those the model declares, e.g. "
        "red,green,blue: yellow is dropped)",
    )
    group.add_argument(
        "--multilabel",
        action="store_true",
        help="explain every class whose output exceeds --threshold (besides any --target)",
    )
    group.add_argument(
        "--threshold",
        type=_typed(_finite_float),
        default=ws.DEFAULT_THRESHOLD,
        metavar="P",
        help=f"confidence threshold of --multilabel (default: {ws.DEFAULT_THRESHOLD})",
    )


def _styles(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = getattr(args, "figure", None)
    if getattr(args, "no_figures", False):
        if chosen:
            raise UsageError("--figure and --no-figures contradict each other; pass one")
        return ()
    return tuple(chosen) if chosen else ("panel",)


def _channel_list(text: str | None, what: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    from igkit.io.channels import ChannelError, parse_channel_names

    try:
        return parse_channel_names(text, what)
    except ChannelError as exc:
        raise UsageError(str(exc)) from None


def settings_from_args(args: argparse.Namespace) -> ws.ExplainSettings:
    """The typed settings the parsed arguments describe, checked without a model.

    Raises:
        UsageError: For contradicting options or step counts the rule cannot take.
    """
    target = getattr(args, "target", None)
    targets = tuple(target) if isinstance(target, list) else ((target,) if target else ())
    multilabel = bool(getattr(args, "multilabel", False))
    channels = _channel_list(getattr(args, "channels", None), "--channels")
    settings = ws.ExplainSettings(
        model=args.model,
        weights=args.weights,
        trust=bool(args.trust),
        input_size=getattr(args, "input_size", None),
        preprocess=getattr(args, "preprocess", None),
        targets=targets or (() if multilabel else (ws.TOP1,)),
        top_k=getattr(args, "top_k", ws.DEFAULT_TOP_K),
        steps=args.steps,
        method=args.method,
        method_options=tuple(getattr(args, "option", None) or ()),
        tol=args.tol,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        baseline=tuple(args.baseline),
        output=args.output,
        seed=args.seed,
        figures=_styles(args),
        augment=tuple(getattr(args, "augment", None) or ()),
        channels=channels,
        channel_files=getattr(args, "channel_files", None),
        model_channels=_channel_list(getattr(args, "model_channels", None), "--model-channels"),
        multilabel=multilabel,
        threshold=getattr(args, "threshold", ws.DEFAULT_THRESHOLD),
    )
    if settings.multichannel and (getattr(args, "augment", None) or getattr(args, "figure", None)):
        option = "augment" if getattr(args, "augment", None) else "figure"
        raise UsageError(
            f"--{option} does not apply to multi-channel examples (they get the sign-mask "
            "and RGBY figures); drop it"
        )
    try:
        settings.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return settings
