"""Per-class aggregates of a dataset store, and the difference of two stores' aggregates.

A class is the example's manifest ``label`` when it has one, else the explained class's name
(``target_label``); failed examples count under their label, or "(failed)". For each class:

* the mean |attribution| map ``(H, W)``: |attributions| summed over channels, averaged over the
  class's ok examples;
* the per-channel share: each channel's part of the total |attribution| of an example, averaged;
* completeness statistics over the ok rows: mean / median / max |relative error| and the share
  within the run's tolerance;
* the number of failed examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from igkit.runner.store import DatasetStore

__all__ = ["ClassSummary", "compare_rows", "summarize_store"]

FAILED_CLASS = "(failed)"


@dataclass(frozen=True)
class ClassSummary:
    """Aggregates of one class of a store (see the module docstring)."""

    name: str
    count: int
    failed: int
    mean_map: np.ndarray  # (H, W); NaN when no ok examples
    channel_share: np.ndarray  # (C,)
    mean_abs_relative_error: float
    median_abs_relative_error: float
    max_abs_relative_error: float
    within_tol: float


def summarize_store(store: DatasetStore) -> tuple[list[ClassSummary], list[dict[str, object]]]:
    """The per-class summaries (sorted by name) and the failed rows (id, path, label, error)."""
    table = store.results().to_pylist()
    tol = float(store.settings.get("tol", 0.05))
    height, width, channels = store.shape
    groups: dict[str, list[dict[str, Any]]] = {}
    failures: list[dict[str, object]] = []
    for row in table:
        name = row["label"] or row["target_label"] or FAILED_CLASS
        groups.setdefault(name, []).append(row)
        if row["status"] != "ok":
            failures.append(
                {"id": row["id"], "path": row["path"], "label": row["label"] or "",
                 "error": row["error"]}
            )
    summaries = []
    for name in sorted(groups):
        rows = groups[name]
        ok = [r for r in rows if r["status"] == "ok"]
        total = np.zeros((height, width), dtype=np.float64)
        shares = np.zeros(channels, dtype=np.float64)
        for r in ok:
            magnitude = np.abs(store.attributions(r["id"]).astype(np.float64))
            total += magnitude.sum(axis=-1)
            per_channel = magnitude.sum(axis=(0, 1))
            whole = per_channel.sum()
            shares += per_channel / whole if whole > 0 else np.full(channels, 1.0 / channels)
        errors = np.abs(np.asarray([r["relative_error"] for r in ok], dtype=np.float64))
        summaries.append(
            ClassSummary(
                name=name,
                count=len(rows),
                failed=len(rows) - len(ok),
                mean_map=total / len(ok) if ok else np.full((height, width), np.nan),
                channel_share=shares / len(ok) if ok else np.full(channels, np.nan),
                mean_abs_relative_error=float(errors.mean()) if ok else float("nan"),
                median_abs_relative_error=float(np.median(errors)) if ok else float("nan"),
                max_abs_relative_error=float(errors.max()) if ok else float("nan"),
                within_tol=float((errors <= tol).mean()) if ok else float("nan"),
            )
        )
    return summaries, failures


def summary_rows(summaries: Sequence[ClassSummary]) -> list[dict[str, object]]:
    """One CSV row per class."""
    rows = []
    for s in summaries:
        row: dict[str, object] = {"class": s.name, "examples": s.count, "failed": s.failed}
        for c, share in enumerate(s.channel_share):
            row[f"share_c{c}"] = f"{share:.6g}"
        row.update(
            mean_abs_relative_error=f"{s.mean_abs_relative_error:.6g}",
            median_abs_relative_error=f"{s.median_abs_relative_error:.6g}",
            max_abs_relative_error=f"{s.max_abs_relative_error:.6g}",
            within_tol=f"{s.within_tol:.6g}",
        )
        rows.append(row)
    return rows


def _normalized(values: np.ndarray) -> np.ndarray:
    total = np.nansum(values)
    return values / total if total > 0 else values


def compare_rows(
    a: Sequence[ClassSummary], b: Sequence[ClassSummary]
) -> list[tuple[str, ClassSummary | None, ClassSummary | None, dict[str, object]]]:
    """Match classes of two stores; per class the differences B - A.

    Maps are compared after normalising each to sum 1 (so a change of scale alone is no
    difference): ``map_l1`` is the L1 distance of the normalised maps (0 same, 2 disjoint);
    ``share_dC`` is the change of channel C's share.
    """
    by_a = {s.name: s for s in a}
    by_b = {s.name: s for s in b}
    out = []
    for name in sorted(set(by_a) | set(by_b)):
        sa, sb = by_a.get(name), by_b.get(name)
        row: dict[str, object] = {
            "class": name,
            "examples_a": sa.count if sa else 0,
            "examples_b": sb.count if sb else 0,
        }
        if sa is not None and sb is not None and sa.mean_map.shape == sb.mean_map.shape:
            diff = _normalized(sb.mean_map) - _normalized(sa.mean_map)
            row["map_l1"] = f"{float(np.nansum(np.abs(diff))):.6g}"
            for c, (x, y) in enumerate(zip(sa.channel_share, sb.channel_share, strict=False)):
                row[f"share_d{c}"] = f"{float(y - x):+.6g}"
            row["rel_err_a"] = f"{sa.mean_abs_relative_error:.6g}"
            row["rel_err_b"] = f"{sb.mean_abs_relative_error:.6g}"
        out.append((name, sa, sb, row))
    return out
