"""The report page of an ``igkit evaluate`` folder: methods x metrics, with the figures.

``index.html`` shows the summary table (mean, std and n per method and metric, the best method
of each metric in bold, by the metric's own direction), the mean deletion/insertion curves and
the summary figure, and links the full table (``data/metrics.csv``). Every string from the
table is escaped.
"""

from __future__ import annotations

import csv
import html
import math
import shutil
from pathlib import Path

__all__ = ["is_evaluation_folder", "write_evaluation_report"]


def is_evaluation_folder(folder: Path) -> bool:
    """Whether ``folder`` was written by ``igkit evaluate``."""
    from igkit.evaluation.outputs import EVALUATE_RECORD

    return (folder / EVALUATE_RECORD).is_file() and (folder / "metrics.csv").is_file()


def _summary(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("level") == "summary"]


def write_evaluation_report(dest: Path, src: Path, page: object) -> int:
    """Write the page into ``dest`` (a report being built); return the number of rows shown.

    ``page(title, body)`` wraps a body in the report's HTML page.

    Raises:
        ValueError: The folder's metrics.csv holds no summary row.
    """
    rows = _summary(src)
    if not rows:
        raise ValueError(f"{src}: its metrics.csv holds no summary rows")
    esc = html.escape
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    best: dict[str, str] = {}
    for metric in metrics:
        scored = [(float(cell[(m, metric)]["mean"]), m) for m in methods
                  if (m, metric) in cell and math.isfinite(float(cell[(m, metric)]["mean"]))]
        if scored:
            up = cell[(scored[0][1], metric)]["higher_is_better"] == "True"
            best[metric] = (max(scored) if up else min(scored))[1]
    higher = {r["metric"]: r["higher_is_better"] == "True" for r in rows}
    head = "".join(
        f"<th>{esc(m)} ({'higher' if higher[m] else 'lower'} is better)</th>" for m in metrics
    )
    body = [f"<h1>Evaluation: {esc(src.name)}</h1>",
            "<p>Mean &plusmn; std over the examples (n) per attribution method and metric; the "
            "best method of each metric in bold. <code>random</code> and <code>sobel</code> are "
            "controls that explain nothing.</p>",
            f"<table><tr><th>method</th>{head}</tr>"]
    for method in methods:
        tds = []
        for metric in metrics:
            r = cell.get((method, metric))
            if r is None:
                tds.append("<td>-</td>")
                continue
            text = f"{float(r['mean']):.4g} &plusmn; {float(r['std']):.2g} (n={esc(r['n'])})"
            tds.append(f"<td><b>{text}</b></td>" if best.get(metric) == method
                       else f"<td>{text}</td>")
        body.append(f"<tr><td>{esc(method)}</td>{''.join(tds)}</tr>")
    body.append("</table>")
    (dest / "img").mkdir(exist_ok=True)
    (dest / "data").mkdir(exist_ok=True)
    for name, alt in (("curves.png", "mean perturbation curves per method"),
                      ("summary.png", "methods x metrics summary")):
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / "img" / name)
            body.append(f"<figure><img src=\"img/{name}\" alt=\"{alt}\"></figure>")
    shutil.copyfile(src / "metrics.csv", dest / "data" / "metrics.csv")
    body.append("<p><a href=\"data/metrics.csv\">metrics.csv</a>: every example's values.</p>")
    (dest / "index.html").write_text(
        page(f"igkit evaluation: {src.name}", "".join(body)), encoding="utf-8"  # type: ignore[operator]
    )
    return len(rows)
