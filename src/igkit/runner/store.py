"""The dataset store: attributions in a chunked Zarr array, results in Parquet part files.

Layout of a store folder::

    STORE/
      store.json               settings, their fingerprint, array shape (written once, atomically)
      examples.parquet         the examples of the run: id, path, label, target (written once)
      attributions.zarr/       float32 array (examples, H, W, C), one chunk per example
      results/part-*.parquet   result rows, one file per committed batch (atomic renames)
      run.lock                 held (flock) by the run writing to the store
      quarantine/              damaged files a resumed run moved aside (never deleted)
      summary/                 written by ``igkit summarize``

Commit protocol: an example's attribution chunk is written first, then its result row inside a
part file that appears with ``os.replace``. A reader therefore never sees half a row, and a row
is only visible once its chunk is complete. Each ok row holds the CRC32 of its chunk.

Trust: :meth:`DatasetStore.check` reads the store as a whole and returns a :class:`StoreCheck`:
the rows that can be trusted (each example at most once, every ok row's chunk present and
matching its checksum) and a :class:`Damage` for every damaged thing, by name (a part file that
cannot be read, a duplicated part, a chunk that is missing or differs, an example without a
row). ``igkit summarize``, ``compare`` and ``report`` read through it, so damaged data is never
counted. A run resuming the store calls :meth:`DatasetStore.repair` under its lock: stale
temporaries of killed writers are removed, unreadable, foreign and duplicate part files are
moved into ``quarantine/``, rows of damaged chunks are dropped (their examples are redone).

The store is created in a hidden folder beside ``STORE`` and renamed into place holding its run
lock, so of two runs creating the same store one wins and the other is refused.

The results table is the union of the part files; DuckDB reads it with
``read_parquet('STORE/results/*.parquet')`` (see :meth:`DatasetStore.query`).

Why one module: the commit protocol, the check and the repair must agree on every file's name
and meaning (parts, chunks, temporaries, the quarantine); split, one could change without the
others.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from igkit.io.writers import atomic_open

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "REPAIR_ADVICE",
    "RESULT_COLUMNS",
    "Damage",
    "DatasetStore",
    "Example",
    "StoreCheck",
    "StoreDamaged",
    "StoreError",
    "StoreRepair",
    "checksum",
    "fingerprint",
]

STORE_FORMAT = 1
_PART = re.compile(r"^part-(\d{6,})-[0-9a-f]{8}\.parquet$")
#: Temporaries of :func:`igkit.io.writers.atomic_open` (``.NAME.XXXXXXXX.tmp``, tempfile's
#: alphabet) and of Zarr's local store (``NAME.<32 hex>.partial`` beside a chunk or zarr.json).
_ATOMIC_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
_ZARR_TEMP = re.compile(r"^(?:\d+|zarr\.json)\.[0-9a-f]{32}\.partial$")
#: The files of the store root that igkit writes through atomic_open.
_ROOT_FILES = ("store.json", "examples.parquet")
QUARANTINE = "quarantine"
#: How to repair a damaged store, as the readers say it.
REPAIR_ADVICE = (
    "Run the same igkit explain-dataset command again: it recomputes what is missing or "
    "damaged and loses nothing else (damaged files are moved to the store's quarantine/ folder)"
)

#: Columns of the results table, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "id",
    "path",
    "label",
    "target",
    "target_label",
    "score",
    "baseline_score",
    "delta",
    "relative_error",
    "converged",
    "steps",
    "evaluations",
    "seconds",
    "status",
    "error",
    "checksum",
    "settings",
)


class StoreError(ValueError):
    """A store that cannot be used as asked (other settings, other examples, damaged)."""


class StoreDamaged(StoreError):
    """A store whose ``store.json`` is damaged: nothing in it can be read with confidence.

    Attributes:
        problem: What is wrong with store.json (the message adds the file and how to repair).
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"{path}: {problem}; the store cannot be read. Run the same igkit explain-dataset "
            "command again: it writes store.json again when the store's images, array and rows "
            "confirm the command, and loses nothing else"
        )
        self.problem = problem


@dataclass(frozen=True)
class Example:
    """One input of a dataset run.

    Attributes:
        id: Position in the source (0-based); also the index of its attribution chunk.
        path: The image file.
        label: The example's class from the manifest (ground truth), or None.
        target: A class index to explain from the manifest, or None for the run's ``--target``.
    """

    id: int
    path: str
    label: str | None = None
    target: int | None = None


