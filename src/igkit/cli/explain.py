"""``igkit explain``: predictions, Integrated Gradients, figures and numbers for image files.

The run has two phases. Validation checks everything a user can get wrong before any attribution
is computed: the options, the output folder, every image file (decoded and preprocessed), the
model (loaded and run on every image), and every requested target (a class index in range or a
known class name). A mistake there prints one ``igkit: error: ...`` line and writes nothing.
Only then does the attribution phase run, image by image; each output file is written
atomically, so an image that fails there (it should not) leaves the other images' files intact.

Per image and target it writes ``NAME.npz`` and ``NAME.png`` (``NAME_TARGET.*`` when several
targets are asked for), and at the end ``summary.csv`` with one row per image and target
(:data:`SUMMARY_FIELDS`). The PNG is the TF tutorial's panel (baseline, image, attribution mask,
overlay); ``--figure`` chooses more figures, written as ``NAME.STYLE.png`` (see
:mod:`igkit.cli.figures`). ``--augment`` also explains rotated / flipped / zoomed versions of each
image for the same targets: ``NAME.VARIANT.npz`` (the keys below plus ``variant``), one more
summary row each (column ``variant``; ``original`` for the image itself) and the comparison
``NAME.augment.png``. The npz holds plain arrays (``np.load(..., allow_pickle=False)`` reads it):

* ``attributions``, ``image`` (the model input) and ``baseline_image`` (the first baseline), all
  ``(H, W, 3)`` float32 in pixel space;
* ``target``, ``target_label``, ``score`` F(x), ``baseline_score`` F(x'), ``delta``,
  ``relative_error``, ``converged``, ``completeness`` (the check in words), ``steps``,
  ``requested_steps``, ``evaluations``, ``seconds``;
* the settings: ``model``, ``model_description``, ``framework``, ``method``, ``baseline``,
  ``baselines``, ``tol``, ``output``, ``seed``, ``batch_size``, ``preprocess``, ``input_size``,
  ``source`` (the image file) and ``igkit_version``;
* the printed predictions: ``top_k_indices``, ``top_k_scores``, ``top_k_labels``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError
from igkit.cli.figures import (
    Variant,
    add_augment_argument,
    add_figure_argument,
    check_figure_dependencies,
    make_variants,
    requested_styles,
    write_augment_figure,
    write_image_figures,
    write_riemann_figure,
)

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.models.spec import LoadedModel

__all__ = [
    "COMMAND",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_METHOD",
    "DEFAULT_STEPS",
    "DEFAULT_TOL",
    "SUMMARY_FIELDS",
    "TargetSpec",
    "add_ig_arguments",
    "add_model_arguments",
    "check_options",
    "run",
]

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_STEPS = 64
DEFAULT_METHOD = "gauss_legendre"
DEFAULT_BATCH_SIZE = 16
#: The TF tutorial's completeness check: attributions sum to F(x) - F(x') within 5 %.
DEFAULT_TOL = 0.05
DEFAULT_TOP_K = 3
DEFAULT_OUT = "igkit-out"

#: Columns of ``summary.csv``, one row per image and target.
SUMMARY_FIELDS: tuple[str, ...] = (
    "image",
    "name",
    "model",
    "target",
    "label",
    "rank",
    "score",
    "baseline_score",
    "delta",
    "relative_error",
    "completeness",
    "steps",
    "evaluations",
    "method",
    "baseline",
    "output",
    "tol",
    "seconds",
    "npz",
    "png",
    "variant",
)


# ---------------------------------------------------------------------------- argument parsing


@dataclass(frozen=True)
class TargetSpec:
    """One ``--target``: the ``count`` best classes ("top"), a class index, or a class name."""

    kind: Literal["top", "index", "label"]
    value: int | str
    text: str


def _target(text: str) -> TargetSpec:
    text = text.strip()
    top = re.fullmatch(r"top(\d+)", text, flags=re.IGNORECASE)
    if top:
        count = int(top.group(1))
        if count < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: topN needs N >= 1")
        return TargetSpec("top", count, text)
    if re.fullmatch(r"[+-]?\d+", text):
        return TargetSpec("index", int(text), text)
    if not text:
        raise argparse.ArgumentTypeError("empty target")
    return TargetSpec("label", text, text)


def _steps(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer or 'auto'") from None
    if steps < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer or 'auto'")
    return steps


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _input_size(text: str) -> tuple[int, int]:
    """``224`` or ``240x320`` (height x width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+)\s*)?", text)
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW with positive integers")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _baselines(text: str) -> list[str | float]:
    """``black``, ``white,uniform``, ``0.5``: names or constant pixel values, comma-separated."""
    from igkit.core.baselines import available_baselines

    names = available_baselines()
    items: list[str | float] = []
    for part in (p.strip() for p in text.split(",")):
        if part in names:
            items.append(part)
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"unknown baseline {part!r}; choose from {', '.join(names)} or a pixel value "
                "in [0, 1], comma-separated to average several"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"constant baseline {part} is outside [0, 1]")
        items.append(value)
    return items


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights``, ``--trust`` (shared with ``igkit demo``)."""
    from igkit.models.loaders import available_schemes

    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="M",
        help=f"model to explain (default: {DEFAULT_MODEL}); one of: "
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
        help="allow model files that can run code when loaded (pickled torch models, Keras "
        "Lambda layers); only for files from a source you trust",
    )


def add_ig_arguments(parser: argparse.ArgumentParser) -> None:
    """The Integrated Gradients settings (shared with ``igkit demo``)."""
    from igkit.core.quadrature import available_methods

    parser.add_argument(
        "--steps",
        type=_steps,
        default=DEFAULT_STEPS,
        metavar="N|auto",
        help=f"gradient evaluations per path, or 'auto' to refine until --tol is met "
        f"(default: {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--method",
        choices=available_methods(),
        default=DEFAULT_METHOD,
        help=f"quadrature rule (default: {DEFAULT_METHOD})",
    )
    parser.add_argument(
        "--tol",
        type=_positive_float,
        default=DEFAULT_TOL,
        metavar="T",
        help="relative completeness tolerance the result is judged against (and refined to "
        f"with --steps auto) (default: {DEFAULT_TOL})",
    )
    parser.add_argument(
        "--max-steps",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="ceiling for --steps auto (default: 1024)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"path points per model call (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--baseline",
        type=_baselines,
        default=["black"],
        metavar="B[,B...]",
        help="black, white, uniform, gaussian, blur or a pixel value in [0, 1]; a comma list "
        "averages the attributions over the baselines (default: black)",
    )
    parser.add_argument(
        "--output",
        choices=("softmax", "raw", "sigmoid"),
        default=None,
        help="what to explain: softmax probability, raw model output, or sigmoid "
        "(default: the model's own, softmax for ImageNet classifiers)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
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


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit explain``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    add_model_arguments(parser)
    parser.add_argument(
        "--target",
        action="append",
        type=_target,
        metavar="top1|topN|INT|LABEL",
        help="class to explain: top1 (the prediction), topN (the N best), a class index or a "
        "class name; repeat for several (default: top1)",
    )
    parser.add_argument(
        "--top-k",
        type=_positive_int,
        default=DEFAULT_TOP_K,
        metavar="K",
        help=f"predictions to print per image (default: {DEFAULT_TOP_K})",
    )
    parser.add_argument(
        "--preprocess",
        choices=("pad", "resize", "center_crop"),
        default=None,
        help="how photos become model inputs: pad (keep aspect ratio, pad with black), "
        "resize (stretch) or center_crop (default: the model's own)",
    )
    parser.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        metavar="N|HxW",
        help="model input size in pixels, for model files that do not state theirs "
        "(default: the model's own, else 224)",
    )
    add_ig_arguments(parser)
    add_augment_argument(parser)
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder (default: {DEFAULT_OUT})",
    )
    # --- microscopy (issue 5): multi-channel, multi-label options; see igkit.cli.microscopy.
    from igkit.cli import microscopy

    microscopy.add_explain_arguments(parser)
    # --- end microscopy


# ---------------------------------------------------------------------------------- validation


def check_options(args: argparse.Namespace) -> None:
    """Checks that need no model and no images: step counts and the output folder.

    Raises:
        UsageError: Naming the option and the fix.
    """
    from igkit.core.quadrature import check_steps, get_rule

    rule = get_rule(args.method)
    try:
        if args.steps == "auto":
            check_steps(rule, args.max_steps)
        else:
            check_steps(rule, args.steps)
    except ValueError as exc:
        raise UsageError(f"--steps/--max-steps: {exc}") from None
    requested_styles(args)  # --figure with --no-figures is a contradiction
    _check_out_dir(Path(args.out))


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: no permission to write in {existing}")


@dataclass(frozen=True)
class _Image:
    """One validated input: where it is, its output name, its predictions and targets."""

    path: Path
    name: str
    scores: np.ndarray  # transformed outputs (probabilities for softmax), (classes,)
    targets: tuple[int, ...]


@dataclass(frozen=True)
class _Job:
    model: LoadedModel
    labels: list[str] | None
    preprocess: str
    output: str
    images: list[_Image]
    one_target: bool  # name outputs NAME.npz rather than NAME_TARGET.npz


def _prepare(args: argparse.Namespace) -> _Job:
    """Validation proper: images, model, predictions, targets. Raises UsageError."""
    from igkit.io.images import ImageError, list_images, load_image, preprocess
    from igkit.models.loaders import ModelLoadError, load_model
    from igkit.models.spec import guess_labels, transform_outputs

    try:
        paths = list_images(args.images)
    except ImageError as exc:
        raise UsageError(str(exc)) from None
    _check_figures(args)
    try:
        model = load_model(args.model, trust=args.trust, weights=args.weights)
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from None
    if args.input_size is not None:
        model = dataclasses.replace(model, input_size=args.input_size)
    if args.method == "secant" and model.framework != "torch":
        raise UsageError(
            f"--method secant: needs a PyTorch model, and --model {args.model} runs on "
            f"{model.framework}; use --method gauss_legendre or adaptive"
        )
    mode = args.preprocess or model.preprocess
    output = args.output or model.default_output

    raw_rows: list[np.ndarray] = []
    chunk: list[np.ndarray] = []

    def flush() -> None:
        if chunk:
            batch = np.stack(chunk)
            try:
                raw_rows.append(model.predict(batch, batch_size=args.batch_size))
            except Exception as exc:  # noqa: BLE001 - any framework's error for a bad input
                # Most often a model made for another input size, or not returning class
                # scores: the user's choice of model or --input-size, not a bug of igkit.
                lines = str(exc).strip().splitlines() or [""]
                raise UsageError(
                    f"--model {args.model}: running it on images of {model.input_size[0]}x"
                    f"{model.input_size[1]} pixels failed ({type(exc).__name__}: {lines[0]}); "
                    "check --input-size"
                ) from None
            chunk.clear()

    for path in paths:
        try:
            chunk.append(preprocess(load_image(path), model.input_size, mode))
        except ImageError as exc:
            raise UsageError(str(exc)) from None
        if len(chunk) == args.batch_size:
            flush()
    flush()
    scores = transform_outputs(np.concatenate(raw_rows, axis=0), output)
    classes = scores.shape[1]
    labels = model.labels if model.labels is not None else guess_labels(classes)
    if labels is not None and len(labels) != classes:
        labels = None  # names that do not fit the outputs would mislabel every class
    specs: list[TargetSpec] = args.target or [TargetSpec("top", 1, "top1")]
    fixed = [_fixed_target(spec, labels, classes, model.name) for spec in specs]
    names = _output_names(paths)
    images = []
    for path, name, row in zip(paths, names, scores, strict=True):
        ranked = np.argsort(-row, kind="stable")
        targets: list[int] = []
        for spec, index in zip(specs, fixed, strict=True):
            chosen = [index] if index is not None else ranked[: min(int(spec.value), classes)]
            for target in (int(t) for t in chosen):
                if target not in targets:
                    targets.append(target)
        images.append(_Image(path, name, row, tuple(targets)))
    one_target = len(specs) == 1 and not (specs[0].kind == "top" and int(specs[0].value) > 1)
    return _Job(model, labels, mode, output, images, one_target)


def _check_figures(args: argparse.Namespace) -> None:
    styles = requested_styles(args)
    if styles:
        check_figure_dependencies(styles)


def _fixed_target(
    spec: TargetSpec, labels: list[str] | None, classes: int, model_name: str
) -> int | None:
    """The class index a spec names, None for "topN" (it depends on the image)."""
    from igkit.models.spec import find_label

    if spec.kind == "top":
        if int(spec.value) > classes:
            raise UsageError(f"--target {spec.text}: the model has only {classes} classes")
        return None
    if spec.kind == "index":
        index = int(spec.value)
        if not 0 <= index < classes:
            raise UsageError(
                f"--target {spec.text}: out of range, {model_name} has classes 0..{classes - 1}"
            )
        return index
    if labels is None:
        raise UsageError(
            f"--target {spec.text!r}: {model_name} has no class names; pass a class index"
        )
    try:
        return find_label(labels, str(spec.value))
    except KeyError:
        raise UsageError(
            f"--target {spec.text!r}: not a class of {model_name} (names are matched "
            "case-insensitively, by full name, synonym or prefix); pass a class index instead"
        ) from None
    except ValueError as exc:
        raise UsageError(f"--target: {exc}") from None


def _output_names(paths: Sequence[Path]) -> list[str]:
    """File stems, made unique by suffixing ``-2``, ``-3``... in input order."""
    return unique_names([path.stem for path in paths], fallback="image")


def unique_names(stems: Sequence[str], *, fallback: str) -> list[str]:
    """``stems`` made unique by suffixing ``-2``, ``-3``... in order; empty ones get
    ``fallback``."""
    names: list[str] = []
    taken: set[str] = set()
    for stem in stems:
        stem = stem or fallback
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


# ------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> int:
    """``igkit explain``: validate everything, then explain image by image."""
    # --- microscopy (issue 5): multi-channel examples run in igkit.cli.microscopy.
    from igkit.cli import microscopy

    if microscopy.requested(args):
        return microscopy.run(args)
    # --- end microscopy
    check_options(args)
    job = _prepare(args)
    return _execute(job, args)


def _execute(job: _Job, args: argparse.Namespace) -> int:
    from igkit.io.writers import write_csv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failures = 0
    with _Progress(len(job.images)) as progress:
        for image in job.images:
            try:
                rows.extend(_explain_one(job, image, args, out, progress.say))
            except Exception as exc:  # noqa: BLE001 - report, keep the other images' outputs
                failures += 1
                message = " ".join(str(exc).split())
                progress.error(f"igkit: error: {image.path}: {type(exc).__name__}: {message}")
            progress.advance()
    riemann_failed = False
    if "riemann" in requested_styles(args):
        try:  # the one figure that does not depend on the input: once per run
            write_riemann_figure(out, [i.name for i in job.images], args.method, args.steps)
        except Exception as exc:  # noqa: BLE001 - report, keep the images' outputs
            riemann_failed = True
            print(f"igkit: error: Riemann figure: {type(exc).__name__}: {exc}", file=sys.stderr)
    write_csv(out / "summary.csv", rows, SUMMARY_FIELDS)
    done = len(job.images) - failures
    print(f"wrote {len(rows)} explanations of {done} image(s) and summary.csv to {out}")
    if failures:
        print(f"igkit: {failures} image(s) failed; see the errors above", file=sys.stderr)
    return EXIT_FAILED if failures or riemann_failed else EXIT_OK


def _label(job: _Job, index: int) -> str:
    return job.labels[index] if job.labels is not None else f"class {index}"


def _say_predictions(
    job: _Job, what: str, scores: np.ndarray, top_k: int, say: Callable[[str], None]
) -> None:
    """Print the top-k predictions of one input (or variant)."""
    ranked = np.argsort(-scores, kind="stable")
    kind = {"softmax": "probability", "sigmoid": "sigmoid", "raw": "score"}[job.output]
    say(f"{what}: top-{top_k} predictions of {job.model.name} ({kind}):")
    for rank, index in enumerate(ranked[:top_k], start=1):
        say(f"  {rank}. {_label(job, int(index))} ({int(index)})  {scores[index]:.4f}")


@dataclass(frozen=True)
class _Explained:
    """One variant's explanation of one target: the Result, HWC attributions and summary row."""

    result: Result
    attributions: np.ndarray
    baseline_hwc: np.ndarray
    row: dict[str, Any]


