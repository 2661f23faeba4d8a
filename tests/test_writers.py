"""Every output is written atomically: a writer killed mid-write leaves the old file or nothing.

Each writer of :mod:`igkit.io.writers` runs in a child process that is stopped inside the write
(a CSV row or a figure artist that waits when the writer reaches it; for npz, a large array whose
compression takes seconds), then SIGKILLed. While it waits, the destination folder is listed:
the destination still holds the old file, and no new name has appeared (the file being written
has none: Linux ``O_TMPFILE``); the child's open file shows the bytes already written. After the
kill the folder is exactly as before.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from igkit.io.writers import atomic_open, write_csv, write_npz

_CHILD = """
import os, sys, time
from pathlib import Path

kind, dest, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


def wait_inside_the_write():
    ready.write_text("inside")
    time.sleep(600)


if kind == "csv":
    from igkit.io.writers import write_csv

    class Row(dict):
        def get(self, key, default=None):  # csv.DictWriter reads each row's fields with get
            if self["i"] == 3000:
                wait_inside_the_write()
            return super().get(key, default)

    write_csv(dest, [Row(i=i, text="x" * 40) for i in range(5000)], ["i", "text"])
elif kind == "png":
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

    from igkit.io.writers import write_figure_png

    class Waiting(Artist):
        def draw(self, renderer):
            wait_inside_the_write()

    figure = Figure()
    figure.add_artist(Waiting())
    write_figure_png(dest, figure)
else:
    import numpy as np

    from igkit.io.writers import write_npz

    # 128 MB of noise: compressing it takes seconds, so the write is caught in progress.
    write_npz(dest, {"noise": np.random.default_rng(0).random(16_000_000)})
"""

OLD = b"the old, complete file\n"


def _has_unnamed_files(folder: Path) -> bool:
    """Whether this system and file system make files without a name (``O_TMPFILE``)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return False
    try:
        os.close(os.open(folder, flag | os.O_WRONLY, 0o600))
    except OSError:
        return False
    return True


def _open_in(pid: int, folder: Path) -> dict[str, int]:
    """The files the process has open in ``folder``: where each points, and its size."""
    files = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            size = os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            files[target] = size
    return files


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("old", [True, False], ids=["over an old file", "new file"])
@pytest.mark.parametrize("kind", ["csv", "png", "npz"])
def test_a_writer_killed_mid_write_leaves_the_old_file_or_nothing(
    kind: str, old: bool, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    dest = folder / f"result.{kind}"
    if old:
        dest.write_bytes(OLD)
    before = sorted(os.listdir(folder))
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind, str(dest), str(ready)],
        env={**os.environ, "MPLBACKEND": "Agg"}, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "the child never reached the middle of its write"
            writing = _open_in(child.pid, folder)
            if kind == "npz" and any(size > (1 << 20) for size in writing.values()):
                break
            if kind != "npz" and ready.exists():
                break
            time.sleep(0.01)
        # Inside the write: the destination is untouched and no new name is in the folder.
        during = sorted(os.listdir(folder))
        content = dest.read_bytes() if dest.exists() else None
        writing = _open_in(child.pid, folder)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert content == (OLD if old else None)
    assert writing, "the child had no file open in the folder"
    if kind != "png":  # the PNG is rendered before its first byte is written
        assert max(writing.values()) > 0  # part of the new file exists...
    if _has_unnamed_files(folder):
        assert during == before, during  # ...but has no name: nothing to see, nothing to leave
        assert all(target.endswith("(deleted)") for target in writing), writing
        assert sorted(os.listdir(folder)) == before
    else:  # a hidden temporary, never the destination
        assert {n for n in during if n not in before} <= {
            n for n in during if n.startswith(f".{dest.name}.") and n.endswith(".tmp")
        }
    assert (dest.read_bytes() if dest.exists() else None) == (OLD if old else None)


def test_complete_writes_replace_the_old_file_with_normal_permissions(tmp_path: Path) -> None:
    """The unnamed file path ends like the named one: the new content under the name, the mode
    a plain open() would give, no temporary left; a failed write changes nothing."""
    dest = tmp_path / "summary.csv"
    dest.write_bytes(OLD)
    old_mask = os.umask(0o027)
    try:
        write_csv(dest, [{"a": 1}], ["a"])
        write_npz(tmp_path / "x.npz", {"x": np.arange(4)})
    finally:
        os.umask(old_mask)
    assert dest.read_bytes() == b"a\r\n1\r\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "x.npz").stat().st_mode) == 0o640
    with pytest.raises(RuntimeError, match="stop"), atomic_open(dest) as handle:
        handle.write(b"half")
        raise RuntimeError("stop")
    assert dest.read_bytes() == b"a\r\n1\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "x.npz"]
    with pytest.raises(FileNotFoundError):
        write_npz(tmp_path / "missing" / "y.npz", {"x": np.arange(1)})
