"""``igkit explain``: predictions, Integrated Gradients, figures and numbers for image files.

Wiring over :mod:`igkit.workflow`: the arguments become an
:class:`~igkit.workflow.ExplainSettings`; photos (or, with any multi-channel option,
per-channel microscopy examples) become inputs; the :class:`~igkit.workflow.Explainer` validates
everything before the first attribution (a mistake prints one ``igkit: error: ...`` line and
writes nothing), then each input is explained and written by an
:class:`~igkit.workflow.OutputFolder`, atomically, so an input that fails leaves the others'
files intact. What the files hold is documented in :mod:`igkit.workflow.outputs`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from igkit.cli import options
from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

__all__ = ["COMMAND", "DEFAULT_OUT", "run", "run_settings"]

DEFAULT_OUT = "igkit-out"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit explain``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    options.add_model_arguments(parser)
    options.add_input_arguments(parser, several_targets=True)
    options.add_ig_arguments(parser)
    options.add_augment_argument(parser)
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder (default: {DEFAULT_OUT})",
    )
    options.add_replace_argument(parser)
    options.add_channel_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``igkit explain``: validate everything, then explain input by input."""
    settings = options.settings_from_args(args)
    return run_settings(settings, args.images, Path(args.out), replace=args.replace)


def run_settings(settings: Any, paths: list[str], out: Path, *, replace: bool = False) -> int:
    """Explain ``paths`` with ``settings`` into ``out``, printing as the command does.

    Used by ``igkit explain`` and ``igkit demo``.
    """
    from igkit.workflow.outputs import OutputError

    try:
        return _run(settings, paths, out, replace)
    except OutputError as exc:
        raise UsageError(exc.strerror or str(exc)) from None


def _run(settings: Any, paths: list[str], out: Path, replace: bool) -> int:
    from igkit.workflow import Explainer, InputError, OutputFolder, channel_inputs, photo_inputs
    from igkit.workflow.outputs import OutputError
    from igkit.workflow.progress import Progress

    try:
        if settings.multichannel:
            inputs = channel_inputs(paths, settings.channels, settings.channel_files)
        else:
            inputs = photo_inputs(paths)
        explainer = Explainer(settings)
        folder = OutputFolder(out, explainer, replace=replace)
        folder.check()
        predictions = explainer.prepare(inputs)
        folder.plan(predictions)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    folder.begin()
    rows: list[dict[str, Any]] = []
    failures = 0
    with Progress(len(predictions), quiet_single=True) as progress:
        for prediction in predictions:
            try:
                rows.extend(explain_one(explainer, folder, prediction, progress.say))
            except OutputError:
                raise
            except Exception as exc:  # noqa: BLE001 - report, keep the other inputs' outputs
                failures += 1
                message = " ".join(str(exc).split())
                progress.error(
                    f"igkit: error: {prediction.input.where}: {type(exc).__name__}: {message}"
                )
            progress.update(1)
    finished = True
    try:
        folder.finish(rows, [p.input.name for p in predictions])
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the summary is written; report the figure
        finished = False
        print(f"igkit: error: Riemann figure: {type(exc).__name__}: {exc}", file=sys.stderr)
    kind = "example" if settings.multichannel else "image"
    done = len(predictions) - failures
    print(f"wrote {len(rows)} explanations of {done} {kind}(s) and summary.csv to {out}")
    if failures:
        print(f"igkit: {failures} {kind}(s) failed; see the errors above", file=sys.stderr)
    return EXIT_FAILED if failures or not finished else EXIT_OK


def explain_one(explainer: Any, folder: Any, prediction: Any, say: Any) -> list[dict[str, Any]]:
    """Print one input's predictions, explain it, print each check, write its files."""
    item = prediction.input
    if explainer.settings.multichannel:
        for line in explainer.describe_labels(prediction):
            say(line)
        variants = explainer.variants(prediction)
    else:
        for line in explainer.describe_predictions(item.where, prediction.scores):
            say(line)
        variants = explainer.variants(prediction)
        for variant in variants[1:]:
            for line in explainer.describe_predictions(
                f"{item.where} ({variant.name})", variant.scores
            ):
                say(line)
    explanation = explainer.explain(prediction, variants, trace=folder.needs_trace)
    for te in explanation.targets:
        say(f"  {te.describe()}")
    return folder.write(explanation)


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
