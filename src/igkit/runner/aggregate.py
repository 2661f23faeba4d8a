"""Per-class aggregates of a dataset store, and the difference of two stores' aggregates.

A class is the example's manifest ``label`` when it has one, else the explained class's name
(``target_label``); failed examples count under their label, or "(failed)". For each class:

* the mean |attribution| map ``(H, W)``: |attributions| summed over channels, averaged over the
  class's ok examples;
* the per-channel share: each channel's part of the total |attribution| of an example, averaged;
* completeness statistics over the ok rows: mean / median / max |relative error| and the share
  within the run's tolerance;
* the number of failed examples.

Channels are named by :func:`channel_names`: the names a store's settings record (``channels``
or ``model_channels``, when a run records them), else a built-in model's declared channels, else
red/green/blue for the three-channel RGB photos every ``explain-dataset`` run decodes, and
``c0, c1, ...`` only when nothing else is known. :func:`setting_value` says what a setting left
as None ("the model's default") stood for, where that is known without loading a framework.

Every number is made from what :meth:`~igkit.runner.store.DatasetStore.check` trusts: an example
whose row or chunk is damaged or missing is left out (and named in :attr:`StoreSummary.check`),
a duplicated row counts once. Per-class maps go to ``.npz`` files under fixed keys
(:func:`class_maps_npz`: ``classes``, the names, and ``maps``, stacked), never under the class
names, which can be any text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from igkit.runner.store import DatasetStore, StoreCheck

__all__ = [
    "BUILTIN_MODEL_DEFAULTS",
    "DAMAGED_FIELDS",
    "MODEL_DEFAULT",
    "ClassSummary",
    "StoreSummary",
    "channel_names",
    "class_maps_npz",
    "compare_rows",
    "damaged_rows",
    "normalized_map",
    "read_class_maps",
    "setting_value",
    "store_channel_names",
    "store_settings",
    "summarize",
    "summarize_store",
    "summary_rows",
]

FAILED_CLASS = "(failed)"

#: What a setting left as None means when its value cannot be known without loading the model.
MODEL_DEFAULT = "model default"

#: The names of an RGB photo's channels, in the order :func:`igkit.io.images.load_image` gives.
RGB_CHANNELS: tuple[str, ...] = ("red", "green", "blue")

#: The defaults of the built-in models (as ``igkit.load_model`` describes them; a test checks
#: that they agree), so a store whose settings say None ("the model's default") can still say
#: what was used without importing a framework.
BUILTIN_MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "efficientnet_lite0": {"preprocess": "center_crop", "output": "softmax"},
    "keras:efficientnet_lite0": {"preprocess": "center_crop", "output": "softmax"},
    "hpa_synthetic": {"preprocess": "resize", "output": "sigmoid", "channels": RGB_CHANNELS},
}


def _builtin_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    spec = settings.get("model")
    if not isinstance(spec, str):
        return {}
    spec = spec.strip()
    if spec.casefold().startswith("keras:"):
        spec = "keras:" + spec[len("keras:"):].casefold()  # the keras: loader ignores case
    return BUILTIN_MODEL_DEFAULTS.get(spec, {})


def setting_value(settings: Mapping[str, Any], key: str) -> tuple[Any, str]:
    """What the run used for ``key``, and where that is known from.

    Returns ``(value, "recorded")`` when the settings hold a value, ``(value, "default")`` when
    they hold None and the value is a built-in model's default, and ``(None, "unknown")`` when
    it was the default of a model that would have to be loaded to tell.
    """
    value = settings.get(key)
    if value is not None:
        return value, "recorded"
    value = _builtin_defaults(settings).get(key)
    if value is not None:
        return value, "default"
    return None, "unknown"


def _names(value: Any, count: int) -> list[str] | None:
    """``value`` as ``count`` distinct non-empty channel names, or None when it is not that."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    names = [str(v).strip() for v in value]
    if not all(names) or len(set(names)) != count:
        return None
    return names


