"""``igkit explain-dataset``: Integrated Gradients for a whole dataset into a resumable store.

SOURCE is an image folder or a CSV / Parquet manifest (``path``, optional ``label`` and
``target`` columns). Everything a user can get wrong (options, SOURCE, the model, the target,
a store made with other settings) is checked before the first attribution and reported as one
``igkit: error: ...`` line with exit code 2. Then the engine explains every example not yet in
the store: corrupt images become failed rows (exit code 1 at the end), never a crashed run.
Running the same command again after an interruption finishes the remaining examples, and
repairs a damaged store (what ``igkit summarize`` names): temporaries of a killed run are
removed, unreadable or duplicated part files are moved to ``STORE/quarantine/``, and examples
whose row or attribution chunk is missing or damaged are explained again; nothing else is lost.

One target per example: ``--target top1`` (default), a class index or a class name, or the
manifest's ``target`` column. The store layout is described in :mod:`igkit.runner.store`.
``--figure`` / ``--no-figures`` are accepted for symmetry with ``igkit explain`` but no
per-image figures are drawn; ``igkit summarize`` draws the dataset's.
"""

from __future__ import annotations

import argparse
import sys

from igkit.cli import options
from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

__all__ = ["COMMAND", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit explain-dataset``."""
    parser.add_argument(
        "source", metavar="SOURCE", help="image folder, or CSV/Parquet manifest (path[, label, "
        "target])"
    )
    parser.add_argument("--out", required=True, metavar="STORE", help="store folder")
    options.add_model_arguments(parser)
    options.add_input_arguments(parser, several_targets=False)
    options.add_ig_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one process with prefetching (default); ray: Ray Data actor pool",
    )
    parser.add_argument(
        "--workers",
        type=options.positive_int,
        default=1,
        metavar="N",
        help="Ray actors, each holding the model (--engine ray; default: 1)",
    )
    parser.add_argument(
        "--gpus-per-worker",
        type=options.non_negative_float,
        default=0.0,
        metavar="G",
        help="GPUs per Ray actor (--engine ray; default: 0)",
    )
    parser.add_argument(
        "--commit-every",
        type=options.positive_int,
        default=16,
        metavar="N",
        help="examples per committed batch: at most this many are redone after a kill "
        "(default: 16)",
    )
    parser.add_argument(
        "--threads",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="PyTorch threads per process (local) or per Ray worker; 1 is often much faster "
        "for small models on a busy machine (default: the framework's own)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr"
    )


def run(args: argparse.Namespace) -> int:
    """Validate, open or create the store, explain the pending examples, print the counts."""
    from igkit.runner.dataset import DatasetRunError, prepare_dataset
    from igkit.workflow.inputs import InputError

    settings = options.settings_from_args(args)
    try:
        job = prepare_dataset(
            settings, args.source, args.out, engine=args.engine, workers=args.workers,
            gpus_per_worker=args.gpus_per_worker, threads=args.threads,
        )
        done = job.run(
            commit_every=args.commit_every, progress=not args.no_progress,
            note=lambda text: print(text, file=sys.stderr),
        )
    except InputError as exc:
        raise UsageError(str(exc)) from None
    except DatasetRunError as exc:
        print(f"igkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"explained {done.pending - done.failed} of {done.pending} pending example(s) in "
        f"{done.seconds:.1f} s ({done.rate:.2f} images/s); {args.out} holds {done.examples} "
        f"example(s), {done.failed_total} failed"
    )
    if done.failed_total:
        print(
            f"igkit: {done.failed_total} example(s) failed; see the error column "
            f"(igkit summarize {args.out})",
            file=sys.stderr,
        )
    return EXIT_FAILED if done.failed_total else EXIT_OK


COMMAND = Command(
    name="explain-dataset",
    help="explain every image of a folder or manifest into a resumable Zarr/Parquet store",
    description=(
        "Explain each image of SOURCE (an image folder or a CSV/Parquet manifest with a path "
        "column and optional label and target columns) with Integrated Gradients, writing "
        "attributions to STORE/attributions.zarr and one result row per image to "
        "STORE/results/*.parquet. Run the same command again to resume an interrupted run or "
        "repair a damaged store (damaged files go to STORE/quarantine/, damaged examples are "
        "explained again); a store made with other settings is refused."
    ),
    configure=configure,
    run=run,
)
