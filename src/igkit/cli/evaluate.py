"""``igkit evaluate SOURCE``: which attribution method explains the model best, on this data.

Every method of ``--methods`` explains every example of SOURCE (an image folder, a CSV /
Parquet manifest, or an ``explain-dataset`` store, whose attributions are reused for ``ig``),
and every metric of ``--metrics`` scores each explanation; the controls ``random`` and
``sobel`` (the image's edges) are added unless ``--no-controls``: a method that does not beat
them explains nothing. Writes ``DIR/metrics.parquet`` and ``DIR/metrics.csv`` (per method and
metric: mean, std, n; then one row per example), ``curves.png`` and ``summary.png``
(:mod:`igkit.evaluation.outputs`); ``igkit report DIR`` makes a page of them. Everything a user
can get wrong is refused before the model is loaded, and ``--out`` is claimed first: a file
igkit did not write there is never replaced.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from igkit.cli import options
from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

__all__ = ["COMMAND", "configure", "run"]

DEFAULT_METHODS = "ig,smoothgrad,grad_cam,xrai"
DEFAULT_METRICS = "deletion,insertion"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit evaluate``."""
    parser.add_argument(
        "source", metavar="SOURCE",
        help="image folder, CSV/Parquet manifest (path[, label, target]) or explain-dataset "
        "store",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--methods", default=None, metavar="M[,M...]",
        help="attribution methods to compare: ig (Integrated Gradients with --method/--steps),"
        " or any name of igkit.attribution_methods() (default: ig, and smoothgrad, grad_cam, "
        "xrai where registered)",
    )
    parser.add_argument(
        "--metrics", default=DEFAULT_METRICS, metavar="K[,K...]",
        help=f"metrics of igkit.metrics.metric_names() that need no masks: deletion, insertion, "
        "pixel_flipping_morf/lerf, road_morf/lerf, infidelity, max_sensitivity, mprt, "
        f"random_logit, completeness (default: {DEFAULT_METRICS})",
    )
    parser.add_argument(
        "--no-controls", action="store_true",
        help="do not add the random and sobel control attributions",
    )
    parser.add_argument(
        "--masks", default=None, metavar="DIR",
        help="ground-truth regions for pointing_game, mask_share and relevance_rank_accuracy: "
        "DIR/NAME_LABEL.png (or .npy, or DIR/NAME.png), non-zero inside",
    )
    parser.add_argument(
        "--limit", type=options.positive_int, default=None, metavar="N",
        help="evaluate the first N examples only",
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process (default); ray: a Ray Data actor pool",
    )
    parser.add_argument(
        "--workers", type=options.positive_int, default=1, metavar="N",
        help="Ray actors, each holding the model (--engine ray; default: 1)",
    )
    options.add_model_arguments(parser)
    options.add_input_arguments(parser, several_targets=False)
    options.add_ig_arguments(parser)
    options.add_channel_arguments(parser)


def _methods(args: argparse.Namespace) -> tuple[str, ...]:
    from igkit.evaluation import CONTROLS, parse_methods
    from igkit.methods import method_names

    text = args.methods
    if text is None:
        known = set(method_names())
        text = ",".join(m for m in DEFAULT_METHODS.split(",") if m == "ig" or m in known)
    try:
        methods = parse_methods(text)
    except ValueError as exc:
        raise UsageError(f"--methods: {exc}") from None
    if not args.no_controls:
        methods += tuple(c for c in CONTROLS if c not in methods)
    return methods


def run(args: argparse.Namespace) -> int:
    """Check everything, claim --out, evaluate, write, print the summary."""
    from igkit.evaluation import (
        EvaluateSettings,
        open_source,
        parse_metrics,
        run_evaluation,
        write_evaluation,
    )
    from igkit.evaluation.outputs import (
        EVALUATE_FILES,
        EVALUATE_RECORD,
        summary_rows,
        summary_table,
    )
    from igkit.io.owned import OwnershipError, claim, record
    from igkit.workflow import InputError

    methods = _methods(args)
    try:
        metrics = parse_metrics(args.metrics, masks=args.masks is not None)
    except ValueError as exc:
        raise UsageError(f"--metrics: {exc}") from None
    explain = options.settings_from_args(args)
    settings = EvaluateSettings(explain=explain, methods=methods, metrics=metrics)
    out = Path(args.out)
    try:
        claim(out, EVALUATE_FILES, EVALUATE_RECORD)
    except OwnershipError as exc:
        raise UsageError(str(exc)) from None
    if args.engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'igkit[ray]'") from None
    try:
        source = open_source(args.source, settings, args.masks)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    for line in source.skipped:
        print(line, file=sys.stderr)
    examples = source.inputs[: args.limit] if args.limit else source.inputs
    source = replace(source, inputs=tuple(examples))
    print(f"evaluating {len(methods)} methods x {len(metrics)} metrics on {len(examples)} "
          f"example{'s' if len(examples) != 1 else ''} ({args.engine})", file=sys.stderr)
    try:
        done = run_evaluation(settings, source, engine=args.engine, workers=args.workers)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    written = write_evaluation(out, done, figures=not args.no_figures)
    record(out, written, EVALUATE_RECORD)
    print(summary_table(summary_rows(done.rows)))
    for method, message in dict.fromkeys(done.notes):
        print(f"igkit: warning: {method}: {message}", file=sys.stderr)
    for path, message in done.failures:
        print(f"igkit: failed: {path}: {message}", file=sys.stderr)
    print(f"wrote {', '.join(written)} to {out}", file=sys.stderr)
    return EXIT_FAILED if done.failures else EXIT_OK


COMMAND = Command(
    name="evaluate",
    help="compare attribution methods on a dataset with faithfulness metrics",
    description=(
        "Explain every example of SOURCE with each method of --methods (plus the random and "
        "sobel controls) and score each explanation with each metric of --metrics: which "
        "attribution method explains the model best, on this data."
    ),
    configure=configure,
    run=run,
)
