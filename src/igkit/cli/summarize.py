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
    from matplotlib.figure import Figure

    from igkit.runner.aggregate import ClassSummary
    from igkit.runner.store import DatasetStore

__all__ = ["COMMAND", "bar_figure", "map_grid", "open_store", "run"]


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


def map_grid(
    titles: Sequence[str], maps: Sequence[np.ndarray], *, diverging: bool = False, title: str = ""
) -> Figure:
    """A row of maps with one colour bar each (``diverging``: symmetric red/blue scale)."""
    from matplotlib.figure import Figure

    count = max(1, len(maps))
    fig = Figure(figsize=(3.2 * count, 3.4))
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, name, values in zip(axes, titles, maps, strict=False):
        if diverging:
            bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
            image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound or 1.0)
        else:
            image = ax.imshow(values, cmap="inferno")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def bar_figure(
    classes: Sequence[str], series: dict[str, np.ndarray], *, ylabel: str, title: str
) -> Figure:
    """Grouped bars: one group per class, one bar per series (e.g. per channel)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.2 * len(classes) + 2), 3.2))
    ax = fig.subplots()
    positions = np.arange(len(classes))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(positions + k * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(positions, list(classes), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    return fig


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
        _require_matplotlib()
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
        _write_figures(out, summaries, channels)
    print(f"{len(failures)} failed example(s); wrote the summary to {out}")
    return 0


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401 - only checking that it is there
    except ImportError:
        raise UsageError(
            "figures need matplotlib: pip install 'igkit[viz]', or --no-figures"
        ) from None


def _write_figures(out: Path, summaries: Sequence[ClassSummary], channels: Sequence[str]) -> None:
    from igkit.io.writers import write_figure_png

    summaries = [s for s in summaries if s.count > s.failed]  # classes with attributions
    if not summaries:
        return
    names = [f"{s.name} (n={s.count - s.failed})" for s in summaries]
    write_figure_png(
        out / "mean_abs_attribution.png",
        map_grid(names, [s.mean_map for s in summaries], title="mean |attribution| per class"),
    )
    shares = np.stack([s.channel_share for s in summaries])
    write_figure_png(
        out / "channel_shares.png",
        bar_figure(
            [s.name for s in summaries],
            {name: shares[:, c] for c, name in enumerate(channels)},
            ylabel="share of |attribution|",
            title="per-channel share of attribution",
        ),
    )


COMMAND = Command(
    name="summarize",
    help="per-class aggregates of an explain-dataset store, with figures",
    description=(
        "Per class (the manifest label, else the explained class): mean |attribution| map, "
        "per-channel share of attribution, completeness statistics and failures. Prints a "
        "table and writes CSVs and figures to STORE/summary/."
    ),
    configure=configure,
    run=run,
)
