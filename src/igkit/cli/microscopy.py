"""Multi-channel, multi-label examples for ``igkit explain``, and ``igkit demo --microscopy``.

``igkit explain`` hands its run to :func:`run` when any of ``--channels``, ``--channel-files``,
``--model-channels`` or ``--multilabel`` is given. Each example is then assembled from
per-channel files (``--channel-files``, default ``{id}_{channel}.png``) or read from a
multi-page / multi-channel TIFF, in the order ``--channels`` names (default
red,green,blue,yellow); ``--model-channels`` picks the ones the model takes (default: the
channels the model declares, e.g. red,green,blue for ``hpa_synthetic``: yellow is dropped, as in
the HPA notebook). With ``--multilabel`` the targets are every class whose output (by default
the model's own, a sigmoid for multi-label models) exceeds ``--threshold``; ``--target`` adds
classes, and without either the top class is explained.

As in ``explain``, everything is validated before the first attribution (options, output folder,
every example's files and sizes, the model and its channel count, every target), a mistake prints
one ``igkit: error:`` line and exits 2 with nothing written, and each output file is written
atomically. All targets of one example are attributed in one multi-target call, sharing batches.

Per example ``ID`` and target ``T`` it writes ``ID_T.npz`` and ``ID_T.png`` (the sign-mask
figure: positive attributions red, negative blue), per example ``ID_rgby.png`` (each stain in
its colour and the RGB blend, when the channels are red, green, blue and yellow), and
``summary.csv`` with one row per example and target (:data:`SUMMARY_FIELDS`). The npz holds plain
arrays: ``attributions`` ``(H, W, model channels)`` float32, ``image`` ``(H, W, channels)`` (all
channels, model size), ``model_input`` and ``baseline_image`` ``(H, W, model channels)``,
``channels``, ``model_channels``, ``sources`` (the files), ``target``, ``target_label``,
``score``, ``baseline_score``, ``delta``, ``relative_error``, ``converged``, ``completeness``,
``steps``, ``evaluations``, the settings (``model``, ``method``, ``baseline``, ``tol``,
``output``, ``threshold``, ``seed``, ``batch_size``) and the predictions (``scores``,
``predicted`` above the threshold, ``labels``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.cli._base import EXIT_FAILED, EXIT_OK, UsageError
from igkit.cli.explain import _baseline_text, _first_baseline, _fixed_target, unique_names
from igkit.cli.figures import check_figure_dependencies

if TYPE_CHECKING:
    from igkit.core.result import Result
    from igkit.io.channels import ChannelExample
    from igkit.models.spec import LoadedModel

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEMO_MODEL",
    "SUMMARY_FIELDS",
    "add_demo_argument",
    "add_explain_arguments",
    "requested",
    "run",
    "run_demo",
]

#: The HPA notebook's confidence threshold.
DEFAULT_THRESHOLD = 0.4
#: The model ``igkit demo --microscopy`` explains.
DEMO_MODEL = "hpa_synthetic"

#: Columns of ``summary.csv`` in a microscopy run, one row per example and target.
SUMMARY_FIELDS: tuple[str, ...] = (
    "example",
    "source",
    "model",
    "target",
    "label",
    "score",
    "predicted",
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
)


# ---------------------------------------------------------------------------------- arguments


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-channel / multi-label options of ``igkit explain``."""
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
        type=_threshold,
        default=DEFAULT_THRESHOLD,
        metavar="P",
        help=f"confidence threshold of --multilabel (default: {DEFAULT_THRESHOLD})",
    )


def add_demo_argument(parser: argparse.ArgumentParser) -> None:
    """``igkit demo --microscopy``."""
    parser.add_argument(
        "--microscopy",
        action="store_true",
        help=f"explain synthetic HPA cells (four stains as PNG files) with {DEMO_MODEL} instead "
        "of the photos",
    )


def requested(args: argparse.Namespace) -> bool:
    """Whether ``args`` ask for the multi-channel / multi-label run."""
    return bool(
        getattr(args, "channels", None)
        or getattr(args, "channel_files", None)
        or getattr(args, "model_channels", None)
        or getattr(args, "multilabel", False)
    )


# --------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Example:
    source: ChannelExample
    name: str
    image: np.ndarray  # (H, W, channels) at the model's size
    scores: np.ndarray  # transformed outputs, (classes,)
    targets: tuple[int, ...]
    predicted: tuple[int, ...]  # above the threshold (with --multilabel)


@dataclass(frozen=True)
class _Job:
    model: LoadedModel
    labels: list[str] | None
    channels: tuple[str, ...]
    model_channels: tuple[str, ...]
    picks: tuple[int, ...]  # model channels' positions in ``channels``
    output: str
    examples: list[_Example]
    fallbacks: tuple[str, ...]  # examples with nothing above the threshold


