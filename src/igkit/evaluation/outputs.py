"""What ``igkit evaluate`` writes: the metrics table, the curves and the summary figure.

Files in ``--out`` (claimed before any work and recorded in ``igkit-evaluate.json``, so a later
run replaces only its own files and never one the user put there, :mod:`igkit.io.owned`):

* ``metrics.parquet`` and ``metrics.csv``: one row per (method, metric) with ``level =
  "summary"`` (``mean``, ``std``, ``n`` over the examples where the metric is defined, and
  ``higher_is_better``), then one row per (example, method, metric) with ``level =
  "example"`` (``example``, ``path``, ``target``, the value in ``mean``, ``n = 1``);
* ``curves.png``: per curve metric (deletion, insertion, pixel flipping), each method's mean
  curve over the examples;
* ``summary.png``: methods x metrics, each cell the mean, coloured by its rank among the
  methods for that metric (best dark);
* ``failures.csv``: methods or metrics that could not run on an example, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from igkit.evaluation.job import EvaluatedBatch

__all__ = [
    "EVALUATE_FILES",
    "EVALUATE_RECORD",
    "METRIC_COLUMNS",
    "summary_rows",
    "summary_table",
    "table_rows",
    "write_evaluation",
]

EVALUATE_FILES = ("metrics.parquet", "metrics.csv", "curves.png", "summary.png", "failures.csv")
EVALUATE_RECORD = "igkit-evaluate.json"
METRIC_COLUMNS = ("level", "method", "metric", "mean", "std", "n", "higher_is_better",
                  "example", "path", "target")


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, standard deviation and count per (method, metric), in the order first seen."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["metric"]), []).append(row)
    out = []
    for (method, metric), members in groups.items():
        values = np.asarray([r["value"] for r in members], dtype=np.float64)
        values = values[np.isfinite(values)]
        out.append({
            "level": "summary", "method": method, "metric": metric,
            "mean": float(values.mean()) if values.size else math.nan,
            "std": float(values.std()) if values.size else math.nan,
            "n": int(values.size), "higher_is_better": bool(members[0]["higher_is_better"]),
            "example": None, "path": None, "target": None,
        })
    return out


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows as text: one line per method, ``mean ±std`` per metric."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    width = max([len("method"), *map(len, methods)])
    lines = [f"{'method':<{width}}  " + "  ".join(f"{m:>16}" for m in metrics)]
    for method in methods:
        parts = []
        for metric in metrics:
            r = cell.get((method, metric))
            parts.append(f"{'-':>16}" if r is None else f"{r['mean']:>9.4g} ±{r['std']:<6.2g}")
        lines.append(f"{method:<{width}}  {'  '.join(parts)}")
    return "\n".join(lines)


def table_rows(batch: EvaluatedBatch) -> list[dict[str, Any]]:
    """The summary rows, then the per-example rows, with the columns of ``METRIC_COLUMNS``."""
    per_example = [
        {"level": "example", "method": r["method"], "metric": r["metric"],
         "mean": r["value"], "std": math.nan, "n": 1,
         "higher_is_better": r["higher_is_better"], "example": r["example"],
         "path": r["path"], "target": r["target"]}
        for r in sorted(batch.rows, key=lambda r: (r["example"], r["method"], r["metric"]))
    ]
    return summary_rows(batch.rows) + per_example


def write_evaluation(out: Path, batch: EvaluatedBatch, *, figures: bool = True) -> list[str]:
    """Write the tables (and figures) of ``batch`` into ``out``; return the names written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from igkit.io.writers import atomic_open, write_csv, write_figure_png

    rows = table_rows(batch)
    written = []
    columns = {c: [r[c] for r in rows] for c in METRIC_COLUMNS}
    table = pa.table({
        "level": pa.array(columns["level"], pa.string()),
        "method": pa.array(columns["method"], pa.string()),
        "metric": pa.array(columns["metric"], pa.string()),
        "mean": pa.array(columns["mean"], pa.float64()),
        "std": pa.array(columns["std"], pa.float64()),
        "n": pa.array(columns["n"], pa.int64()),
        "higher_is_better": pa.array(columns["higher_is_better"], pa.bool_()),
        "example": pa.array(columns["example"], pa.int64()),
        "path": pa.array(columns["path"], pa.string()),
        "target": pa.array(columns["target"], pa.int64()),
    })
    with atomic_open(out / "metrics.parquet") as handle:
        pq.write_table(table, handle)
    write_csv(out / "metrics.csv", rows, list(METRIC_COLUMNS))
    written += ["metrics.parquet", "metrics.csv"]
    if batch.failures:
        write_csv(out / "failures.csv", [{"path": p, "error": m} for p, m in batch.failures],
                  ["path", "error"])
        written.append("failures.csv")
    if figures:
        if batch.curves:
            write_figure_png(out / "curves.png", curves_figure(batch))
            written.append("curves.png")
        write_figure_png(out / "summary.png", summary_figure(summary_rows(batch.rows)))
        written.append("summary.png")
    return written


def curves_figure(batch: EvaluatedBatch) -> Any:
    """One panel per curve metric: each method's mean curve."""
    from matplotlib.figure import Figure

    metrics = sorted({metric for _, metric in batch.curves})
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for (method, m), (fractions, total, count) in sorted(batch.curves.items()):
            if m == metric:
                ax.plot(fractions, total / max(count, 1), label=method)
        ax.set_title(metric)
        ax.set_xlabel("fraction of features changed")
        ax.set_ylabel("mean score")
        ax.legend(fontsize="small")
    return fig


def summary_figure(summary: Sequence[dict[str, Any]]) -> Any:
    """Methods x metrics: the mean in each cell, coloured by rank among methods (best dark)."""
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(r["method"] for r in summary))
    metrics = list(dict.fromkeys(r["metric"] for r in summary))
    means = np.full((len(methods), len(metrics)), np.nan)
    ranks = np.full_like(means, np.nan)
    better = {}
    for r in summary:
        means[methods.index(r["method"]), metrics.index(r["metric"])] = r["mean"]
        better[r["metric"]] = r["higher_is_better"]
    for j, metric in enumerate(metrics):
        col = means[:, j]
        ok = np.isfinite(col)
        order = np.argsort(-col[ok] if better[metric] else col[ok], kind="stable")
        rank = np.empty(order.size)
        rank[order] = np.arange(order.size)
        ranks[np.flatnonzero(ok), j] = rank / max(order.size - 1, 1)
    fig = Figure(figsize=(1.6 + 1.3 * len(metrics), 0.9 + 0.45 * len(methods)),
                 layout="constrained")
    ax = fig.subplots()
    ax.imshow(1.0 - ranks, cmap="Greens", vmin=0.0, vmax=1.4, aspect="auto")
    for i in range(len(methods)):
        for j in range(len(metrics)):
            text = "n/a" if not np.isfinite(means[i, j]) else f"{means[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", fontsize="small")
    ax.set_xticks(range(len(metrics)),
                  [f"{m} ({'higher' if better[m] else 'lower'} better)" for m in metrics],
                  rotation=20, ha="right", fontsize="small")
    ax.set_yticks(range(len(methods)), methods)
    ax.set_title("mean per method and metric (dark: best)")
    return fig
