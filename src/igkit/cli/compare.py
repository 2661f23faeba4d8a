"""``igkit compare STORE_A STORE_B``: where the attributions of two runs differ, per class.

The data-skew use case: explain two splits (or the same split at two times) into two stores,
then compare per class the normalised mean |attribution| maps (B - A) and the channel shares.
Prints one line per class and writes ``compare.csv`` (``map_l1`` and a ``d_share_NAME`` column
per channel, named as ``igkit summarize`` names them), ``map_differences.npz`` (per class the
``(H, W)`` difference B - A of the normalised maps), ``map_differences.png`` and
``channel_share_differences.png`` to ``--out``. See
:func:`igkit.runner.aggregate.compare_rows`. ``map_differences.npz`` holds ``classes`` (the
names) and ``maps`` (their differences, stacked); class names are never used as keys.

Both stores are checked as they are read: damaged or missing examples are left out of every
number and named on stderr, and the exit status is 1 (run the same ``explain-dataset`` command
again to repair a store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError
from igkit.cli.summarize import _print_table, open_store, require_matplotlib, say_damage

__all__ = ["COMMAND", "run"]

DEFAULT_OUT = "igkit-compare"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit compare``."""
    parser.add_argument("store_a", metavar="STORE_A", help="the reference store")
    parser.add_argument("store_b", metavar="STORE_B", help="the store compared with it")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


#: Every file compare may write in its folder, and its record of what it wrote.
COMPARE_FILES = (
    "compare.csv", "map_differences.npz", "map_differences.png", "channel_share_differences.png",
)
COMPARE_RECORD = "igkit-compare.json"


def run(args: argparse.Namespace) -> int:
    """Aggregate both stores, print and write the per-class differences."""
    from igkit.runner.store import StoreDamaged

    try:
        return _compare(args)
    except StoreDamaged as exc:
        print(f"igkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _compare(args: argparse.Namespace) -> int:
    from igkit.io.owned import OwnershipError, claim, record
    from igkit.io.writers import write_csv, write_npz
    from igkit.runner.aggregate import class_maps_npz, compare_rows, normalized_map, summarize

    store_a, store_b = open_store(args.store_a), open_store(args.store_b)
    if store_a.shape != store_b.shape:
        raise UsageError(
            f"{args.store_a} and {args.store_b} hold attributions of different sizes "
            f"({store_a.shape} vs {store_b.shape}); compare runs with the same --input-size"
        )
    out = Path(args.out)
    try:
        claim(out, COMPARE_FILES, COMPARE_RECORD)
    except OwnershipError as exc:
        raise UsageError(str(exc)) from None
    if not args.no_figures:
        require_matplotlib()
    summary_a, summary_b = summarize(store_a), summarize(store_b)
    channels, other_channels = summary_a.channels, summary_b.channels
    if other_channels != channels:
        print(f"note: the stores name their channels differently (A: {', '.join(channels)}; "
              f"B: {', '.join(other_channels)}); the columns use A's names")
    summaries_a, summaries_b = summary_a.classes, summary_b.classes
    compared = compare_rows(summaries_a, summaries_b, channels)
    rows = [row for *_, row in compared]
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    _print_table([{k: row.get(k, "") for k in fields} for row in rows])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "compare.csv", [{k: row.get(k, "") for k in fields} for row in rows], fields)
    both = [
        (name, a, b)
        for name, a, b, _ in compared
        if a is not None and b is not None and a.count > a.failed and b.count > b.failed
    ]
    diffs = [normalized_map(b.mean_map) - normalized_map(a.mean_map) for _, a, b in both]
    write_npz(out / "map_differences.npz",
              class_maps_npz([name for name, *_ in both], diffs, store_a.shape[:2]))
    if not args.no_figures and both:
        from igkit.report.charts import write_compare_figures

        delta = np.stack([b.channel_share - a.channel_share for _, a, b in both])
        write_compare_figures(out, [name for name, *_ in both], diffs, delta, channels)
    only = [name for name, a, b, _ in compared if a is None or b is None]
    if only:
        print(f"classes in only one store: {', '.join(only)}")
    record(out, [name for name in COMPARE_FILES if (out / name).is_file()], COMPARE_RECORD)
    print(f"wrote the comparison to {out}")
    damaged_a = say_damage(args.store_a, summary_a.check)
    damaged_b = say_damage(args.store_b, summary_b.check)
    return EXIT_FAILED if damaged_a or damaged_b else EXIT_OK


COMMAND = Command(
    name="compare",
    help="compare two explain-dataset stores per class (data skew)",
    description=(
        "Per class present in both stores: the difference of the normalised mean |attribution| "
        "maps (map_l1, map_differences.npz) and of the per-channel shares (d_share_red, ...: "
        "B - A), with figures, written to --out. Both stores are checked as they are read: "
        "damaged or missing examples are left out, named on stderr, and the exit status is 1."
    ),
    configure=configure,
    run=run,
)