def channel_names(settings: Mapping[str, Any], count: int) -> list[str]:
    """Names for the ``count`` attribution channels of a store made with ``settings``.

    In order of preference: the channel names the settings record (``model_channels``, then
    ``channels``; a list or comma-separated text, used when it names exactly ``count``
    channels), a built-in model's declared channels, red/green/blue for three channels (the
    RGB photos a dataset run decodes), else ``c0, c1, ...``.
    """
    for value in (settings.get("model_channels"), settings.get("channels"),
                  _builtin_defaults(settings).get("channels")):
        names = _names(value, count)
        if names is not None:
            return names
    if count == len(RGB_CHANNELS):
        return list(RGB_CHANNELS)
    return [f"c{c}" for c in range(count)]


def store_settings(
    store: DatasetStore, rows: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The settings a store's run used: ``store.json``'s (what the user passed, which identify
    the store) updated with its first result row's (where a run records what it resolved, e.g.
    the model's default preprocessing; the rows of one run share them).

    ``rows`` are the store's trusted rows when the caller has them (else its tables are read
    through :meth:`~igkit.runner.store.DatasetStore.check`, chunks unread).
    """
    settings = store.settings
    if rows is None:
        rows = store.check(chunks=False).rows
    for text in (row.get("settings") for row in rows):
        try:
            recorded = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(recorded, dict):
            settings.update(recorded)
            break
    return settings


def store_channel_names(
    store: DatasetStore, rows: Sequence[Mapping[str, Any]] | None = None
) -> list[str]:
    """:func:`channel_names` of a store's settings (:func:`store_settings`) and channels."""
    return channel_names(store_settings(store, rows), store.shape[2])


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


@dataclass(frozen=True)
class StoreSummary:
    """A store's per-class aggregates, made in one checked pass over its chunks.

    Attributes:
        classes: Per class (sorted by name), over the trusted rows only.
        failures: The failed rows (id, path, label, error).
        check: What the pass found: the trusted rows and every damaged thing, by name.
        channels: The channel names (:func:`store_channel_names`).
    """

    classes: list[ClassSummary]
    failures: list[dict[str, object]]
    check: StoreCheck
    channels: list[str]


def _class_of(row: Mapping[str, Any]) -> str:
    return str(row["label"] or row["target_label"] or FAILED_CLASS)


def summarize(store: DatasetStore) -> StoreSummary:
    """The per-class summaries of the rows the store's check trusts, the failed rows, and the
    check (damaged and missing examples are left out of every number)."""
    tol = float(store.settings.get("tol", 0.05))
    height, width, channels = store.shape
    totals: dict[str, np.ndarray] = {}
    shares: dict[str, np.ndarray] = {}

    def add(row: dict[str, Any], values: np.ndarray) -> None:
        name = _class_of(row)
        if name not in totals:
            totals[name] = np.zeros((height, width), dtype=np.float64)
            shares[name] = np.zeros(channels, dtype=np.float64)
        magnitude = np.abs(values.astype(np.float64))
        totals[name] += magnitude.sum(axis=-1)
        per_channel = magnitude.sum(axis=(0, 1))
        whole = per_channel.sum()
        shares[name] += per_channel / whole if whole > 0 else np.full(channels, 1.0 / channels)

    check = store.check(on_chunk=add)
    groups: dict[str, list[dict[str, Any]]] = {}
    failures: list[dict[str, object]] = []
    for row in check.rows:
        groups.setdefault(_class_of(row), []).append(row)
        if row["status"] != "ok":
            failures.append(
                {"id": row["id"], "path": row["path"], "label": row["label"] or "",
                 "error": row["error"]}
            )
    summaries = []
    for name in sorted(groups):
        rows = groups[name]
        ok = [r for r in rows if r["status"] == "ok"]
        errors = np.abs(np.asarray([r["relative_error"] for r in ok], dtype=np.float64))
        summaries.append(
            ClassSummary(
                name=name,
                count=len(rows),
                failed=len(rows) - len(ok),
                mean_map=totals[name] / len(ok) if ok else np.full((height, width), np.nan),
                channel_share=shares[name] / len(ok) if ok else np.full(channels, np.nan),
                mean_abs_relative_error=float(errors.mean()) if ok else float("nan"),
                median_abs_relative_error=float(np.median(errors)) if ok else float("nan"),
                max_abs_relative_error=float(errors.max()) if ok else float("nan"),
                within_tol=float((errors <= tol).mean()) if ok else float("nan"),
            )
        )
    return StoreSummary(summaries, failures, check, store_channel_names(store, check.rows))