@dataclass(frozen=True)
class Damage:
    """One damaged thing of a store, by name.

    Attributes:
        file: The damaged file or folder, relative to the store (``results/part-...parquet``,
            ``attributions.zarr/c/3/0/0/0``, ``examples.parquet``, ``results``).
        problem: What is wrong with it.
        example: The example it takes away, if it is one example's.
        path: That example's image, when known.
    """

    file: str
    problem: str
    example: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        return self.describe()

    def describe(self, root: str | os.PathLike[str] | None = None) -> str:
        """One line: the example (id and image) when it is one's, the file, the problem."""
        who = ""
        if self.example is not None:
            who = f"example {self.example}" + (f" ({self.path})" if self.path else "") + ": "
        file = self.file if root is None else (Path(root) / self.file).as_posix()
        return f"{who}{file}: {self.problem}"


@dataclass
class StoreCheck:
    """What :meth:`DatasetStore.check` found.

    Attributes:
        rows: The rows that can be trusted, sorted by id, each example at most once: every ok
            row's chunk is present and matches its checksum.
        damage: Every damaged thing, named; empty for a sound, complete store.
        missing: Ids of the examples without a trusted row (lost, damaged or not yet run).
        examples: The store's examples (None when ``examples.parquet`` is damaged).
        move: Files (relative) that a repair moves into the quarantine: unreadable, foreign
            and duplicate part files.
        drop: Per part file (relative), the indices of the rows a repair removes from it.
        redo: Ids of the examples whose rows a repair drops (damaged chunks, conflicting rows).
    """

    rows: list[dict[str, Any]]
    damage: list[Damage]
    missing: list[int]
    examples: list[Example] | None = None
    move: list[str] = field(default_factory=list)
    drop: dict[str, list[int]] = field(default_factory=dict)
    redo: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged or missing."""
        return not self.damage

    @property
    def damaged_examples(self) -> list[int]:
        """Ids of the examples left out because something of theirs is damaged or missing."""
        return sorted({d.example for d in self.damage if d.example is not None})

    def messages(self, root: str | os.PathLike[str], *, limit: int = 20) -> list[str]:
        """What a reader prints: ``igkit: damaged: ...`` for each damaged thing (at most
        ``limit``, then how many more), then one ``igkit: error: ...`` line saying what was
        left out and how to repair it; empty for a sound store."""
        if self.ok:
            return []
        lines = [f"igkit: damaged: {d.describe(root)}" for d in self.damage[:limit]]
        if len(self.damage) > limit:
            lines.append(f"igkit: damaged: ... and {len(self.damage) - limit} more")
        examples = len(self.damaged_examples)
        files = sum(d.example is None for d in self.damage)
        what = [f"{examples} example(s) damaged or without a row, left out of every number"
                if examples else "", f"{files} damaged file(s)" if files else ""]
        lines.append(
            f"igkit: error: {Path(root).as_posix()} is damaged: "
            f"{'; '.join(w for w in what if w)}. {REPAIR_ADVICE}"
        )
        return lines


@dataclass(frozen=True)
class StoreRepair:
    """What :meth:`DatasetStore.repair` did.

    Attributes:
        found: The check it acted on.
        moved: ``(file, where it went)`` for each file moved into the quarantine (relative).
        redo: Ids of the examples whose rows it dropped (damaged chunks, conflicting rows); they
            have no row now and are explained again.
        temporaries: Stale temporary files of killed writers it removed (relative).
        rewritten: Store files it wrote again from the run's own data (``examples.parquet``).
    """

    found: StoreCheck
    moved: list[tuple[str, str]]
    redo: list[int]
    temporaries: list[str]
    rewritten: list[str]


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short SHA-256 of the settings as canonical JSON."""
    text = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def checksum(attributions: np.ndarray) -> int:
    """CRC32 of an attribution array's float32 bytes (C order)."""
    return zlib.crc32(np.ascontiguousarray(attributions, dtype=np.float32).tobytes())


def _schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.int64()),
            ("path", pa.string()),
            ("label", pa.string()),
            ("target", pa.int64()),
            ("target_label", pa.string()),
            ("score", pa.float64()),
            ("baseline_score", pa.float64()),
            ("delta", pa.float64()),
            ("relative_error", pa.float64()),
            ("converged", pa.bool_()),
            ("steps", pa.int64()),
            ("evaluations", pa.int64()),
            ("seconds", pa.float64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("checksum", pa.int64()),
            ("settings", pa.string()),
        ]
    )


