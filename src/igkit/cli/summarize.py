"""``igkit summarize STORE``: per-class aggregates of a dataset store, as a table and figures.

Prints one line per class (examples, failures, channel shares, completeness) and writes to
``STORE/summary/`` (or ``--out``): ``classes.csv`` (a ``share_NAME`` column per channel, named
by :func:`igkit.runner.aggregate.store_channel_names`: red/green/blue for RGB photos),
``failures.csv``, ``damaged.csv``, ``mean_maps.npz`` (``classes``, the class names, and
``maps``, their ``(H, W)`` maps stacked: :func:`igkit.runner.aggregate.read_class_maps` reads it
by name), ``mean_abs_attribution.png`` (the per-class mean |attribution| maps) and
``channel_shares.png``. See :mod:`igkit.runner.aggregate` for the definitions.

The store is checked as it is read (:meth:`igkit.runner.store.DatasetStore.check`): a damaged
or missing example is left out of every number, named on stderr and in ``damaged.csv``, and the
exit status is 1, with how to repair it (run the same ``explain-dataset`` command again).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

if TYPE_CHECKING:
    from igkit.runner.store import DatasetStore, StoreCheck

__all__ = ["COMMAND", "open_store", "require_matplotlib", "run", "say_damage"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit summarize``."""
    parser.add_argument("store", metavar="STORE", help="a store written by explain-dataset")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: STORE/summary)"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


def open_store(path: str) -> DatasetStore:
    """Open a store for reading; a missing package or a non-store is a UsageError.

    Raises:
        igkit.runner.store.StoreDamaged: If its store.json is damaged (the caller says so and
            exits with status 1).
    """
    try:
        from igkit.runner.store import DatasetStore, StoreDamaged, StoreError
    except ImportError:  # pragma: no cover - the store module imports nothing optional
        raise UsageError("pip install 'igkit[dataset]'") from None
    for module in ("zarr", "pyarrow"):
        try:
            __import__(module)
        except ImportError:
            raise UsageError(
                f"reading a store needs {module}: pip install 'igkit[dataset]'"
            ) from None
    try:
        return DatasetStore.open(path)
    except StoreDamaged:
        raise  # a damaged store.json: exit status 1 with how to repair (see run)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def say_damage(root: str, check: StoreCheck) -> bool:
    """Print a check's damage on stderr (one line per damaged thing, then how to repair);
    return True when the store is damaged."""
    for line in check.messages(root):
        print(line, file=sys.stderr)
    return not check.ok


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("(no results)")
        return
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


#: Every file summarize may write in its folder, and its record of what it wrote.
SUMMARY_FILES = (
    "classes.csv", "failures.csv", "damaged.csv", "mean_maps.npz", "mean_abs_attribution.png",
    "channel_shares.png",
)
SUMMARY_RECORD = "igkit-summary.json"


def run(args: argparse.Namespace) -> int:
    """Aggregate the store, print the table, write CSVs and figures."""
    from igkit.runner.store import StoreDamaged

    try:
        return _summarize(args)
    except StoreDamaged as exc:
        print(f"igkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _summarize(args: argparse.Namespace) -> int:
    from igkit.io.owned import OwnershipError, claim, record
    from igkit.io.writers import write_csv, write_npz
    from igkit.runner.aggregate import (
        DAMAGED_FIELDS,
        class_maps_npz,
        damaged_rows,
        summarize,
        summary_rows,
    )

    store = open_store(args.store)
    out = Path(args.out) if args.out else Path(args.store) / "summary"
    try:
        claim(out, SUMMARY_FILES, SUMMARY_RECORD)
    except OwnershipError as exc:
        raise UsageError(str(exc)) from None
    if not args.no_figures:
        require_matplotlib()
    summary = summarize(store)
    summaries, failures, channels = summary.classes, summary.failures, summary.channels
    rows = summary_rows(summaries, channels)
    out.mkdir(parents=True, exist_ok=True)
    _print_table(rows)
    if rows:
        write_csv(out / "classes.csv", rows, list(rows[0]))
    else:
        (out / "classes.csv").unlink(missing_ok=True)  # not an older run's classes
    write_csv(out / "failures.csv", failures, ["id", "path", "label", "error"])
    write_csv(out / "damaged.csv", damaged_rows(summary.check), DAMAGED_FIELDS)
    write_npz(out / "mean_maps.npz", class_maps_npz(
        [s.name for s in summaries], [s.mean_map for s in summaries], store.shape[:2]))
    if not args.no_figures and summaries:
        from igkit.report.charts import write_summary_figures

        write_summary_figures(out, summaries, channels)
    elif not summaries:  # nothing to draw: no older run's figures either
        for name in ("mean_abs_attribution.png", "channel_shares.png"):
            (out / name).unlink(missing_ok=True)
    record(out, [name for name in SUMMARY_FILES if (out / name).is_file()], SUMMARY_RECORD)
    print(f"{len(failures)} failed example(s); wrote the summary to {out}")
    damaged = say_damage(args.store, summary.check)
    return EXIT_FAILED if damaged else EXIT_OK


def require_matplotlib() -> None:
    """A UsageError (before any work) when figures are asked for and matplotlib is missing."""
    from igkit.report.charts import require_matplotlib as check

    try:
        check()
    except ImportError as exc:
        raise UsageError(str(exc)) from None


COMMAND = Command(
    name="summarize",
    help="per-class aggregates of an explain-dataset store, with figures",
    description=(
        "Per class (the manifest label, else the explained class): mean |attribution| map, "
        "per-channel share of attribution, completeness statistics and failures. Prints a "
        "table and writes CSVs and figures to STORE/summary/. Channels are named as the store "
        "records them, red/green/blue for photos (columns share_red, share_green, share_blue)."
    ),
    configure=configure,
    run=run,
)