def _explain_one(
    job: _Job,
    image: _Image,
    args: argparse.Namespace,
    out: Path,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Predictions, then IG, npz, figures and a summary row for each target of one image.

    With ``--augment`` the variants' predictions are printed too, each variant is explained for
    the same targets, and ``NAME.augment.png`` compares them.
    """
    from igkit.io.images import load_image, preprocess

    model = job.model
    pixels = preprocess(load_image(image.path), model.input_size, job.preprocess)  # type: ignore[arg-type]
    top_k = min(args.top_k, len(image.scores))
    _say_predictions(job, str(image.path), image.scores, top_k, say)
    variants = [Variant("original", "", pixels, image.scores)]
    if args.augment:
        for variant in make_variants(model, pixels, args.augment, job.output, args.batch_size):
            _say_predictions(job, f"{image.path} ({variant.name})", variant.scores, top_k, say)
            variants.append(variant)
    styles = requested_styles(args)
    rows = []
    for target in image.targets:
        stem = image.name if job.one_target else f"{image.name}_{target}"
        done = [
            _explain_variant(
                job, image, args, out, say, variant, target, stem, top_k,
                trace=variant is variants[0] and "saturation" in styles,
            )
            for variant in variants
        ]
        original = done[0]
        if styles:
            written = write_image_figures(
                out, stem, styles, model=model, pixels=pixels, result=original.result,
                baseline_hwc=original.baseline_hwc, label=_label(job, target),
                output=job.output, batch_size=args.batch_size, seed=args.seed,
            )
            original.row["png"] = f"{stem}.png" if f"{stem}.png" in written else ""
        if styles and len(variants) > 1:
            comparison = f"{stem}.augment.png"
            write_augment_figure(
                out / comparison, variants, [d.result for d in done],
                [d.attributions for d in done], label_of=lambda i: _label(job, i),
                label=_label(job, target), title=f"{stem} ({model.name}, {job.output})",
            )
            for d in done[1:]:
                d.row["png"] = comparison
        rows.extend(d.row for d in done)
    return rows


def _explain_variant(
    job: _Job,
    image: _Image,
    args: argparse.Namespace,
    out: Path,
    say: Callable[[str], None],
    variant: Variant,
    target: int,
    stem: str,
    top_k: int,
    *,
    trace: bool,
) -> _Explained:
    """IG of one target on one variant of an image; writes its npz, returns its summary row."""

    model = job.model
    x = model.to_model_layout(variant.pixels[None])
    ranked = np.argsort(-variant.scores, kind="stable")
    started = time.perf_counter()
    # The completeness report below says in words whether the tolerance was met.
    result = model.explain(x, target, args, job.output, return_path=trace)
    seconds = time.perf_counter() - started
    attributions = model.to_hwc(result.attributions[0]).astype(np.float32)
    baseline_hwc = _first_baseline(model, x, args.baseline, args.seed)
    rank = int(np.flatnonzero(ranked == target)[0]) + 1
    on = f" on the {variant.name} image" if variant.slug else ""
    say(
        f"  IG of {_label(job, target)} ({target}){on}, rank {rank}: "
        f"{result.completeness_report(0)}; {seconds:.1f} s"
    )
    npz_path = out / (f"{stem}.{variant.slug}.npz" if variant.slug else f"{stem}.npz")
    _write_npz(
        npz_path,
        job,
        dataclasses.replace(image, scores=variant.scores),
        args,
        result,
        target,
        attributions,
        variant.pixels,
        baseline_hwc,
        seconds,
        ranked[:top_k],
        extra={"variant": variant.name} if variant.slug else None,
    )
    row = {
        "image": str(image.path),
        "name": image.name,
        "model": model.name,
        "target": target,
        "label": _label(job, target),
        "rank": rank,
        "score": f"{result.score[0]:.6g}",
        "baseline_score": f"{result.baseline_score[0]:.6g}",
        "delta": f"{result.delta[0]:.6g}",
        "relative_error": f"{result.relative_error[0]:.6g}",
        "completeness": "within" if result.converged[0] else "NOT within",
        "steps": int(result.steps[0]),
        "evaluations": int(result.evaluations[0]),
        "method": result.method,
        "baseline": _baseline_text(args.baseline),
        "output": job.output,
        "tol": result.tol,
        "seconds": f"{seconds:.3f}",
        "npz": npz_path.name,
        "png": "",
        "variant": variant.name,
    }
    return _Explained(result, attributions, baseline_hwc, row)


def _baseline_text(baselines: Sequence[str | float]) -> str:
    return ",".join(b if isinstance(b, str) else f"{b:g}" for b in baselines)


def _first_baseline(
    model: LoadedModel, x: np.ndarray, baselines: Sequence[str | float], seed: int
) -> np.ndarray:
    """The first baseline image (HWC) exactly as the engine builds it, for the figure and npz.

    Rebuilt with the engine's own builder, context and seed, so random baselines match.
    """
    from igkit.core.baselines import BaselineContext, make_baselines

    context = BaselineContext(
        inputs=x.astype(np.float32),
        channel_axis=model.channel_axis,
        input_range=(0.0, 1.0),
        rng=np.random.default_rng(seed),
    )
    _, first = make_baselines(list(baselines), context)[0]
    return model.to_hwc(first[0]).astype(np.float32)


def _write_npz(
    path: Path,
    job: _Job,
    image: _Image,
    args: argparse.Namespace,
    result: Result,
    target: int,
    attributions: np.ndarray,
    pixels: np.ndarray,
    baseline_hwc: np.ndarray,
    seconds: float,
    top: np.ndarray,
    extra: dict[str, Any] | None = None,
) -> None:
    import igkit
    from igkit.io.writers import write_npz

    write_npz(
        path,
        {
            "attributions": attributions,
            "image": pixels.astype(np.float32),
            "baseline_image": baseline_hwc,
            "source": str(image.path),
            "model": job.model.name,
            "model_description": job.model.description,
            "framework": job.model.framework,
            **result.numbers(0),
            "target": target,
            "target_label": _label(job, target),
            "completeness": result.completeness_report(0),
            "requested_steps": str(args.steps),
            "method": result.method,
            "baseline": _baseline_text(args.baseline),
            "baselines": np.asarray(result.baselines, dtype=str),
            "tol": result.tol,
            "output": job.output,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "preprocess": job.preprocess,
            "input_size": np.asarray(job.model.input_size, dtype=np.int64),
            "top_k_indices": np.asarray(top, dtype=np.int64),
            "top_k_scores": image.scores[top],
            "top_k_labels": np.asarray([_label(job, int(i)) for i in top], dtype=str),
            "seconds": seconds,
            "igkit_version": igkit.__version__,
            **(extra or {}),
        },
    )


class _Progress:
    """A tqdm bar on stderr when there are several images; messages are printed around it.

    Used as ``with _Progress(n) as progress:``; ``progress.say`` prints to stdout and
    ``progress.error`` to stderr without tearing the bar, ``progress.advance`` counts an image.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._bar: Any = None

    def __enter__(self) -> _Progress:
        if self._total > 1:
            try:
                from tqdm import tqdm
            except ImportError:  # the bar is a nicety; run without it
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self._total, unit="image", file=sys.stderr, leave=False)
        return self

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def say(self, text: str) -> None:
        self._print(text, sys.stdout)

    def error(self, text: str) -> None:
        self._print(text, sys.stderr)

    def _print(self, text: str, stream: Any) -> None:
        if self._bar is not None:
            self._bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


COMMAND = Command(
    name="explain",
    help="explain a model's predictions on image files with Integrated Gradients",
    description=(
        "Print the top-k predictions for each image, compute Integrated Gradients for the "
        "target class(es), check completeness, and write NAME.npz, NAME.png (plus the "
        "--figure styles as NAME.STYLE.png) and summary.csv to the output folder. "
        "Everything is validated before the first attribution is computed; a mistake writes "
        "nothing."
    ),
    configure=configure,
    run=run,
)
