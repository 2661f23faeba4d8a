"""The report's output folder: a report replaces only what an earlier report wrote, and appears
whole or not at all.

A report folder holds one report and its record, :data:`RECORD` (``igkit-report.json``): every
file and folder the report wrote. :meth:`ReportFolder.check` runs before anything is written and
refuses (:class:`ReportFolderError`) an ``--out`` that is not a folder, and a folder holding
anything its record does not list: a user's files (also inside ``data/`` or ``img/``), an
``igkit explain`` run, a report made before reports kept a record, a symlink, a damaged record.
Nothing of the user's is ever deleted or overwritten, so the refusal is the only way out.

The report is built in a hidden folder inside ``--out`` (:data:`PARTIAL`, holding the marker
:data:`_MARK`). Only when every file is written are they moved into place, one rename each (the
index last); then the files of the earlier report that the new one does not write are removed,
only those its record lists. Before the first rename the record lists both reports' files, so a
run killed while moving leaves a folder whose every file is listed, and the next run accepts it.
A build that fails (a full disk, a read-only folder, an unreadable source, any error) removes the
hidden folder, and ``--out`` itself when the build created it: ``--out`` is as it was, and the
error is one :class:`ReportWriteError` naming the problem.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["PARTIAL", "RECORD", "ReportFolder", "ReportFolderError", "ReportWriteError"]

#: The report's record in its folder: every file and folder it wrote.
RECORD = "igkit-report.json"
#: The hidden folder a report is built in before it is moved into place.
PARTIAL = ".igkit-report.partial"
#: Marks :data:`PARTIAL` as igkit's, so a build killed midway is cleaned up by the next one.
_MARK = ".igkit-report-build"
#: Write errors that say the disk is full, or that it may not be written.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EROFS, errno.EACCES, errno.EPERM}


class ReportFolderError(ValueError):
    """``--out`` cannot take the report; nothing was written or changed."""


class ReportWriteError(ReportFolderError):
    """Writing the report failed (full disk, no permission, ...); ``--out`` is as it was."""


def _safe_relative(name: object) -> bool:
    """Whether ``name`` is a plain relative path inside the folder (no ``..``, not absolute)."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and all(part not in ("", ".", "..") for part in path.parts) \
        and str(path) == name


