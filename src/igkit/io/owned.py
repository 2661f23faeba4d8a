"""Folders a command writes a fixed set of files into (``summarize``, ``compare``).

Before writing, :func:`claim` checks that each file the command may write is absent, or was
written by an earlier run of the same command (listed in its record, a small JSON file in the
folder); a file the user put there, or a symlink, is refused. After writing, :func:`record`
lists what the command wrote. So a command never overwrites or removes a file igkit did not
write, and a later run may replace its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["OwnershipError", "claim", "read_record", "record"]


class OwnershipError(ValueError):
    """A file the command would write exists and igkit did not write it."""


def read_record(out: str | os.PathLike[str], record_name: str) -> dict[str, Any] | None:
    """The record ``record_name`` in ``out`` (a JSON object whose ``files`` lists the names an
    earlier igkit command wrote there), or None when there is none.

    Raises:
        OwnershipError: The record cannot be read or its ``files`` is not a list of names.
    """
    path = Path(out) / record_name
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        files = found["files"]
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            raise TypeError("files is not a list of names")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OwnershipError(
            f"--out {out}: its {record_name} is damaged ({exc}), so igkit cannot tell which "
            "files are its own; choose another --out"
        ) from None
    return dict(found)


def claim(out: str | os.PathLike[str], names: Iterable[str], record_name: str) -> None:
    """Check that ``names`` may be written (or removed) in ``out``.

    Raises:
        OwnershipError: ``out`` is not a folder, or one of ``names`` (or the record) exists
            without an earlier record listing it, or is a symlink.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OwnershipError(f"--out {out}: exists and is not a folder")
    if not out.is_dir():
        return
    found = read_record(out, record_name)
    earlier = set(found["files"]) if found else set()
    for name in [*names, record_name]:
        path = out / name
        if path.is_symlink() or (path.exists() and name not in earlier and name != record_name):
            raise OwnershipError(
                f"--out {out}: {path} exists and igkit did not write it; igkit never "
                "overwrites such a file: choose another --out or move the file"
            )


def record(out: str | os.PathLike[str], names: Iterable[str], record_name: str) -> None:
    """List ``names`` (the files just written) as the command's own, atomically."""
    from igkit.io.writers import atomic_open

    data = json.dumps({"files": sorted(set(names))}, indent=1).encode()
    with atomic_open(Path(out) / record_name) as handle:
        handle.write(data)
