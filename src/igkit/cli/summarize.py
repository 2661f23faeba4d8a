"""``igkit summarize STORE``: per-class aggregates of a dataset store, as a table and figures.

Prints one line per class (examples, failures, channel shares, completeness) and writes to
``STORE/summary/`` (or ``--out``): ``classes.csv`` (a ``share_NAME`` column per channel, named
by :func:`igkit.runner.aggregate.store_channel_names`: red/green/blue for RGB photos),
``failures.csv``, ``mean_maps.npz`` (one ``(H, W)`` array per class),
``mean_abs_attribution.png`` (the per-class mean |attribution| maps) and ``channel_shares.png``.
See :mod:`igkit.runner.aggregate` for the definitions.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.cli._base import Command, UsageError

if TYPE_CHECKING:
    from igkit.runner.store import DatasetStore

__all__ = ["COMMAND", "open_store", "require_matplotlib", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit summarize``."""
    parser.add_argument("store", metavar="STORE", help="a store written by explain-dataset")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: STORE/summary)"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


def open_store(path: str) -> DatasetStore:
    """Open a store for reading; a missing package or a non-store is a UsageError."""
    try:
        from igkit.runner.store import DatasetStore, StoreError
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
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        print("(no results)")
        return
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def run(args: argparse.Namespace) -> int:
    """Aggregate the store, print the table, write CSVs and figures."""
    from igkit.io.writers import write_csv, write_npz
    from igkit.runner.aggregate import store_channel_names, summarize_store, summary_rows

    store = open_store(args.store)
    out = Path(args.out) if args.out else Path(args.store) / "summary"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if not args.no_figures:
        require_matplotlib()
    summaries, failures = summarize_store(store)
    channels = store_channel_names(store)
    rows = summary_rows(summaries, channels)
    out.mkdir(parents=True, exist_ok=True)
    _print_table(rows)
    if rows:
        write_csv(out / "classes.csv", rows, list(rows[0]))
    write_csv(out / "failures.csv", failures, ["id", "path", "label", "error"])
    write_npz(out / "mean_maps.npz", {s.name: s.mean_map.astype(np.float32) for s in summaries})
    if not args.no_figures and summaries:
        from igkit.report.charts import write_summary_figures

        write_summary_figures(out, summaries, channels)
    print(f"{len(failures)} failed example(s); wrote the summary to {out}")
    return 0


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