def _write_parquet(path: Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    with atomic_open(path) as handle:
        # Page CRCs: a flipped byte in a part is found when it is read, not counted.
        pq.write_table(table, handle, write_page_checksum=True)


def _examples_table(examples: Sequence[Example]) -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([e.id for e in examples], pa.int64()),
            "path": pa.array([e.path for e in examples], pa.string()),
            "label": pa.array([e.label for e in examples], pa.string()),
            "target": pa.array([e.target for e in examples], pa.int64()),
        }
    )


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _meta_problem(meta: Any) -> str | None:
    """Why a parsed store.json cannot be trusted, or None (format checked by the caller)."""
    if not isinstance(meta.get("settings"), dict):
        return "no settings"
    if meta.get("fingerprint") != fingerprint(meta["settings"]):
        return "its fingerprint does not match its settings (edited or damaged)"
    shape = meta.get("shape")
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        return f"its shape {shape!r} is not three positive integers"
    count = meta.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return f"its example count {count!r} is not a number >= 0"
    if not isinstance(meta.get("examples"), str):
        return "no digest of its examples"
    return None


def _flock(handle: IO[bytes], root: Path) -> None:
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(
            f"--out {root}: another igkit run is writing to this store; wait for it or use a "
            "new --out"
        ) from None


class DatasetStore:
    """A store folder opened for reading or for a run (see the module docstring).

    Use :meth:`create_or_open` for a run and :meth:`open` to read a finished store; read it
    through :meth:`check`.
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self._array: Any = None
        self._lock: IO[bytes] | None = None
        #: Why store.json was written again when the run opened the store (None: it was not).
        self.restored: str | None = None
        #: What the latest :meth:`check` found (None before one), for callers that read the
        #: store through a function that checks it (e.g. ``summarize_store``).
        self.last_check: StoreCheck | None = None

    # ------------------------------------------------------------------------------ opening

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings (what the fingerprint is made of)."""
        return dict(self.meta["settings"])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one example's attributions."""
        height, width, channels = self.meta["shape"]
        return int(height), int(width), int(channels)

    @property
    def count(self) -> int:
        """The number of examples of the run."""
        return int(self.meta["count"])

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> DatasetStore:
        """Open an existing store.

        Raises:
            StoreDamaged: If its ``store.json`` cannot be read or contradicts itself.
            StoreError: If ``root`` is not an igkit dataset store.
        """
        root = Path(root)
        meta_path = root / "store.json"
        if not meta_path.is_file():
            if (root / "examples.parquet").is_file() and (root / "attributions.zarr").is_dir():
                raise StoreDamaged(meta_path, "missing")
            raise StoreError(f"{root}: not an igkit dataset store (no store.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreDamaged(meta_path, f"unreadable ({_first_line(exc)})") from None
        if not isinstance(meta, dict):
            raise StoreDamaged(meta_path, "not a JSON object")
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{root}: unsupported store format {meta.get('format')!r}")
        problem = _meta_problem(meta)
        if problem:
            raise StoreDamaged(meta_path, problem)
        return cls(root, meta)

    @classmethod
    def create_or_open(
        cls,
        root: str | os.PathLike[str],
        settings: Mapping[str, Any],
        examples: Sequence[Example],
        shape: tuple[int, int, int],
        *,
        lock: bool = False,
    ) -> DatasetStore:
        """Open the store for a run, creating it when new.

        An existing store must have been made with the same settings and the same examples. A
        new store is built in a hidden folder beside ``root`` and renamed into place with its
        run lock held, so when two runs create the same store at once one of them wins and the
        other opens the winner's store (and, with ``lock``, is refused while it runs).

        Args:
            lock: Return the store with its run lock held (:meth:`lock`).

        Raises:
            StoreError: If the store was made with other settings or examples, or (with
                ``lock``) another run is writing to it.
        """
        root = Path(root)
        wanted = fingerprint(settings)
        ids = _examples_digest(examples)
        if not (root / "store.json").exists() and not (root / "examples.parquet").exists():
            if root.exists() and any(root.iterdir()):
                raise StoreError(f"--out {root}: exists, is not empty and is not an igkit store")
            created = cls._create(root, settings, examples, shape, wanted, ids)
            if created is not None:
                if not lock:
                    created.unlock()
                return created
            # Another run renamed its store into place first: open that one.
        try:
            store = cls.open(root)
        except StoreDamaged as exc:
            if not lock:
                raise
            return cls._restore(root, settings, examples, shape, exc.problem)
        if store.meta["fingerprint"] != wanted:
            old = store.meta["settings"]
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise StoreError(
                f"--out {root}: this store was made with other settings "
                f"({', '.join(changed) or 'fingerprint'} differ); use a new --out or the "
                "same settings"
            )
        if store.meta["examples"] != ids:
            raise StoreError(
                f"--out {root}: this store was made for another list of images; use a new "
                "--out or the same source"
            )
        if lock:
            store.lock()
        return store

    @classmethod
    def _restore(
        cls,
        root: Path,
        settings: Mapping[str, Any],
        examples: Sequence[Example],
        shape: tuple[int, int, int],
        why: str,
    ) -> DatasetStore:
        """Write a damaged ``store.json`` again from the run's own settings, under the run
        lock, when the rest of the store confirms the run made it: ``examples.parquet`` lists
        the same images, the array has the same size, and every readable row records the same
        settings. Otherwise the store is refused."""
        meta = {
            "format": STORE_FORMAT,
            "fingerprint": fingerprint(settings),
            "settings": json.loads(json.dumps(dict(settings))),
            "shape": list(shape),
            "count": len(examples),
            "examples": _examples_digest(examples),
        }
        store = cls(root, meta)
        problem = store._unconfirmed(settings)  # before the lock: no file in a non-store
        if problem is None:
            store.lock()
        try:
            problem = problem or store._unconfirmed(settings)
            if problem is not None:
                raise StoreError(
                    f"--out {root}: its store.json is damaged ({why}) and {problem}, so it "
                    "cannot be resumed; use a new --out (this one is left as it is)"
                )
            if (root / "store.json").exists():
                store._quarantine("store.json")
            with atomic_open(root / "store.json") as out:
                out.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
        except BaseException:
            store.unlock()
            raise
        store.restored = why
        return store

    def _unconfirmed(self, settings: Mapping[str, Any]) -> str | None:
        """Why the store's files do not confirm that a run with ``settings`` made it."""
        if self._checked_examples([]) is None:
            return "its examples.parquet does not list the same images"
        try:
            shape = tuple(self.array.shape)
        except Exception:  # noqa: BLE001 - a damaged array is rebuilt by repair()
            shape = None
        if shape is not None and shape != (self.count, *self.shape):
            return f"its attributions have the shape {shape}, not {(self.count, *self.shape)}"
        wanted = json.loads(json.dumps(dict(settings)))
        resolved = ("output", "preprocess", "input_size")  # recorded in rows as resolved
        for rel, _, row in self._read_parts([])[0]:
            try:
                recorded = json.loads(row.get("settings") or "")
            except ValueError:
                continue
            if not isinstance(recorded, dict):
                continue
            for key, value in wanted.items():
                if recorded.get(key) != value and not (key in resolved and value is None):
                    return f"{rel} was made with other settings ({key} differs)"
        return None

    @classmethod
    def _create(
        cls,
        root: Path,
        settings: Mapping[str, Any],
        examples: Sequence[Example],
        shape: tuple[int, int, int],
        wanted: str,
        ids: str,
    ) -> DatasetStore | None:
        """Build the store beside ``root`` and rename it into place, its lock held; None when
        another run's store took the place first."""
        import zarr

        root.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
        handle: IO[bytes] | None = None
        try:
            handle = open(building / "run.lock", "a+b")  # noqa: SIM115 - held on purpose
            _flock(handle, building)  # a new file: never contended
            (building / "results").mkdir()
            height, width, channels = shape
            zarr.create_array(
                store=str(building / "attributions.zarr"),
                shape=(len(examples), height, width, channels),
                chunks=(1, height, width, channels),
                dtype="float32",
                fill_value=float("nan"),
                overwrite=True,
            )
            _write_parquet(building / "examples.parquet", _examples_table(examples))
            meta = {
                "format": STORE_FORMAT,
                "fingerprint": wanted,
                "settings": dict(settings),
                "shape": list(shape),
                "count": len(examples),
                "examples": ids,
            }
            with atomic_open(building / "store.json") as out:
                out.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
            try:
                # rename(2) is atomic and replaces only a missing or empty folder: of two runs,
                # exactly one succeeds.
                os.rename(building, root)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                handle.close()
                shutil.rmtree(building, ignore_errors=True)
                return None
        except BaseException:
            if handle is not None:
                handle.close()
            shutil.rmtree(building, ignore_errors=True)
            raise
        store = cls(root, meta)
        store._lock = handle
        return store

    # ----------------------------------------------------------------------------- writing

    @property
    def array(self) -> Any:
        """The Zarr attribution array ``(examples, H, W, C)``."""
        if self._array is None:
            import zarr

            self._array = zarr.open_array(str(self.root / "attributions.zarr"), mode="r+")
        return self._array

    def _parts(self) -> list[Path]:
        folder = self.root / "results"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if _PART.match(p.name))

    def lock(self) -> None:
        """Hold the store's run lock until the process ends (or :meth:`unlock`); a no-op when
        this object holds it already.

        Raises:
            StoreError: If another process is writing to the store.
        """
        if self._lock is not None:
            return
        handle = open(self.root / "run.lock", "a+b")  # noqa: SIM115 - held open on purpose
        _flock(handle, self.root)
        self._lock = handle

    def unlock(self) -> None:
        """Release the run lock."""
        handle = self._lock
        if handle is not None:
            handle.close()
            self._lock = None

    def commit(self, rows: Sequence[Mapping[str, Any]], attributions: Mapping[int, Any]) -> None:
        """Commit a batch: the chunks of ``attributions`` (id → HWC array), then the rows.

        Rows must have the :data:`RESULT_COLUMNS` (``checksum`` is filled in here for ok rows).
        """
        import pyarrow as pa

        if not rows:
            return
        full = []
        for row in rows:
            row = {key: row.get(key) for key in RESULT_COLUMNS}
            if row["status"] == "ok":
                values = np.asarray(attributions[int(row["id"])], dtype=np.float32)
                self.array[int(row["id"])] = values
                row["checksum"] = checksum(values)
            full.append(row)
        numbers = [int(_PART.match(p.name).group(1)) for p in self._parts()]  # type: ignore[union-attr]
        index = max(numbers, default=0) + 1
        table = pa.Table.from_pylist(full, schema=_schema())
        # The random suffix means a commit never replaces another's part file.
        name = f"part-{index:06d}-{uuid.uuid4().hex[:8]}.parquet"
        _write_parquet(self.root / "results" / name, table)

    # ------------------------------------------------------------------------------ checking

    def check(
        self,
        *,
        chunks: bool = True,
        on_chunk: Callable[[dict[str, Any], np.ndarray], None] | None = None,
    ) -> StoreCheck:
        """Read the whole store and say what can be trusted and what is damaged, by name.

        Checks that ``examples.parquet`` and the attribution array agree with ``store.json``,
        that every part file is readable and holds result rows of this store's examples, that
        no example has two rows (a duplicated part file is named as one), that every ok row's
        chunk is present and matches its checksum, and names every example without a row.
        Nothing is changed (:meth:`repair` acts on what this finds).

        Args:
            chunks: Read and check every ok row's chunk (False: only the tables).
            on_chunk: Called with each trusted ok row and its ``(H, W, C)`` attributions as they
                are checked, so a reader needs one pass over the chunks.
        """
        count = self.count
        damage: list[Damage] = []
        examples = self._checked_examples(damage)

        def image(ident: Any) -> str | None:
            if examples is not None and isinstance(ident, int) and 0 <= ident < len(examples):
                return examples[ident].path
            return None

        entries, part_sizes, move = self._read_parts(damage)
        drop: dict[str, list[int]] = {}
        redo: set[int] = set()
        by_id: dict[int, list[tuple[str, int, dict[str, Any]]]] = {}
        for rel, index, row in entries:
            problem = _row_problem(row, index, count, examples)
            if problem is not None:
                ident = row.get("id")
                valid = isinstance(ident, int) and 0 <= ident < count
                damage.append(Damage(rel, problem, ident if valid else None, image(ident)))
                drop.setdefault(rel, []).append(index)
                continue
            by_id.setdefault(int(row["id"]), []).append((rel, index, row))

        kept: dict[int, tuple[str, int, dict[str, Any]]] = {}
        repeats: dict[str, list[tuple[int, int, str]]] = {}  # part -> (index, id, first part)
        for ident, group in by_id.items():
            first = group[0]
            if len({_row_key(row) for _, _, row in group}) == 1:
                kept[ident] = first
                for rel, index, _ in group[1:]:
                    repeats.setdefault(rel, []).append((index, ident, first[0]))
                continue
            files = sorted({rel for rel, _, _ in group})
            damage.append(Damage(
                files[-1], f"{len(group)} different rows for this example (in {', '.join(files)}); "
                "none is trusted", ident, image(ident)))
            for rel, index, _ in group:
                drop.setdefault(rel, []).append(index)
            redo.add(ident)
        for rel, repeated in repeats.items():
            originals = sorted({origin for _, _, origin in repeated})
            if len(repeated) == part_sizes[rel]:
                damage.append(Damage(
                    rel, f"a duplicate of {', '.join(originals)}: its rows are counted once"))
                move.append(rel)
                continue
            for index, ident, origin in repeated:
                damage.append(Damage(
                    rel, f"row {index} repeats the row of example {ident} in {origin}: counted "
                    "once"))
                drop.setdefault(rel, []).append(index)

        array_problem = self._array_problem() if chunks else None
        if array_problem is not None:
            damage.append(Damage("attributions.zarr", array_problem))
        rows: list[dict[str, Any]] = []
        for ident in sorted(kept):
            rel, index, row = kept[ident]
            if chunks and row["status"] == "ok":
                key = self.chunk_file(ident)
                if array_problem is not None:
                    values, problem = None, "cannot be read: attributions.zarr is damaged"
                else:
                    values, problem = self._read_chunk(ident, key, row["checksum"])
                if problem is not None or values is None:
                    damage.append(Damage(key, problem or "unreadable", ident, image(ident)))
                    drop.setdefault(rel, []).append(index)
                    redo.add(ident)
                    continue
                if on_chunk is not None:
                    on_chunk(row, values)
            rows.append(row)

        have = {int(row["id"]) for row in rows}
        missing = [i for i in range(count) if i not in have]
        named = {d.example for d in damage if d.example is not None}
        for ident in missing:
            if ident not in named:
                damage.append(Damage(
                    "results", "no result row (a part file was removed or is damaged, or the run "
                    "has not reached it)", ident, image(ident)))
        self.last_check = StoreCheck(rows, damage, missing, examples, move,
                                     {rel: sorted(set(i)) for rel, i in drop.items()},
                                     sorted(redo))
        return self.last_check

    def _checked_examples(self, damage: list[Damage]) -> list[Example] | None:
        """The examples, or None with a Damage when examples.parquet disagrees with store.json."""
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(self.root / "examples.parquet", page_checksum_verification=True)
            examples = [Example(r["id"], r["path"], r["label"], r["target"])
                        for r in table.to_pylist()]
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            damage.append(Damage("examples.parquet", f"unreadable ({_first_line(exc)})"))
            return None
        if ([e.id for e in examples] != list(range(self.count))
                or _examples_digest(examples) != self.meta["examples"]):
            damage.append(Damage("examples.parquet", "does not match store.json (edited or "
                                 "damaged)"))
            return None
        return examples

    def _read_parts(
        self, damage: list[Damage]
    ) -> tuple[list[tuple[str, int, dict[str, Any]]], dict[str, int], list[str]]:
        """Rows of the readable part files as ``(part, index, row)``, rows per part, and the
        files to move aside (unreadable parts, other Parquet files DuckDB would read)."""
        import pyarrow.parquet as pq

        folder = self.root / "results"
        if not folder.is_dir():
            damage.append(Damage("results", "the folder is missing"))
            return [], {}, []
        expected = [(f.name, f.type) for f in _schema()]
        entries: list[tuple[str, int, dict[str, Any]]] = []
        sizes: dict[str, int] = {}
        move: list[str] = []
        for name in sorted(os.listdir(folder)):
            rel = f"results/{name}"
            if not _PART.match(name):
                if name.endswith(".parquet") and not name.startswith("."):
                    damage.append(Damage(rel, "not a part file igkit writes, yet DuckDB's "
                                         "results/*.parquet reads it"))
                    move.append(rel)
                continue
            try:
                table = pq.read_table(folder / name, page_checksum_verification=True)
                recorded = pq.read_metadata(folder / name).num_rows
                columns = [(f.name, f.type) for f in table.schema]
                rows = table.to_pylist() if columns == expected else None
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
                damage.append(Damage(
                    rel, f"unreadable ({_first_line(exc)}); its rows cannot be read"))
                move.append(rel)
                continue
            if table.num_rows != recorded:
                # The footer is not under the page CRCs, and pyarrow reads as many rows as its
                # row groups say: a flipped bit there hides rows without an error. The file's
                # own row count, recorded apart from them, gives the loss away.
                damage.append(Damage(
                    rel, f"its footer records {recorded} rows but its row groups hold "
                    f"{table.num_rows} (damaged); its rows cannot be trusted"))
                move.append(rel)
                continue
            if rows is None:
                damage.append(Damage(rel, "not a results part (its columns are "
                                     f"{', '.join(n for n, _ in columns) or 'none'})"))
                move.append(rel)
                continue
            sizes[rel] = len(rows)
            entries.extend((rel, index, row) for index, row in enumerate(rows))
        return entries, sizes, move

    def _array_problem(self) -> str | None:
        """Why the attribution array cannot be used, or None."""
        try:
            array = self.array
            shape, chunks, dtype = tuple(array.shape), tuple(array.chunks), array.dtype
        except Exception as exc:  # noqa: BLE001 - zarr raises several types for bad metadata
            self._array = None
            return f"cannot be opened ({_first_line(exc)})"
        if shape != (self.count, *self.shape) or chunks != (1, *self.shape) or dtype != np.float32:
            return (f"its shape {shape}, chunks {chunks} or type {dtype} do not match store.json "
                    f"({(self.count, *self.shape)}, one example per chunk, float32)")
        return None

    def chunk_file(self, example_id: int) -> str:
        """The file of an example's chunk, relative to the store."""
        try:
            key = self.array.metadata.encode_chunk_key((int(example_id), 0, 0, 0))
        except Exception:  # noqa: BLE001 - damaged metadata: the default encoding
            key = f"c/{int(example_id)}/0/0/0"
        return f"attributions.zarr/{key}"

    def _read_chunk(
        self, example_id: int, key: str, expected: int | None
    ) -> tuple[np.ndarray | None, str | None]:
        """The chunk's values, or None and why it cannot be trusted."""
        if expected is None:
            return None, "an ok row without a checksum"
        if not (self.root / key).is_file():
            return None, "the chunk is missing"
        try:
            values = np.asarray(self.array[int(example_id)], dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - a damaged chunk fails to decode
            return None, f"the chunk cannot be decoded ({_first_line(exc)})"
        if checksum(values) != int(expected):
            return None, ("the chunk does not match the checksum in its row (its bytes changed, "
                          "or another chunk was copied over it)")
        return values, None

    # ------------------------------------------------------------------------------ repairing

    def repair(self, examples: Sequence[Example] | None = None) -> StoreRepair:
        """Make the store sound again without losing anything good; call with the run lock held.

        Removes the temporaries killed writers left (only the names igkit's writers and Zarr's
        local store give them, only inside this store), writes ``examples.parquet`` again from
        ``examples`` when it is damaged (the caller has matched them with store.json), moves
        unreadable, foreign and duplicate part files into ``quarantine/`` (never deleted) and
        drops the rows :meth:`check` cannot trust from their part files (rewritten atomically),
        so their examples have no row and are explained again.
        """
        temporaries = self._remove_temporaries()
        rewritten: list[str] = []
        (self.root / "results").mkdir(exist_ok=True)
        if examples is not None and self._checked_examples([]) is None:
            if _examples_digest(examples) != self.meta["examples"]:
                raise StoreError(f"--out {self.root}: this store was made for another list of "
                                 "images; use a new --out or the same source")
            if (self.root / "examples.parquet").exists():
                self._quarantine("examples.parquet")
            _write_parquet(self.root / "examples.parquet", _examples_table(examples))
            rewritten.append("examples.parquet")
        if self._array_problem() is not None:
            self._rewrite_array_metadata()
            rewritten.append("attributions.zarr/zarr.json")
        found = self.check()
        moved = [(rel, self._quarantine(rel)) for rel in found.move]
        for rel, indices in found.drop.items():
            if rel in found.move:
                continue
            self._drop_rows(self.root / rel, indices)
        return StoreRepair(found, moved, found.redo, temporaries, rewritten)

    def verify(self) -> list[int]:
        """:meth:`repair` the store; return the ids of the examples whose rows it dropped."""
        return self.repair().redo

    def _rewrite_array_metadata(self) -> None:
        """Write the attribution array's ``zarr.json`` again (the old one to the quarantine);
        its chunks stay and are checked against their rows' checksums."""
        import zarr

        meta = self.root / "attributions.zarr" / "zarr.json"
        if meta.exists():
            self._quarantine("attributions.zarr/zarr.json")
        meta.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            zarr.create_array(
                store=str(Path(scratch) / "a.zarr"), shape=(self.count, *self.shape),
                chunks=(1, *self.shape), dtype="float32", fill_value=float("nan"),
            )
            text = (Path(scratch) / "a.zarr" / "zarr.json").read_bytes()
        with atomic_open(meta) as out:
            out.write(text)
        self._array = None

    def _drop_rows(self, part: Path, indices: Sequence[int]) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(part, page_checksum_verification=True)
        keep = [i for i in range(table.num_rows) if i not in set(indices)]
        if keep:
            _write_parquet(part, table.take(keep))
        else:
            part.unlink()

    def _quarantine(self, rel: str) -> str:
        """Move a file of the store into ``quarantine/`` (same relative path, a free name)."""
        target = self.root / QUARANTINE / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        free, n = target, 0
        while free.exists():
            n += 1
            free = target.with_name(f"{target.name}.{n}")
        os.replace(self.root / rel, free)
        return free.relative_to(self.root).as_posix()

    def _remove_temporaries(self) -> list[str]:
        """Delete the stale temporaries of killed writers; only safe under the run lock."""
        removed: list[str] = []

        def remove(path: Path) -> None:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path.relative_to(self.root).as_posix())

        for name in os.listdir(self.root):
            match = _ATOMIC_TEMP.match(name)
            if match and match.group("name") in _ROOT_FILES:
                remove(self.root / name)
        results = self.root / "results"
        if results.is_dir():
            for name in os.listdir(results):
                match = _ATOMIC_TEMP.match(name)
                if match and _PART.match(match.group("name")):
                    remove(results / name)
        array = self.root / "attributions.zarr"
        for folder, dirs, files in os.walk(array):
            dirs.sort()
            for name in files:
                match = _ATOMIC_TEMP.match(name)
                if _ZARR_TEMP.match(name) or (match and match.group("name") == "zarr.json"):
                    remove(Path(folder) / name)
        return sorted(removed)

    # ----------------------------------------------------------------------------- reading

    def done_ids(self) -> set[int]:
        """Ids with a committed row (ok or failed)."""
        import pyarrow.parquet as pq

        done: set[int] = set()
        for part in self._parts():
            done.update(int(i) for i in pq.read_table(part, columns=["id"]).column(0).to_pylist())
        return done

    def examples(self) -> list[Example]:
        """The run's examples, in id order."""
        import pyarrow.parquet as pq

        rows = pq.read_table(self.root / "examples.parquet").to_pylist()
        return [Example(r["id"], r["path"], r["label"], r["target"]) for r in rows]

    def results(self) -> pa.Table:
        """The results table (all part files, as they are), sorted by id.

        :meth:`check` is the reader that leaves damaged and duplicated rows out.

        Raises:
            StoreError: If a part file cannot be read.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = []
        for part in self._parts():
            try:
                parts.append(pq.read_table(part))
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
                raise StoreError(f"{part}: unreadable ({_first_line(exc)})") from None
        if not parts:
            return _schema().empty_table()
        return pa.concat_tables(parts).sort_by("id")

    def query(self, sql: str) -> Any:
        """Run DuckDB SQL where the view ``results`` is the results table; returns a relation.

        Example: ``store.query("select status, count(*) from results group by 1").fetchall()``.
        """
        import duckdb

        connection = duckdb.connect()
        parts = [str(p).replace("'", "''") for p in self._parts()]
        if parts:
            files = ", ".join(f"'{p}'" for p in parts)
            connection.execute(f"create view results as select * from read_parquet([{files}])")
        else:
            connection.register("results", _schema().empty_table())
        return connection.sql(sql)

    def attributions(self, example_id: int) -> np.ndarray:
        """One example's ``(H, W, C)`` attributions (NaN where none were committed)."""
        return np.asarray(self.array[int(example_id)], dtype=np.float32)


def _row_problem(
    row: Mapping[str, Any], index: int, count: int, examples: Sequence[Example] | None
) -> str | None:
    """Why a row read from a part cannot be one of this store's results, or None."""
    ident = row.get("id")
    if not isinstance(ident, int) or not 0 <= ident < count:
        return f"row {index} has id {ident!r}, not an example of this store (0..{count - 1})"
    if row.get("status") not in ("ok", "failed"):
        return f"row {index} has status {row.get('status')!r}"
    if examples is not None and row.get("path") != examples[ident].path:
        return f"row {index} is for {row.get('path')!r}, not this example"
    return None


def _row_key(row: Mapping[str, Any]) -> str:
    return json.dumps(dict(row), sort_keys=True, default=str)


def _examples_digest(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.id, e.path, e.label, e.target]).encode("utf-8"))
    return digest.hexdigest()[:16]
