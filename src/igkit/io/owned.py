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

__all__ = ["OwnershipError", "claim", "record"]


class OwnershipError(ValueError):
    """A file the command would write exists and igkit did not write it."""


def _listed(out: Path, record_name: str) -> set[str]:
    path = out / record_name
    if not path.is_file():
        return set()
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            raise TypeError("files is not a list of names")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OwnershipError(
            f"--out {out}: its {record_name} is damaged ({exc}), so igkit cannot tell which "
            "files are its own; choose another --out"
        ) from None
    return set(files)


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
    earlier = _listed(out, record_name)
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