def summarize_store(store: DatasetStore) -> tuple[list[ClassSummary], list[dict[str, object]]]:
    """The per-class summaries (sorted by name) and the failed rows (id, path, label, error),
    of the rows the store's check trusts (:func:`summarize`, which also says what it left out).
    """
    summary = summarize(store)
    return summary.classes, summary.failures


def class_maps_npz(
    names: Sequence[str], maps: Sequence[np.ndarray], shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Per-class ``(H, W)`` maps as ``.npz`` entries under fixed keys: ``classes`` (the names,
    a text array) and ``maps`` (``(K, H, W)`` float32, in the same order).

    Class names are any text (``file``, ``allow_pickle``, ``a/b``, an empty label), so they are
    never used as keys: as keyword names of ``np.savez`` some collide with its parameters.
    """
    stacked = (np.stack([np.asarray(m, dtype=np.float32) for m in maps]) if len(maps)
               else np.zeros((0, *shape), dtype=np.float32))
    return {"classes": np.asarray([str(n) for n in names], dtype=str), "maps": stacked}


def read_class_maps(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The per-class maps of a file written from :func:`class_maps_npz`, by class name."""
    with np.load(path, allow_pickle=False) as data:
        return {str(name): data["maps"][i] for i, name in enumerate(data["classes"])}


def _column_names(channels: Sequence[str] | None, count: int) -> list[str]:
    if channels is not None and len(channels) == count:
        return list(channels)
    return channel_names({}, count)


def summary_rows(
    summaries: Sequence[ClassSummary], channels: Sequence[str] | None = None
) -> list[dict[str, object]]:
    """One CSV row per class; ``share_NAME`` is the share of the channel named NAME.

    ``channels`` names the channels (:func:`store_channel_names`); without it three channels
    are red/green/blue and others ``c0, c1, ...``.
    """
    rows = []
    for s in summaries:
        row: dict[str, object] = {"class": s.name, "examples": s.count, "failed": s.failed}
        for name, share in zip(_column_names(channels, len(s.channel_share)), s.channel_share,
                               strict=True):
            row[f"share_{name}"] = f"{share:.6g}"
        row.update(
            mean_abs_relative_error=f"{s.mean_abs_relative_error:.6g}",
            median_abs_relative_error=f"{s.median_abs_relative_error:.6g}",
            max_abs_relative_error=f"{s.max_abs_relative_error:.6g}",
            within_tol=f"{s.within_tol:.6g}",
        )
        rows.append(row)
    return rows


def normalized_map(values: np.ndarray) -> np.ndarray:
    """A mean |attribution| map scaled to sum 1 (unchanged when its sum is not positive)."""
    total = np.nansum(values)
    return values / total if total > 0 else values


def compare_rows(
    a: Sequence[ClassSummary], b: Sequence[ClassSummary], channels: Sequence[str] | None = None
) -> list[tuple[str, ClassSummary | None, ClassSummary | None, dict[str, object]]]:
    """Match classes of two stores; per class the differences B - A.

    Maps are compared after normalising each to sum 1 (so a change of scale alone is no
    difference): ``map_l1`` is the L1 distance of the normalised maps (0 same, 2 disjoint);
    ``d_share_NAME`` is the change (B - A) of the share of the channel named NAME
    (``channels``, as in :func:`summary_rows`).
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
            diff = normalized_map(sb.mean_map) - normalized_map(sa.mean_map)
            row["map_l1"] = f"{float(np.nansum(np.abs(diff))):.6g}"
            names = _column_names(channels, len(sa.channel_share))
            for channel, x, y in zip(names, sa.channel_share, sb.channel_share, strict=False):
                row[f"d_share_{channel}"] = f"{float(y - x):+.6g}"
            row["rel_err_a"] = f"{sa.mean_abs_relative_error:.6g}"
            row["rel_err_b"] = f"{sb.mean_abs_relative_error:.6g}"
        out.append((name, sa, sb, row))
    return out


#: Columns of ``damaged.csv``.
DAMAGED_FIELDS = ["file", "example", "path", "problem"]


def damaged_rows(check: StoreCheck) -> list[dict[str, object]]:
    """The rows of ``damaged.csv``: one per damaged thing a store's check found."""
    return [{"file": d.file, "example": "" if d.example is None else d.example,
             "path": d.path or "", "problem": d.problem} for d in check.damage]