def _prepare(args: argparse.Namespace) -> _Job:
    """Everything that can fail because of the user, checked before anything is computed."""
    from igkit.io.channels import (
        DEFAULT_CHANNELS,
        DEFAULT_PATTERN,
        ChannelError,
        find_channel_examples,
        parse_channel_names,
    )
    from igkit.io.images import preprocess
    from igkit.models.loaders import ModelLoadError, load_model
    from igkit.models.spec import transform_outputs

    for option in ("augment", "figure"):
        if getattr(args, option, None):
            raise UsageError(
                f"--{option} does not apply to multi-channel examples (they get the sign-mask "
                "and RGBY figures); drop it"
            )
    pattern = args.channel_files or DEFAULT_PATTERN
    try:
        channels = parse_channel_names(args.channels or DEFAULT_CHANNELS, "--channels")
        examples = find_channel_examples(args.images, channels, pattern)
    except ChannelError as exc:
        raise UsageError(str(exc)) from None
    if not args.no_figures:
        check_figure_dependencies(())
    try:
        model = load_model(args.model, trust=args.trust, weights=args.weights)
    except ModelLoadError as exc:
        raise UsageError(str(exc)) from None
    model_channels = _model_channels(args, model, channels)
    picks = tuple(channels.index(c) for c in model_channels)
    mode = args.preprocess or model.preprocess
    size = args.input_size or model.input_size
    if size != model.input_size:
        from dataclasses import replace

        model = replace(model, input_size=tuple(size))
    images = []
    for example in examples:
        try:
            image = example.load(channels, channels)
        except ChannelError as exc:
            raise UsageError(str(exc)) from None
        images.append(preprocess(image, model.input_size, mode))
    batch = np.stack(images)[..., list(picks)]
    try:
        raw = model.predict(batch, batch_size=args.batch_size)
    except Exception as exc:  # noqa: BLE001 - any framework's error for a bad input
        lines = str(exc).strip().splitlines() or [""]
        raise UsageError(
            f"--model {args.model}: running it on {len(picks)} channels "
            f"({','.join(model_channels)}) of {model.input_size[0]}x{model.input_size[1]} pixels "
            f"failed ({type(exc).__name__}: {lines[0]}); check --model-channels"
        ) from None
    output = args.output or model.default_output
    scores = transform_outputs(raw, output)
    classes = scores.shape[1]
    labels = model.labels if model.labels is not None and len(model.labels) == classes else None
    fixed = [_fixed_target(spec, labels, classes, model.name) for spec in args.target or []]
    names = unique_names([e.id or e.source.stem for e in examples], fallback="example")
    prepared, fallbacks = [], []
    for example, name, image, row in zip(examples, names, images, scores, strict=True):
        ranked = np.argsort(-row, kind="stable")
        predicted = tuple(int(k) for k in ranked if row[k] > args.threshold)
        chosen: list[int] = []
        for spec, index in zip(args.target or [], fixed, strict=True):
            chosen += [index] if index is not None else [int(k) for k in ranked[: spec.value]]
        if args.multilabel:
            chosen += list(predicted)
            if not predicted and not args.target:
                fallbacks.append(name)
        if not chosen:
            chosen = [int(ranked[0])]
        targets = tuple(dict.fromkeys(chosen))
        prepared.append(_Example(example, name, image, row, targets, predicted))
    return _Job(model, labels, channels, model_channels, picks, output, prepared, tuple(fallbacks))


def _model_channels(
    args: argparse.Namespace, model: LoadedModel, channels: tuple[str, ...]
) -> tuple[str, ...]:
    from igkit.io.channels import ChannelError, parse_channel_names

    if args.model_channels:
        try:
            wanted = parse_channel_names(args.model_channels, "--model-channels")
        except ChannelError as exc:
            raise UsageError(str(exc)) from None
    elif model.channels is not None:
        wanted = tuple(model.channels)
    else:
        wanted = channels
    absent = [c for c in wanted if c not in channels]
    if absent:
        raise UsageError(
            f"--model-channels: {absent[0]!r} is not one of the example's channels "
            f"({','.join(channels)}); name it in --channels or leave it out"
        )
    if model.channels is not None and len(wanted) != len(model.channels):
        raise UsageError(
            f"--model {model.name} takes {len(model.channels)} channels "
            f"({','.join(model.channels)}), not {len(wanted)} ({','.join(wanted)}); "
            "choose that many with --model-channels"
        )
    return wanted


