"""Build a static HTML report from an ``igkit explain`` folder or an ``explain-dataset`` store.

Everything the pages need lies inside the report folder: figures under ``img/``, npz files under
``data/``, one ``item_N.html`` per image and target, one ``class_N.html`` per class and
``index.html``; with a second store, ``compare.html`` (per class, B - A of the normalised mean
|attribution| maps and channel shares, computed by :mod:`igkit.runner.aggregate` and drawn with
the figures of ``igkit compare``) and a gallery of the first store's items. File names inside
the report never come from data, so links are always plain relative paths; every string from
data is escaped with :func:`html.escape` here, and the index script only ever sets
``textContent``.

A store keeps no figures, so its gallery draws them: each example's image is read again from the
path in its row and prepared as the run prepared it (:func:`igkit.io.images.load_image`, then
:func:`igkit.io.images.preprocess` at the store's input size with the run's preprocessing), and
the overlay is the one of ``igkit explain``'s panel (:func:`igkit.viz.overlay` of the image and
:func:`igkit.viz.attribution_mask`, inferno, the image at alpha 0.4). When the image file is gone
or cannot be read, the gallery shows the attribution mask and the page says why. Settings a run
left as None (the model's default) are shown as what the built-in models use, else as "model
default" (:func:`igkit.runner.aggregate.setting_value`).
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np

from igkit.report.assets import CSS, INDEX_JS

__all__ = ["ReportItem", "build_report", "embed_json", "load_explain_folder"]

_SCALAR_ORDER = ("score", "baseline_score", "delta", "relative_error", "tol", "converged")


@dataclass
class ReportItem:
    """One image and target of the report.

    Attributes:
        name: The display name (file stem or image path's name).
        target_label: The explained class.
        label: The true class, or None when unknown.
        score: F(x), or None for a failed example.
        relative_error: The completeness check's relative error, or None.
        status: ``"converged"``, ``"not converged"`` or ``"failed"``.
        figures: Figure files to copy (the first is the thumbnail).
        npz: An npz file to copy, or None.
        fields: Every number and setting to show on the detail page, in order.
        top_k: ``(label, index, score)`` predictions.
        completeness: The completeness check in words.
        attributions: Attributions to render a thumbnail from when there is no figure.
        load_attributions: Reads the attributions when they are needed (a store's items, so a
            large store is not held in memory at once).
        image_path: The image file to draw the overlay on (a store's items), or None.
        preprocess: How the run turned that image into a model input ("pad", "resize",
            "center_crop") at the attributions' size, or None when the store does not say.
        note: What the page should say about the figures (e.g. why there is no overlay).
    """

    name: str
    target_label: str
    label: str | None
    score: float | None
    relative_error: float | None
    status: str
    figures: list[Path] = field(default_factory=list)
    npz: Path | None = None
    fields: dict[str, str] = field(default_factory=dict)
    top_k: list[tuple[str, int, float]] = field(default_factory=list)
    completeness: str = ""
    attributions: np.ndarray | None = None
    load_attributions: Callable[[], np.ndarray] | None = None
    image_path: str | None = None
    preprocess: str | None = None
    note: str = ""


def embed_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return f"{item:.6g}" if isinstance(item, float) else str(item)
    return ", ".join(str(v) for v in array.tolist())


def load_explain_folder(folder: Path) -> list[ReportItem]:
    """The items of an ``igkit explain`` output folder (one per ``NAME.npz``)."""
    items = []
    npzs = sorted(folder.glob("*.npz"))
    stems = {p.stem for p in npzs}
    pngs: dict[str, list[Path]] = {}
    for png in sorted(folder.glob("*.png")):
        # Each figure belongs to the longest stem it starts with: NAME.png, NAME.STYLE.png.
        base = png.name[: -len(".png")]
        owners = [base[:k] for k in range(len(base), 0, -1)
                  if (k == len(base) or base[k] == ".") and base[:k] in stems]
        if owners:
            pngs.setdefault(owners[0], []).append(png)
    for path in npzs:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        stem = path.stem
        # The panel (NAME.png) first: it is the thumbnail.
        figures = sorted(pngs.get(stem, []), key=lambda f: (f.name != f"{stem}.png", f.name))
        converged = bool(arrays["converged"]) if "converged" in arrays else False
        fields = {
            key: _text(arrays[key])
            for key in (*_SCALAR_ORDER, *sorted(arrays))
            if key in arrays and arrays[key].ndim <= 1 and not key.startswith("top_k")
        }
        top_k = []
        if "top_k_labels" in arrays:
            top_k = [
                (str(lab), int(idx), float(sc))
                for lab, idx, sc in zip(
                    arrays["top_k_labels"].tolist(),
                    arrays["top_k_indices"].tolist(),
                    arrays["top_k_scores"].tolist(),
                    strict=False,
                )
            ]
        items.append(
            ReportItem(
                name=stem,
                target_label=str(arrays.get("target_label", "")),
                label=None,
                score=_finite(arrays.get("score")),
                relative_error=_finite(arrays.get("relative_error")),
                status="converged" if converged else "not converged",
                figures=figures,
                npz=path,
                fields=fields,
                top_k=top_k,
                completeness=str(arrays.get("completeness", "")),
                attributions=None if figures else arrays.get("attributions"),
            )
        )
    return items


def load_store(root: Path) -> tuple[list[ReportItem], list[dict[str, Any]], Any]:
    """The items of a dataset store, its per-class summaries and the store itself."""
    from igkit.runner.aggregate import setting_value, store_channel_names, summarize_store
    from igkit.runner.store import DatasetStore

    store = DatasetStore.open(root)
    tol = float(store.settings.get("tol", 0.05))
    items = []
    for row in store.results().to_pylist():
        ok = row["status"] == "ok"
        fields = {k: _text(row[k]) for k in (
            "id", "path", "label", "target", "target_label", "score", "baseline_score", "delta",
            "relative_error", "converged", "steps", "evaluations", "seconds", "status", "error",
        ) if row.get(k) is not None}
        fields["tol"] = f"{tol:.6g}"
        settings = _row_settings(row["settings"], store.settings)
        fields.update(_settings_fields(settings, store.shape))
        mode, _ = setting_value(settings, "preprocess")
        rel = _finite(row["relative_error"]) if ok else None
        if ok:
            words = (
                f"|F(x) - F(x') - sum(attributions)| / |F(x) - F(x')| = {abs(rel or 0):.3g}, "
                f"{'within' if row['converged'] else 'above'} the tolerance {tol:g}."
            )
        else:
            words = f"failed: {row['error'] or ''}"
        items.append(
            ReportItem(
                name=os.path.basename(row["path"] or f"example {row['id']}"),
                target_label=str(row["target_label"] or ""),
                label=row["label"],
                score=_finite(row["score"]) if ok else None,
                relative_error=rel,
                status=("converged" if row["converged"] else "not converged") if ok else "failed",
                fields=fields,
                completeness=words,
                load_attributions=_reader(store, row["id"]) if ok else None,
                image_path=row["path"] if ok else None,
                preprocess=mode if isinstance(mode, str) else None,
            )
        )
    summaries, _ = summarize_store(store)
    names = store_channel_names(store)
    classes = [
        {"name": s.name, "count": s.count, "failed": s.failed, "map": s.mean_map,
         "shares": s.channel_share, "channels": names, "mean_err": s.mean_abs_relative_error,
         "within_tol": s.within_tol}
        for s in summaries
    ]
    return items, classes, store


def _reader(store: Any, example_id: int) -> Callable[[], np.ndarray]:
    return lambda: store.attributions(example_id)


def _row_settings(text: str | None, store_settings: Mapping[str, Any]) -> dict[str, Any]:
    """A row's settings JSON over the store's settings (the same for rows of one run)."""
    settings = dict(store_settings)
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        settings.update(parsed)
    return settings


def _value_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if value != "" else "n/a"


def _settings_fields(settings: Mapping[str, Any], shape: tuple[int, int, int]) -> dict[str, str]:
    """The detail page's ``setting: KEY`` rows: what the run used, never "None".

    A value the run recorded is shown as recorded; None (the model's default) becomes the
    built-in model's default marked "(model default)", the store's own size for the input size,
    or "model default" when only loading the model could tell.
    """
    from igkit.runner.aggregate import MODEL_DEFAULT, channel_names, setting_value

    fields = {}
    for key in sorted(settings):
        value, source = setting_value(settings, key)
        if key == "input_size" and source == "unknown":
            value, source = list(shape[:2]), "default"  # the attributions have the input's size
        if source == "unknown":
            text = MODEL_DEFAULT
        elif source == "default":
            text = f"{_value_text(value)} ({MODEL_DEFAULT})"
        else:
            text = _value_text(value)
        fields[f"setting: {key}"] = text
    fields["channels"] = ", ".join(channel_names(settings, shape[2]))
    return fields


def _write_map_png(values: np.ndarray, path: Path, size: int = 128) -> None:
    """A greyscale PNG of a non-negative ``(H, W)`` map, upscaled to about ``size`` pixels."""
    from PIL import Image

    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    top = values.max() if values.size else 0.0
    grey = (255 * values / top).astype(np.uint8) if top > 0 else np.zeros(values.shape, np.uint8)
    image = Image.fromarray(grey)
    scale = max(1, size // max(values.shape))
    image.resize((values.shape[1] * scale, values.shape[0] * scale), Image.NEAREST).save(path)


def _page(title: str, body: str, *, script: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}{script}</body></html>\n"
    )


def _table(rows: Sequence[tuple[str, str]], head: tuple[str, ...] = ()) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _detail_page(index: int, item: ReportItem, figures: list[tuple[str, str]], npz: str | None,
                 class_page: str) -> str:
    esc = html.escape
    parts = [
        "<p><a href=\"index.html\">&larr; all images</a> &middot; "
        f"<a href=\"{class_page}\">class {esc(item.target_label)}</a></p>",
        f"<h1>{esc(item.name)} &mdash; {esc(item.target_label)}</h1>",
        f"<p>Score F(x): <span id=\"score\">{_fmt(item.score)}</span></p>",
        f"<p>Relative error: <span id=\"relative-error\">{_fmt(item.relative_error)}</span> "
        f"&middot; status: <span id=\"status\">{esc(item.status)}</span></p>",
        "<h2>Completeness check</h2>",
        f"<p id=\"completeness\">{esc(item.completeness)}</p>",
    ]
    if figures or item.note:
        parts.append("<h2>Figures</h2>")
    if item.note:
        parts.append(f"<p id=\"note\" class=\"note\">{esc(item.note)}</p>")
    parts.extend(
        f"<figure><img src=\"{f}\" alt=\"figure {k}\"><figcaption>{esc(cap)}</figcaption>"
        "</figure>"
        for k, (f, cap) in enumerate(figures)
    )
    if item.top_k:
        parts.append("<h2>Top-k predictions</h2>")
        parts.append(_table([(lab, str(i), f"{s:.6g}") for lab, i, s in item.top_k],
                            ("label", "class index", "score")))
    parts.append("<h2>Numbers and settings</h2>")
    parts.append(_table(list(item.fields.items()), ("name", "value")))
    if npz:
        parts.append(f"<p><a id=\"npz\" href=\"{npz}\">Download the arrays (npz)</a></p>")
    del index
    return _page(f"{item.name} - {item.target_label}", "".join(parts))


_MASK_CAPTION = "attribution mask (sum over channels of |attribution|)"
_OVERLAY_CAPTION = "overlay: the image at alpha 0.4 over the attribution mask (inferno)"


def _draw_figures(dest: Path, i: int, item: ReportItem,
                  attributions: np.ndarray) -> list[tuple[str, str]]:
    """The overlay (when the image can be prepared again) and the mask of an item without
    figures; sets ``item.note`` when the overlay cannot be drawn."""
    from igkit.viz.transforms import attribution_mask

    mask = attribution_mask(attributions)
    figures = []
    if item.image_path is not None:
        image, why = _model_input(item.image_path, item.preprocess, mask.shape)
        if image is not None:
            try:
                from igkit.viz.transforms import display_rgb, overlay

                drawn = overlay(display_rgb(image, (0.0, 1.0)), mask, "inferno", 0.4)
            except ImportError:
                why = "drawing the overlay needs matplotlib (pip install 'igkit[viz]')"
            else:
                rel = f"img/{i}_overlay.png"
                _write_rgb_png(drawn, dest / rel)
                figures.append((rel, _OVERLAY_CAPTION))
        if why:
            item.note = f"No overlay: {why}; the gallery shows the attribution mask."
    rel = f"img/{i}_mask.png"
    _write_map_png(mask, dest / rel)
    figures.append((rel, _MASK_CAPTION))
    return figures


def _model_input(path: str, mode: str | None,
                 size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The image at ``path`` as the run fed it to the model, or None and why not.

    With the preprocessing unknown (an older store of a model that only loading could tell
    about) the image is used only when every preset gives the same input, as they do when its
    aspect ratio is the input's.
    """
    from igkit.io.images import ImageError, Mode, load_image, preprocess

    if not Path(path).is_file():
        return None, f"the image file {path} is gone"
    try:
        image = load_image(path)
    except ImageError as exc:
        return None, f"the image file cannot be read ({exc})"
    if mode is not None:
        try:
            return preprocess(image, size, mode), ""  # type: ignore[arg-type]
        except ValueError as exc:  # a mode this igkit does not know
            return None, str(exc)
    inputs = [preprocess(image, size, m) for m in get_args(Mode)]
    if all(np.array_equal(inputs[0], other) for other in inputs[1:]):
        return inputs[0], ""
    return None, ("the store does not record how the run preprocessed the images (the model's "
                  "default) and the presets differ for this image")


def _write_rgb_png(rgb: np.ndarray, path: Path, size: int = 128) -> None:
    """An RGB image in [0, 1] as a PNG, upscaled (nearest) to about ``size`` pixels."""
    from PIL import Image

    pixels = np.round(255 * np.clip(np.nan_to_num(rgb), 0.0, 1.0)).astype(np.uint8)
    height, width = pixels.shape[:2]
    scale = max(1, size // max(height, width))
    Image.fromarray(pixels).resize((width * scale, height * scale), Image.NEAREST).save(path)


def build_report(source: str | os.PathLike[str], out: str | os.PathLike[str],
                 compare: str | os.PathLike[str] | None = None) -> int:
    """Write the report for ``source`` into ``out`` and return the number of items.

    Args:
        source: An ``igkit explain`` output folder (with ``NAME.npz`` files) or an
            ``explain-dataset`` store (with ``results/``).
        out: The report folder; created, and its ``img``/``data`` subfolders replaced.
        compare: A second store: adds ``compare.html`` (B = ``compare`` against A =
            ``source``, which must then be a store too); the gallery shows ``source``'s items.

    Returns:
        The number of image/target items in the report.

    Raises:
        ValueError: ``source`` is neither kind of folder, or holds no items; ``compare`` is
            given and either folder is not a store, or their attributions differ in size.
    """
    src = Path(source)
    dest = Path(out)
    classes: list[dict[str, Any]] = []
    store_root: Path | None = None
    if compare is not None:
        for folder in (src, Path(compare)):
            if not (folder / "results").is_dir():
                raise ValueError(f"{folder}: a two-store report needs two explain-dataset stores")
    if (src / "results").is_dir():
        items, classes, store = load_store(src)
        store_root = src
    elif src.is_dir() and any(src.glob("*.npz")):
        items = load_explain_folder(src)
    else:
        raise ValueError(f"{source}: neither an igkit explain folder nor a dataset store")
    other = None
    if compare is not None:
        from igkit.runner.store import DatasetStore

        other = DatasetStore.open(compare)
        if other.shape != store.shape:
            raise ValueError(f"{source} and {compare} hold attributions of different sizes "
                             f"({store.shape} vs {other.shape})")
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("img", "data"):
        shutil.rmtree(dest / sub, ignore_errors=True)
        (dest / sub).mkdir()
    (dest / "compare.html").unlink(missing_ok=True)
    if other is not None:
        _write_compare_page(dest, store, other, src.name, Path(compare).name)

    class_names = sorted({it.label if it.label else it.target_label for it in items}
                         | {c["name"] for c in classes})
    class_index = {name: k for k, name in enumerate(class_names)}
    entries = []
    for i, item in enumerate(items):
        figures: list[tuple[str, str]] = []  # (path in the report, caption)
        for k, fig in enumerate(item.figures):
            rel = f"img/{i}_{k}.png"
            shutil.copyfile(fig, dest / rel)
            figures.append((rel, fig.name))
        attributions = item.attributions
        if attributions is None and item.load_attributions is not None:
            attributions = item.load_attributions()
        if not figures and attributions is not None:
            figures = _draw_figures(dest, i, item, np.asarray(attributions))
        npz = None
        if item.npz is not None:
            npz = f"data/{i}.npz"
            shutil.copyfile(item.npz, dest / npz)
        elif attributions is not None:
            npz = f"data/{i}.npz"
            np.savez_compressed(dest / npz, attributions=np.asarray(attributions),
                                **{k.replace("setting: ", "setting_"): np.asarray(v)
                                   for k, v in item.fields.items()})
        cls = item.label if item.label else item.target_label
        detail = f"item_{i}.html"
        (dest / detail).write_text(
            _detail_page(i, item, figures, npz, f"class_{class_index[cls]}.html"),
            encoding="utf-8",
        )
        entries.append({
            "id": i, "name": item.name, "cls": cls, "label": item.label,
            "target_label": item.target_label, "score": item.score,
            "relative_error": item.relative_error, "status": item.status,
            "thumb": figures[0][0] if figures else None, "detail": detail,
            "note": item.note or None,
        })
    by_class = {c["name"]: c for c in classes}
    for name, k in class_index.items():
        members = [e for e in entries if e["cls"] == name]
        _write_class_page(dest, k, name, members, by_class.get(name))
    (dest / "index.html").write_text(
        _index_page(entries, class_names, class_index, str(src.name), store_root is not None,
                    compare=Path(compare).name if compare is not None else None),
        encoding="utf-8",
    )
    return len(entries)


def _write_class_page(dest: Path, k: int, name: str, members: list[dict[str, Any]],
                      summary: Mapping[str, Any] | None) -> None:
    esc = html.escape
    counts = {s: sum(1 for m in members if m["status"] == s)
              for s in ("converged", "not converged", "failed")}
    parts = [
        "<p><a href=\"index.html\">&larr; all images</a></p>",
        f"<h1>Class {esc(name)}</h1>",
        _table([("items", str(len(members))), *((s, str(n)) for s, n in counts.items())],
               ("", "count")),
    ]
    if summary is not None:
        rel = f"img/class_{k}_mean.png"
        _write_map_png(summary["map"], dest / rel, size=256)
        parts.append("<h2>Mean |attribution| map</h2>"
                     f"<figure><img src=\"{rel}\" alt=\"mean attribution map\"></figure>")
        names = summary.get("channels") or [f"c{c}" for c in range(len(summary["shares"]))]
        shares = [(name, f"{v:.4g}") for name, v in zip(names, summary["shares"], strict=False)]
        parts.append("<h2>Channel shares</h2>" + _table(shares, ("channel", "share")))
        parts.append(_table([
            ("mean |relative error|", f"{summary['mean_err']:.4g}"),
            ("share within tolerance", f"{summary['within_tol']:.4g}"),
        ]))
    parts.append("<h2>Items</h2><ul>")
    parts.extend(f"<li><a href=\"{m['detail']}\">{esc(m['name'])}</a> &mdash; "
                 f"{esc(m['status'])}</li>" for m in members)
    parts.append("</ul>")
    (dest / f"class_{k}.html").write_text(_page(f"Class {name}", "".join(parts)),
                                          encoding="utf-8")


def _index_page(entries: list[dict[str, Any]], class_names: list[str],
                class_index: Mapping[str, int], title: str, is_store: bool,
                compare: str | None = None) -> str:
    esc = html.escape
    links = " &middot; ".join(
        f"<a href=\"class_{class_index[n]}.html\">{esc(n)}</a>" for n in class_names[:200]
    )
    body = (
        f"<header><h1>igkit report: {esc(title)}</h1><div class=\"controls\">"
        "<label>Class <select id=\"f-class\"><option value=\"\">all</option></select></label>"
        "<label>Status <select id=\"f-status\"><option value=\"\">all</option>"
        "<option value=\"converged\">converged</option>"
        "<option value=\"not converged\">not converged</option>"
        "<option value=\"failed\">failed</option></select></label>"
        "<label>True vs explained label <select id=\"f-match\"><option value=\"\">all</option>"
        "<option value=\"same\">same</option><option value=\"differ\">differ</option>"
        "</select></label>"
        "<label>|Relative error| &gt; <input id=\"f-relerr\" type=\"number\" step=\"any\" "
        "min=\"0\" size=\"6\"></label>"
        "<label>Sort <select id=\"f-sort\"><option value=\"none\">as listed</option>"
        "<option value=\"score:desc\">score, high first</option>"
        "<option value=\"score:asc\">score, low first</option>"
        "<option value=\"relative_error:desc\">|relative error|, high first</option>"
        "<option value=\"relative_error:asc\">|relative error|, low first</option>"
        "</select></label>"
        f"<span><b id=\"count\">0</b> of {len(entries)} shown</span></div></header>"
        f"<p>{'Dataset store' if is_store else 'Explain output'}; classes: {links}</p>"
        + (f"<p><a id=\"compare-link\" href=\"compare.html\">Compare with {esc(compare)}</a>"
           " (the gallery shows this store's items)</p>" if compare is not None else "")
        +
        "<div id=\"gallery\" class=\"gallery\"></div>"
        "<button id=\"more\" type=\"button\" hidden>Show more</button>"
    )
    script = (
        f"<script type=\"application/json\" id=\"report-data\">"
        f"{embed_json({'items': entries})}</script><script>{INDEX_JS}</script>"
    )
    return _page(f"igkit report: {title}", body, script=script)


def _write_compare_page(dest: Path, store_a: Any, store_b: Any, name_a: str,
                        name_b: str) -> None:
    """``compare.html``: per class in both stores, the maps A, B, B - A and the share changes.

    The numbers are :func:`igkit.runner.aggregate.compare_rows`'s and the figures
    ``igkit compare``'s (:func:`igkit.cli.summarize.map_grid`), so the page and the command agree.
    """
    from igkit.cli.summarize import map_grid
    from igkit.io.writers import write_figure_png
    from igkit.runner.aggregate import (
        compare_rows,
        normalized_map,
        store_channel_names,
        summarize_store,
    )

    esc = html.escape
    summaries_a, _ = summarize_store(store_a)
    summaries_b, _ = summarize_store(store_b)
    channels = store_channel_names(store_a)
    parts = [
        "<p><a href=\"index.html\">&larr; all images</a></p>",
        f"<h1>Compare: A = {esc(name_a)}, B = {esc(name_b)}</h1>",
        "<p>Per class: the mean |attribution| maps normalised to sum 1, their difference B - A "
        "(red: more in B) and the change of each channel's share of |attribution|.</p>",
    ]
    only = []
    for k, (name, sa, sb, row) in enumerate(compare_rows(summaries_a, summaries_b, channels)):
        if sa is None or sb is None or "map_l1" not in row:
            only.append((name, str(row["examples_a"]), str(row["examples_b"])))
            continue
        parts.append(f"<section class=\"compare-class\"><h2>Class {esc(name)}</h2>")
        if sa.count > sa.failed and sb.count > sb.failed:
            na, nb = normalized_map(sa.mean_map), normalized_map(sb.mean_map)
            maps = f"img/compare_{k}_maps.png"
            diff = f"img/compare_{k}_diff.png"
            write_figure_png(dest / maps, map_grid(["A", "B"], [na, nb],
                                                   title="normalised mean |attribution|"))
            write_figure_png(dest / diff, map_grid(["B - A"], [nb - na], diverging=True,
                                                   title="B - A (red: more in B)"))
            parts.append(f"<figure><img src=\"{maps}\" alt=\"maps A and B\"></figure>"
                         f"<figure><img src=\"{diff}\" alt=\"map difference B - A\"></figure>")
        parts.append(f"<p>L1 distance of the normalised maps: {esc(str(row['map_l1']))}</p>")
        parts.append(_table(
            [(ch, f"{a:.6g}", f"{b:.6g}", str(row.get(f"d_share_{ch}", "")))
             for ch, a, b in zip(channels, sa.channel_share, sb.channel_share, strict=False)],
            ("channel", "share A", "share B", "B - A"),
        ))
        parts.append(_table([
            ("examples", str(sa.count), str(sb.count)),
            ("failed", str(sa.failed), str(sb.failed)),
            ("mean |relative error|", f"{sa.mean_abs_relative_error:.6g}",
             f"{sb.mean_abs_relative_error:.6g}"),
            ("median |relative error|", f"{sa.median_abs_relative_error:.6g}",
             f"{sb.median_abs_relative_error:.6g}"),
            ("max |relative error|", f"{sa.max_abs_relative_error:.6g}",
             f"{sb.max_abs_relative_error:.6g}"),
            ("share within tolerance", f"{sa.within_tol:.6g}", f"{sb.within_tol:.6g}"),
        ], ("", "A", "B")))
        parts.append("</section>")
    if only:
        parts.append("<h2>Classes in only one store</h2>"
                     + _table(only, ("class", "examples in A", "examples in B")))
    (dest / "compare.html").write_text(_page(f"Compare {name_a} and {name_b}", "".join(parts)),
                                       encoding="utf-8")
