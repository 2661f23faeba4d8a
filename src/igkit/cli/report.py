"""``igkit report SOURCE --out DIR``: a static, offline HTML report of attributions.

SOURCE is an ``igkit explain`` output folder or an ``explain-dataset`` store; with two stores
(``igkit report STORE_A STORE_B``) the report adds ``compare.html``, the per-class differences
B - A of ``igkit compare``, and its gallery shows STORE_A's items. The report opens
from the file system with no server or network: ``index.html`` (a filterable, sortable gallery),
one detail page per image and target, and one page per class (see :mod:`igkit.report.build`).
``--out`` may only hold an earlier report, which is replaced file by file as its record lists;
anything else there is refused before a file is written (:mod:`igkit.report.folder`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from igkit.cli._base import EXIT_FAILED, EXIT_OK, Command, UsageError

__all__ = ["COMMAND", "configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="explain output folder or dataset store; or two stores to compare")
    parser.add_argument(
        "--out", required=True, metavar="DIR",
        help="report folder: new, empty, or holding an earlier igkit report, whose files (as "
             "its igkit-report.json lists them) the new report replaces; a folder holding any "
             "other file is refused, and a failed report leaves DIR as it was",
    )


def run(args: argparse.Namespace) -> int:
    """Build the report; a SOURCE that is neither kind of folder is a usage error."""
    from igkit.report.build import build_report

    if len(args.sources) > 2:
        raise UsageError(f"at most two sources (two stores to compare), got {len(args.sources)}")
    sources = [Path(s) for s in args.sources]
    for source in sources:
        if not source.is_dir():
            raise UsageError(f"{source}: no such folder")
    try:
        built = build_report(sources[0], args.out, sources[1] if len(sources) > 1 else None)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"wrote a report of {built.items} item(s) to {Path(args.out) / 'index.html'}")
    return EXIT_FAILED if built.damaged else EXIT_OK


COMMAND = Command(
    name="report",
    help="write a static HTML report of an explain folder or a dataset store",
    # Plain text: argparse prints it as it is, so no reST markup (the docstring has some).
    description=(
        "Write a static HTML report that opens from the file system with no server or network: "
        "a filterable, sortable gallery (index.html), a page per image and target and a page "
        "per class. SOURCE is an igkit explain output folder or an explain-dataset store; with "
        "two stores (STORE_A STORE_B) it adds compare.html, the per-class differences B - A "
        "that igkit compare computes, and the gallery shows STORE_A's items."
    ),
    configure=configure,
    run=run,
)
