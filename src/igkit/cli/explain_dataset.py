"""``igkit explain-dataset``: Integrated Gradients for a whole dataset into a resumable store.

SOURCE is an image folder or a CSV / Parquet manifest (``path``, optional ``label`` and
``target`` columns). Everything a user can get wrong (options, SOURCE, the model, the target,
a store made with other settings) is checked before the first attribution and reported as one
``igkit: error: ...`` line with exit code 2. Then the engine explains every example not yet in
the store: corrupt images become failed rows (exit code 1 at the end), never a crashed run.
Running the same command again after an interruption finishes the remaining examples.

One target per example: ``--target top1`` (default), a class index or a class name, or the
manifest's ``target`` column. The store layout is described in :mod:`igkit.runner.store`.
``--figure`` / ``--no-figures`` are accepted for symmetry with ``igkit explain`` but no
per-image figures are drawn; ``igkit summarize`` draws the dataset's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from igkit.cli import options
from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

if TYPE_CHECKING:
    from igkit.runner.engine import DatasetExplainer
    from igkit.runner.store import Example
    from igkit.workflow.settings import ExplainSettings

__all__ = ["COMMAND", "configure", "run"]


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


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
        type=_non_negative_float,
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
    """Validate, open or create the store, then explain the pending examples."""
    from igkit.runner.engine import DatasetExplainer, SourceError, file_digest, read_source
    from igkit.workflow.inputs import InputError
    from igkit.workflow.outputs import check_out_dir

    spec = args.target
    if spec is not None and spec.kind == "top" and int(spec.value) != 1:
        raise UsageError(
            f"--target {spec.text}: explain-dataset explains one class per example; use "
            "top1, a class index or a class name"
        )
    settings = options.settings_from_args(args)
    try:
        check_out_dir(Path(args.out))
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if args.weights:
        settings = settings.replace(weights=str(Path(args.weights).resolve()))
    if args.engine != "ray" and (args.workers != 1 or args.gpus_per_worker):
        raise UsageError("--workers and --gpus-per-worker need --engine ray")
    _require_packages(args.engine)
    try:
        examples = read_source(args.source)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    digest = file_digest(args.model)
    try:
        explainer = DatasetExplainer(settings, digest, threads=args.threads)
        classes = explainer.workflow.classes()
        explainer.workflow.fixed_targets()
    except InputError as exc:
        raise UsageError(str(exc)) from None
    for example in examples:
        if example.target is not None and not 0 <= example.target < classes:
            raise UsageError(
                f"{args.source}: target {example.target} of {example.path} is out of range, "
                f"the model has classes 0..{classes - 1}"
            )
    return _execute(args, settings, digest, explainer, examples)


def _require_packages(engine: str) -> None:
    missing = []
    for module in ("zarr", "pyarrow", "duckdb") + (("ray",) if engine == "ray" else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        extra = "ray" if missing == ["ray"] else "dataset"
        raise UsageError(
            f"explain-dataset needs {', '.join(missing)}: pip install 'igkit[{extra}]'"
        )


def _execute(
    args: argparse.Namespace,
    settings: ExplainSettings,
    digest: str,
    explainer: DatasetExplainer,
    examples: list[Example],
) -> int:
    """Open or create the store, redo damaged rows, explain what is pending, report."""
    from igkit.runner.local import run_local
    from igkit.runner.store import DatasetStore, StoreError
    from igkit.workflow.progress import Progress

    try:
        store = DatasetStore.create_or_open(
            args.out, settings.fingerprint(digest), examples, explainer.shape
        )
        store.lock()
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    redo = store.verify()
    if redo:
        print(f"igkit: redoing {len(redo)} example(s) whose attributions were incomplete",
              file=sys.stderr)
    done = store.done_ids()
    pending = [e for e in examples if e.id not in done]
    if done:
        print(f"resuming: {len(done)} of {len(examples)} example(s) already in {args.out}",
              file=sys.stderr)
    progress = Progress(len(examples), initial=len(done), enabled=not args.no_progress)
    started = time.perf_counter()
    try:
        if args.engine == "ray":
            import ray.exceptions

            from igkit.runner.ray_engine import run_ray

            try:
                failed = run_ray(
                    settings, store, pending, workers=args.workers,
                    gpus_per_worker=args.gpus_per_worker, commit_every=args.commit_every,
                    threads=args.threads, model_digest=digest, progress=progress,
                )
            except ValueError as exc:  # e.g. more GPUs asked for than the cluster has
                raise UsageError(str(exc)) from None
            except ray.exceptions.RayError as exc:
                # E.g. a worker that cannot import the model: the committed batches stay.
                first = (str(exc).strip().splitlines() or [""])[0]
                print(f"igkit: error: the Ray run failed ({type(exc).__name__}: {first}); "
                      "run the same command again to resume", file=sys.stderr)
                return EXIT_FAILED
        else:
            failed = run_local(
                explainer, store, pending, commit_every=args.commit_every, progress=progress
            )
    finally:
        progress.close()
        store.unlock()
    seconds = time.perf_counter() - started
    total_failed = store.query(
        "select count(*) from results where status = 'failed'"
    ).fetchall()[0][0]
    rate = len(pending) / seconds if seconds > 0 and pending else 0.0
    print(
        f"explained {len(pending) - failed} of {len(pending)} pending example(s) in "
        f"{seconds:.1f} s ({rate:.2f} images/s); {args.out} holds {len(examples)} example(s), "
        f"{total_failed} failed"
    )
    if total_failed:
        print(
            f"igkit: {total_failed} example(s) failed; see the error column "
            f"(igkit summarize {args.out})",
            file=sys.stderr,
        )
    return EXIT_FAILED if total_failed else EXIT_OK


COMMAND = Command(
    name="explain-dataset",
    help="explain every image of a folder or manifest into a resumable Zarr/Parquet store",
    description=(
        "Explain each image of SOURCE (an image folder or a CSV/Parquet manifest with a path "
        "column and optional label and target columns) with Integrated Gradients, writing "
        "attributions to STORE/attributions.zarr and one result row per image to "
        "STORE/results/*.parquet. Run the same command again to resume an interrupted run; a "
        "store made with other settings is refused."
    ),
    configure=configure,
    run=run,
)
