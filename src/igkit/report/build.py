"""Build a static HTML report from an ``igkit explain`` folder or an ``explain-dataset`` store.

Everything the pages need lies inside the report folder: figures under ``img/``, npz files under
``data/``, one ``item_N.html`` per image and target, one ``class_N.html`` per class,
``index.html`` and ``igkit-report.json``, the record of every file written (a report replaces
only an earlier report's files: :mod:`igkit.report.folder`); with a second store,
``compare.html`` (per class, B - A of the normalised mean |attribution| maps and channel
shares, computed by :mod:`igkit.runner.aggregate` and drawn with the figures of
``igkit compare``) and a gallery of the first store's items. File names inside
the report never come from data, so links are always plain relative paths; every string from
data is escaped with :func:`html.escape` here, and the index script only ever sets
``textContent``.

The items come from :mod:`igkit.report.items` (an explain folder: its figures are copied) and
:mod:`igkit.report.store` (a store: overlays and masks are drawn, settings shown as used).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igkit.report.assets import CSS, INDEX_JS
from igkit.report.folder import ReportFolder
from igkit.report.items import ReportItem, load_explain_folder, write_map_png
from igkit.report.store import draw_figures, load_store

__all__ = [
    "BuiltReport", "ReportItem", "build_report", "embed_json", "load_explain_folder", "load_store",
]


def embed_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>``, ``&`` escaped."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


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


@dataclass(frozen=True)
class BuiltReport:
    """What :func:`build_report` wrote: ``items`` image/target items; ``damaged`` when a store
    it read is damaged (its damaged examples are named on stderr and left out of the report)."""

    items: int
    damaged: bool = False


def build_report(source: str | os.PathLike[str], out: str | os.PathLike[str],
                 compare: str | os.PathLike[str] | None = None) -> BuiltReport:
    """Write the report for ``source`` into ``out``; say how many items and whether a store was
    damaged.

    ``out`` is checked before anything is written, and the report appears there whole or not
    at all (:mod:`igkit.report.folder`): it may be new, empty or hold an earlier report, whose
    files (only those its record lists) the new report replaces.

    Args:
        source: An ``igkit explain`` output folder (with ``NAME.npz`` files) or an
            ``explain-dataset`` store (with ``results/``).
        out: The report folder.
        compare: A second store: adds ``compare.html`` (B = ``compare`` against A =
            ``source``, which must then be a store too); the gallery shows ``source``'s items.

    Returns:
        The number of image/target items, and whether a store read was damaged.

    Raises:
        ValueError: ``source`` is neither kind of folder, or holds no items; ``compare`` is
            given and either folder is not a store, or their attributions differ in size.
        ReportFolderError: (a ValueError) ``out`` holds files no earlier report wrote, or is
            not a folder; :class:`~igkit.report.folder.ReportWriteError` when writing failed
            (full disk, no permission), ``out`` then being as it was.
    """
    import igkit

    src = Path(source)
    classes: list[dict[str, Any]] = []
    store = None
    if compare is not None:
        for folder in (src, Path(compare)):
            if not (folder / "results").is_dir():
                raise ValueError(f"{folder}: a two-store report needs two explain-dataset stores")
    from igkit.report.evaluation import is_evaluation_folder, write_evaluation_report

    if compare is None and is_evaluation_folder(src):
        target = ReportFolder(out, {"igkit_report": igkit.__version__, "source": str(src),
                                    "compare": None})
        target.check()
        with target.build() as dest:
            count = write_evaluation_report(dest, src, _page)
        return BuiltReport(count)
    if not (src / "results").is_dir() and not (src.is_dir() and any(src.glob("*.npz"))):
        raise ValueError(
            f"{source}: neither an igkit explain folder, a dataset store nor an igkit evaluate "
            "folder"
        )
    target = ReportFolder(out, {"igkit_report": igkit.__version__, "source": str(src),
                                "compare": None if compare is None else str(compare)})
    target.check()
    if (src / "results").is_dir():
        items, classes, store = load_store(src)
    else:
        items = load_explain_folder(src)
    other = None
    if compare is not None:
        from igkit.runner.store import DatasetStore

        other = DatasetStore.open(compare)
        if other.shape != store.shape:
            raise ValueError(f"{source} and {compare} hold attributions of different sizes "
                             f"({store.shape} vs {other.shape})")
    with target.build() as dest:
        for sub in ("img", "data"):
            (dest / sub).mkdir()
        if other is not None:
            _write_compare_page(dest, store, other, src.name, Path(compare).name)
            if other.last_check is not None:  # store B's damage, named like store A's
                for line in other.last_check.messages(Path(compare)):
                    print(line, file=sys.stderr)
        count = _write_items(dest, src, items, classes, store is not None,
                             None if compare is None else Path(compare).name)
    damaged = any(
        s is not None and s.last_check is not None and not s.last_check.ok for s in (store, other)
    )
    return BuiltReport(count, damaged)


def _write_items(dest: Path, src: Path, items: list[ReportItem], classes: list[dict[str, Any]],
                 is_store: bool, compare: str | None) -> int:
    """The detail, class and index pages and their figures and npz files, into ``dest``."""
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
            figures = draw_figures(dest, i, item, np.asarray(attributions))
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
        _index_page(entries, class_names, class_index, str(src.name), is_store, compare=compare),
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
        write_map_png(summary["map"], dest / rel, size=256)
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
    ``igkit compare``'s (:func:`igkit.report.charts.map_grid`), so the page and the command agree.
    """
    from igkit.io.writers import write_figure_png
    from igkit.report.charts import map_grid
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
