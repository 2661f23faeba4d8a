"""The figures of a store's aggregates: ``igkit summarize``, ``igkit compare`` and the report's
compare page draw them alike. Class and channel names are drawn verbatim (a ``$`` in them is
escaped by :func:`igkit.viz._draw.literal`, not read as mathtext).

matplotlib is imported by each function that draws, never at import, so the command line can
check for it (:func:`require_matplotlib`) before any work and ``--no-figures`` runs without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from igkit.runner.aggregate import ClassSummary

__all__ = [
    "bar_figure",
    "map_grid",
    "require_matplotlib",
    "write_compare_figures",
    "write_summary_figures",
]


def require_matplotlib() -> None:
    """Raise ImportError, with what to install, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401 - only checking that it is there
    except ImportError:
        raise ImportError(
            "figures need matplotlib: pip install 'igkit[viz]', or --no-figures"
        ) from None


def map_grid(
    titles: Sequence[str], maps: Sequence[np.ndarray], *, diverging: bool = False, title: str = ""
) -> Figure:
    """A row of maps with one colour bar each (``diverging``: symmetric red/blue scale)."""
    from matplotlib.figure import Figure

    from igkit.viz._draw import literal

    count = max(1, len(maps))
    fig = Figure(figsize=(3.2 * count, 3.4))
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, name, values in zip(axes, titles, maps, strict=False):
        if diverging:
            bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
            image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound or 1.0)
        else:
            image = ax.imshow(values, cmap="inferno")
        ax.set_title(literal(name), fontsize=9)
        ax.axis("off")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(literal(title), fontsize=10)
    return fig


def bar_figure(
    classes: Sequence[str], series: dict[str, np.ndarray], *, ylabel: str, title: str
) -> Figure:
    """Grouped bars: one group per class, one bar per series (e.g. per channel)."""
    from matplotlib.figure import Figure

    from igkit.viz._draw import literal

    fig = Figure(figsize=(max(4.0, 1.2 * len(classes) + 2), 3.2))
    ax = fig.subplots()
    positions = np.arange(len(classes))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        ax.bar(positions + k * width - 0.4 + width / 2, values, width, label=literal(name))
    ax.set_xticks(positions, [literal(c) for c in classes], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(literal(ylabel))
    ax.set_title(literal(title), fontsize=10)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    return fig


def write_summary_figures(
    out: str | os.PathLike[str], summaries: Sequence[ClassSummary], channels: Sequence[str]
) -> None:
    """``mean_abs_attribution.png`` and ``channel_shares.png`` of the classes with results."""
    from igkit.io.writers import write_figure_png

    out = Path(out)
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


def write_compare_figures(
    out: str | os.PathLike[str],
    classes: Sequence[str],
    map_differences: Sequence[np.ndarray],
    share_differences: np.ndarray,
    channels: Sequence[str],
) -> None:
    """``map_differences.png`` (per class B - A of the normalised maps) and
    ``channel_share_differences.png`` (per class and channel B - A of the shares)."""
    from igkit.io.writers import write_figure_png

    out = Path(out)
    write_figure_png(
        out / "map_differences.png",
        map_grid(list(classes), list(map_differences), diverging=True,
                 title="normalised mean |attribution|: B - A (red: more in B)"),
    )
    write_figure_png(
        out / "channel_share_differences.png",
        bar_figure(
            list(classes),
            {name: share_differences[:, c] for c, name in enumerate(channels)},
            ylabel="share in B - share in A",
            title="change of per-channel share of attribution",
        ),
    )