# -------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    """Validate everything, then explain example by example (see the module docstring)."""
    from igkit.cli.explain import check_options
    from igkit.io.writers import write_csv

    check_options(args)
    job = _prepare(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failures = 0
    for example in job.examples:
        try:
            rows.extend(_explain_example(job, example, args, out))
        except Exception as exc:  # noqa: BLE001 - report, keep the other examples' outputs
            failures += 1
            message = " ".join(str(exc).split())
            print(
                f"igkit: error: {example.source.source}: {type(exc).__name__}: {message}",
                file=sys.stderr,
            )
    write_csv(out / "summary.csv", rows, SUMMARY_FIELDS)
    done = len(job.examples) - failures
    print(f"wrote {len(rows)} explanations of {done} example(s) and summary.csv to {out}")
    if failures:
        print(f"igkit: {failures} example(s) failed; see the errors above", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _label(job: _Job, index: int) -> str:
    return job.labels[index] if job.labels is not None else f"class {index}"


def _explain_example(
    job: _Job, example: _Example, args: argparse.Namespace, out: Path
) -> list[dict[str, Any]]:
    """Predictions, one multi-target IG call for all targets, and the files of one example."""

    model = job.model
    kind = {"softmax": "probability", "sigmoid": "sigmoid", "raw": "score"}.get(job.output, "")
    shown = [k for k in np.argsort(-example.scores, kind="stable")[: max(args.top_k, 1)]]
    listed = ", ".join(f"{_label(job, int(k))} {example.scores[k]:.3f}" for k in shown)
    print(f"{example.name}: {model.name} ({kind}): {listed}")
    if args.multilabel:
        above = ", ".join(_label(job, k) for k in example.predicted) or "none"
        note = " (explaining the top class)" if example.name in job.fallbacks else ""
        print(f"  above {args.threshold:g}: {above}{note}")
    pixels = example.image[..., list(job.picks)]
    x = model.to_model_layout(pixels[None])
    started = time.perf_counter()
    # The completeness lines below say in words whether the tolerance was met.
    result = model.explain(x, [list(example.targets)], args, job.output)
    seconds = time.perf_counter() - started
    baseline_hwc = _first_baseline(model, x, args.baseline, args.seed)
    if not args.no_figures and set(job.channels) >= {"red", "green", "blue", "yellow"}:
        _write_rgby(out / f"{example.name}_rgby.png", job, example)
    rows = []
    for single in result.per_target():
        target = int(single.target[0])
        attributions = model.to_hwc(single.attributions[0]).astype(np.float32)
        stem = f"{example.name}_{target}"
        npz_path = out / f"{stem}.npz"
        png_path = None if args.no_figures else out / f"{stem}.png"
        print(f"  IG of {_label(job, target)} ({target}): {single.completeness_report(0)}")
        _write_npz(
            npz_path, job, example, args, single, attributions, pixels, baseline_hwc, seconds
        )
        if png_path is not None:
            _write_sign_masks(png_path, job, example, single, attributions, baseline_hwc)
        rows.append(
            {
                "example": example.name,
                "source": str(example.source.source),
                "model": model.name,
                "target": target,
                "label": _label(job, target),
                "score": f"{single.score[0]:.6g}",
                "predicted": target in example.predicted,
                "baseline_score": f"{single.baseline_score[0]:.6g}",
                "delta": f"{single.delta[0]:.6g}",
                "relative_error": f"{single.relative_error[0]:.6g}",
                "completeness": "within" if single.converged[0] else "NOT within",
                "steps": int(single.steps[0]),
                "evaluations": int(single.evaluations[0]),
                "method": single.method,
                "baseline": _baseline_text(args.baseline),
                "output": job.output,
                "tol": single.tol,
                "seconds": f"{seconds:.3f}",
                "npz": npz_path.name,
                "png": png_path.name if png_path is not None else "",
            }
        )
    return rows


def _write_npz(
    path: Path,
    job: _Job,
    example: _Example,
    args: argparse.Namespace,
    result: Result,
    attributions: np.ndarray,
    pixels: np.ndarray,
    baseline_hwc: np.ndarray,
    seconds: float,
) -> None:
    import igkit
    from igkit.io.writers import write_npz

    source = example.source
    sources = (
        [str(source.stack)] if source.stack is not None else [str(p) for p in source.files.values()]
    )
    target = int(result.target[0])
    write_npz(
        path,
        {
            "attributions": attributions,
            "image": example.image.astype(np.float32),
            "model_input": pixels.astype(np.float32),
            "baseline_image": baseline_hwc,
            "channels": np.asarray(job.channels, dtype=str),
            "model_channels": np.asarray(job.model_channels, dtype=str),
            "sources": np.asarray(sources, dtype=str),
            "example": example.name,
            "model": job.model.name,
            "model_description": job.model.description,
            **result.numbers(0),
            "target": target,
            "target_label": _label(job, target),
            "completeness": result.completeness_report(0),
            "requested_steps": str(args.steps),
            "method": result.method,
            "baseline": _baseline_text(args.baseline),
            "tol": result.tol,
            "output": job.output,
            "threshold": float(args.threshold),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "scores": example.scores,
            "predicted": np.asarray(example.predicted, dtype=np.int64),
            "labels": np.asarray(
                [_label(job, k) for k in range(example.scores.shape[0])], dtype=str
            ),
            "seconds": seconds,
            "igkit_version": igkit.__version__,
        },
    )


def _write_sign_masks(
    path: Path,
    job: _Job,
    example: _Example,
    result: Result,
    attributions: np.ndarray,
    baseline_hwc: np.ndarray,
) -> None:
    from igkit.io.writers import write_figure_png
    from igkit.viz.figures import sign_mask_figure

    target = int(result.target[0])
    title = (
        f"{example.name}: {_label(job, target)} ({target}), {job.output} "
        f"{result.score[0]:.3f}; IG over {','.join(job.model_channels)}, "
        f"{int(result.steps[0])} steps, relative error {result.relative_error[0]:.2%}"
    )
    write_figure_png(path, sign_mask_figure(example.image, attributions, baseline_hwc, title=title))


def _write_rgby(path: Path, job: _Job, example: _Example) -> None:
    from igkit.io.writers import write_figure_png
    from igkit.viz.figures import rgby_figure

    order = [job.channels.index(c) for c in ("red", "green", "blue", "yellow")]
    write_figure_png(
        path,
        rgby_figure(
            example.image[..., order], value_max=1.0, title=f"{example.name}: the four stains"
        ),
    )


# ------------------------------------------------------------------------------------- demo


def run_demo(args: argparse.Namespace) -> int:
    """``igkit demo --microscopy``: synthetic cells as per-channel PNGs, then explain them.

    One single-label cell per class (the notebook's per-class sweep) and one cell with two
    locations, from the evaluation seed the shipped model was not trained on, are written as
    ``DIR/inputs/cell-NNNN_{red,green,blue,yellow}.png``; then ``igkit explain DIR/inputs
    --model hpa_synthetic --multilabel`` runs on them.
    """
    from igkit.cli import explain
    from igkit.cli._base import Parser
    from igkit.io.channels import DEFAULT_CHANNELS, DEFAULT_PATTERN, save_channel_files
    from igkit.microscopy.synthetic import CLASSES, SEEDS

    out = Path(args.out)
    inputs = out / "inputs"
    parser = Parser(prog="igkit explain")
    explain.configure(parser)
    model = DEMO_MODEL if args.model == explain.DEFAULT_MODEL else args.model
    explain_args = parser.parse_args(
        [
            str(inputs),
            "--model",
            model,
            "--channels",
            ",".join(DEFAULT_CHANNELS),
            "--channel-files",
            DEFAULT_PATTERN,
            "--multilabel",
            "--out",
            str(out),
        ]
    )
    # The demo's own IG and model settings win over explain's defaults.
    for key, value in vars(args).items():
        if key not in ("out", "model", "microscopy", "_run") and hasattr(explain_args, key):
            setattr(explain_args, key, value)
    explain.check_options(explain_args)  # before writing anything

    picked = _demo_cells(SEEDS["evaluation"], len(CLASSES))
    inputs.mkdir(parents=True, exist_ok=True)
    print(f"synthetic cells (seed {SEEDS['evaluation']}, not seen in training):")
    for index, image, labels in picked:
        example_id = f"cell-{index:04d}"
        save_channel_files(inputs, example_id, image, DEFAULT_CHANNELS, DEFAULT_PATTERN)
        truth = ", ".join(CLASSES[k] for k in np.flatnonzero(labels))
        print(f"  {example_id}: green protein in {truth}")
    code = run(explain_args)
    print(f"demo inputs: {inputs} (four PNG files per cell)")
    print(
        f"demo outputs: {out} (ID_T.npz and sign-mask ID_T.png per cell and target, "
        "ID_rgby.png per cell, summary.csv)"
    )
    return code


def _demo_cells(seed: int, classes: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The first single-label cell of each class, then the first two-label cell."""
    from igkit.microscopy.synthetic import make_cell

    found: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}
    pair = None
    index = 0
    while len(found) < classes or pair is None:
        image, labels, _ = make_cell(seed, index)
        ks = np.flatnonzero(labels)
        if ks.size == 1 and int(ks[0]) not in found:
            found[int(ks[0])] = (index, image, labels)
        elif ks.size == 2 and pair is None:
            pair = (index, image, labels)
        index += 1
    return [found[k] for k in range(classes)] + [pair]