class ReportFolder:
    """Where one report goes: checked before any write, built aside, moved into place.

    Args:
        out: The report folder (``--out``); created by :meth:`build` when missing.
        about: What the record says about the report besides its files (source, version).
    """

    def __init__(self, out: str | os.PathLike[str], about: dict[str, Any] | None = None) -> None:
        self.out = Path(out)
        self.about = dict(about or {})
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._checked = False

    # -- before any write ---------------------------------------------------------------------

    def check(self) -> None:
        """Refuse an ``--out`` the report may not write into; write nothing.

        Raises:
            ReportFolderError: ``--out`` is not a folder, its record is damaged, or it holds
                something no earlier report wrote.
        """
        out = self.out
        if out.is_symlink() and not out.exists():
            raise ReportFolderError(f"--out {out}: is a symlink to nothing; choose another --out")
        if out.exists() and not out.is_dir():
            raise ReportFolderError(f"--out {out}: exists and is not a folder; choose another "
                                    "--out")
        if out.is_dir():
            self._files, self._folders = self._read_record()
            unknown = self._unknown()
            if unknown:
                shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
                raise ReportFolderError(
                    f"--out {out}: holds {len(unknown)} file(s) or folder(s) that igkit report "
                    f"did not write ({shown}); igkit never deletes or overwrites them: choose a "
                    "new or empty --out, or one that holds only an earlier igkit report"
                )
        else:
            existing = out.parent
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise ReportFolderError(f"--out {out}: {existing} is not a folder")
        self._checked = True

    def _read_record(self) -> tuple[set[str], set[str]]:
        """The files and folders the earlier report's record lists (none without a record)."""
        path = self.out / RECORD
        if not path.exists() and not path.is_symlink():
            return set(), set()
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("not a plain file")
            record = json.loads(path.read_text(encoding="utf-8"))
            files, folders = record["files"], record["folders"]
            for names in (files, folders):
                if not isinstance(names, list) or not all(_safe_relative(n) for n in names):
                    raise ValueError("its lists are not relative paths inside the folder")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ReportFolderError(
                f"--out {self.out}: its {RECORD} is damaged ({exc}), so igkit cannot tell which "
                "files are its own; choose another --out"
            ) from None
        return set(files), set(folders)

    def _unknown(self) -> list[str]:
        """What ``--out`` holds that the record does not list, as relative paths, sorted."""
        unknown: list[str] = []

        def walk(folder: Path, prefix: str) -> None:
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                rel = f"{prefix}{entry.name}"
                if entry.is_symlink():
                    unknown.append(rel)
                elif entry.is_dir():
                    if rel == PARTIAL and (Path(entry.path) / _MARK).is_file():
                        continue  # a build killed midway: the next build removes it
                    if rel in self._folders:
                        walk(Path(entry.path), f"{rel}/")
                    else:
                        unknown.append(f"{rel}/")
                elif not (entry.is_file() and rel in self._files):
                    unknown.append(rel)

        walk(self.out, "")
        return unknown

    # -- the build ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """Yield the hidden folder to write the report into; move it into place on success.

        On any error the hidden folder, and ``--out`` when this build created it, are removed;
        an ``OSError`` becomes a :class:`ReportWriteError`.
        """
        if not self._checked:
            self.check()
        created: list[Path] = []
        partial = self.out / PARTIAL
        try:
            missing = self.out
            while not missing.exists():
                created.append(missing)
                missing = missing.parent
            self.out.mkdir(parents=True, exist_ok=True)
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir()
            (partial / _MARK).touch()
            yield partial
            self._commit(partial)
        except BaseException as exc:
            shutil.rmtree(partial, ignore_errors=True)
            for folder in created:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(exc, OSError):
                raise self._write_error(exc, partial) from None
            raise

    def _write_error(self, exc: OSError, partial: Path) -> ReportWriteError:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        name = exc.filename
        where = ""
        if name is not None:
            path = Path(os.fsdecode(name))
            if path.is_relative_to(partial):
                rel = path.relative_to(partial)
            elif path.is_relative_to(self.out):
                rel = path.relative_to(self.out)
            else:
                return ReportWriteError(f"cannot read {path} ({reason}); --out {self.out} is as "
                                        "it was")
            where = f" at {rel.as_posix()}" if rel != Path(".") else ""
        if exc.errno in _FULL:
            fix = "free space or choose another --out"
        elif exc.errno in _DENIED:
            fix = "choose a writable --out"
        else:
            fix = "choose another --out"
        return ReportWriteError(
            f"--out {self.out}: cannot write the report{where} ({reason}); --out is as it was: "
            f"{fix}"
        )

    def _commit(self, partial: Path) -> None:
        """Move the built report into ``--out`` and remove what only the earlier one wrote."""
        files: list[str] = []
        folders: list[str] = []
        for root, dirs, names in os.walk(partial):
            dirs.sort()
            base = Path(root).relative_to(partial)
            folders += [(base / d).as_posix() for d in dirs]
            files += [(base / n).as_posix() for n in sorted(names)
                      if not (n in (_MARK, RECORD) and base == Path("."))]
        # The index last: a reader who sees it sees every page it links to.
        files.sort(key=lambda f: (f == "index.html", f))
        new_files, new_folders = {*files, RECORD}, set(folders)
        # Both reports' files first, so a run killed while moving leaves only listed files.
        self._write_record(partial, self._files | new_files, self._folders | new_folders,
                           complete=False)
        for folder in folders:
            (self.out / folder).mkdir(exist_ok=True)
        for name in files:
            os.replace(partial / name, self.out / name)
        for name in sorted(self._files - new_files):
            path = self.out / name
            if path.is_file() and not path.is_symlink():
                path.unlink()
        for folder in sorted(self._folders - new_folders, key=lambda f: -f.count("/")):
            with contextlib.suppress(OSError):  # not empty: it held a user's file
                (self.out / folder).rmdir()
        self._write_record(partial, new_files, new_folders, complete=True)
        self._files, self._folders = new_files, new_folders
        shutil.rmtree(partial)

    def _write_record(self, partial: Path, files: set[str], folders: set[str], *,
                      complete: bool) -> None:
        """Write the record in the build folder, then rename it over ``--out``'s (atomic, and
        no temporary file is ever left in ``--out``)."""
        record = {**self.about, "complete": complete, "files": sorted(files),
                  "folders": sorted(folders)}
        with open(partial / RECORD, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial / RECORD, self.out / RECORD)
