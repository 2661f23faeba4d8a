"""Atomic output files: a reader sees the old file or the complete new one, never a part.

Each writer writes into a file of the destination's folder (same file system, so the final
rename is atomic), flushes and fsyncs it, and renames it over the destination with
``os.replace``. Where Linux allows (``O_TMPFILE``), that file has no name while it is written:
it is linked under a temporary name only once complete and renamed at once, so even a process
killed mid-write (SIGKILL, power loss before the fsync) leaves nothing in the folder but the old
file. Elsewhere it is a hidden ``.NAME.XXXXXXXX.tmp`` from the start, removed if anything fails
(a killed process leaves it, never the destination, half-written). New files get the
permissions a normally created file would have.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DISK_ERRORS", "atomic_open", "write_csv", "write_figure_png", "write_npz"]

#: Write errors that say the disk, not the data or igkit, is the problem (full, read-only, no
#: permission, over a file-size limit): front ends report them as one line.
DISK_ERRORS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)

#: Characters of the temporary names (tempfile's alphabet, so ``.NAME.XXXXXXXX.tmp`` reads the
#: same whichever way the file was made).
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


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


def _temporary_name(path: Path) -> str:
    return f".{path.name}.{''.join(secrets.choice(_NAME_CHARS) for _ in range(8))}.tmp"


def _open_unnamed(folder: Path) -> int | None:
    """A writable file without a name in ``folder`` (Linux ``O_TMPFILE``), or None where the
    system or file system has none (or cannot link it later: no ``/proc``)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        # The mode goes through the umask, as for any new file.
        return os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        # Kernels or file systems without O_TMPFILE; every other error (no folder, no
        # permission, full disk) is the caller's.
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary file that replaces ``path`` when the block exits cleanly.

    Until then nothing at ``path`` changes, and where the system has ``O_TMPFILE`` nothing new
    is visible in its folder at all.

    Raises:
        FileNotFoundError: If the destination folder does not exist.
    """
    path = Path(path)
    fd = _open_unnamed(path.parent)
    if fd is None:
        with _named_temporary(path) as handle:
            yield handle
        return
    handle = os.fdopen(fd, "wb")
    with handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        _link_into_place(handle.fileno(), path)
    _fsync_folder(path.parent)


def _link_into_place(fd: int, path: Path) -> None:
    """Give the complete unnamed file ``fd`` a temporary name, then rename it over ``path``."""
    folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        while True:
            name = _temporary_name(path)
            try:
                # dst_dir_fd makes os.link call linkat, which follows the /proc link to the file.
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)
                break
            except FileExistsError:  # 37**8 names: another writer's, try the next
                continue
        try:
            os.replace(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
            raise
    finally:
        os.close(folder)


@contextlib.contextmanager
def _named_temporary(path: Path) -> Iterator[IO[bytes]]:
    """atomic_open where files cannot be unnamed: a hidden temporary file from the start."""
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
