"""Atomic output files: a reader sees the old file or the complete new one, never a part.

Each writer writes into a temporary file in the destination's folder (same file system, so the
final rename is atomic), flushes and fsyncs it, gives it the permissions a normally created file
would have, and renames it over the destination with ``os.replace``. If anything fails, the
temporary file is removed and the destination is left as it was.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["atomic_open", "write_csv", "write_figure_png", "write_npz"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    # Elsewhere the only portable way is to set and restore it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary temporary file that replaces ``path`` when the block exits cleanly.

    Raises:
        FileNotFoundError: If the destination folder does not exist.
    """
    path = Path(path)
    # Not a ``with`` statement: the file must stay on disk after closing, for the rename.
    handle = tempfile.NamedTemporaryFile(
        mode="wb", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the mode open() would have.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> None:
    """Write a compressed ``.npz`` atomically; every value must convert to a non-object array.

    Object arrays are refused because reading them back needs ``allow_pickle=True``.

    Raises:
        TypeError: If a value becomes an object array.
    """
    converted = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"npz entry {key!r} would be an object array; store plain values")
        converted[key] = array
    with atomic_open(path) as handle:
        np.savez_compressed(handle, **converted)


def write_figure_png(path: str | os.PathLike[str], figure: Figure, *, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically (tight bounding box, like ``igkit.viz``)."""
    with atomic_open(path) as handle:
        figure.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")


def write_csv(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    fieldnames: Sequence[str],
) -> None:
    """Write rows (dicts keyed by ``fieldnames``) as UTF-8 CSV with a header, atomically."""
    with atomic_open(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)
        text.flush()
        text.detach()  # leave the binary handle open for atomic_open to fsync and close
