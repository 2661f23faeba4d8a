"""The dataset store: attributions in a chunked Zarr array, results in Parquet part files.

Layout of a store folder::

    STORE/
      store.json               settings, their fingerprint, array shape (written once, atomically)
      examples.parquet         the examples of the run: id, path, label, target (written once)
      attributions.zarr/       float32 array (examples, H, W, C), one chunk per example
      results/part-*.parquet   result rows, one file per committed batch (atomic renames)
      run.lock                 held (flock) by the run writing to the store
      summary/                 written by ``igkit summarize``

Commit protocol: an example's attribution chunk is written first, then its result row inside a
part file that appears with ``os.replace``. A reader therefore never sees half a row, and a row
is only visible once its chunk is complete. Each ok row holds the CRC32 of its chunk; on resume
:meth:`DatasetStore.verify` drops rows whose chunk is missing or differs (their examples are
redone) by atomically rewriting the affected part files.

The results table is the union of the part files; DuckDB reads it with
``read_parquet('STORE/results/*.parquet')`` (see :meth:`DatasetStore.query`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.io.writers import atomic_open

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "RESULT_COLUMNS",
    "DatasetStore",
    "Example",
    "StoreError",
    "checksum",
    "fingerprint",
]

STORE_FORMAT = 1
_PART = re.compile(r"^part-(\d{6,})-[0-9a-f]{8}\.parquet$")

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
        pq.write_table(table, handle)


class DatasetStore:
    """A store folder opened for reading or for a run (see the module docstring).

    Use :meth:`create_or_open` for a run and :meth:`open` to read a finished store.
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta
        self._array: Any = None
        self._lock: Any = None

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

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> DatasetStore:
        """Open an existing store.

        Raises:
            StoreError: If ``root`` is not an igkit dataset store.
        """
        root = Path(root)
        meta_path = root / "store.json"
        if not meta_path.is_file():
            raise StoreError(f"{root}: not an igkit dataset store (no store.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{meta_path}: unreadable ({exc})") from exc
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{root}: unsupported store format {meta.get('format')!r}")
        return cls(root, meta)

    @classmethod
    def create_or_open(
        cls,
        root: str | os.PathLike[str],
        settings: Mapping[str, Any],
        examples: Sequence[Example],
        shape: tuple[int, int, int],
    ) -> DatasetStore:
        """Open the store for a run, creating it when new.

        An existing store must have been made with the same settings and the same examples.

        Raises:
            StoreError: If the store was made with other settings or examples.
        """
        import pyarrow as pa
        import zarr

        root = Path(root)
        wanted = fingerprint(settings)
        ids = _examples_digest(examples)
        if (root / "store.json").exists():
            store = cls.open(root)
            if store.meta["fingerprint"] != wanted:
                old = store.meta["settings"]
                changed = sorted(
                    k for k in set(old) | set(settings) if old.get(k) != settings.get(k)
                )
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
            return store
        if root.exists() and any(root.iterdir()):
            raise StoreError(f"--out {root}: exists, is not empty and is not an igkit store")
        # Build the skeleton beside the destination and rename it into place, so a kill during
        # creation leaves no half-made store behind (only a hidden temporary folder).
        root.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
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
        table = pa.table(
            {
                "id": pa.array([e.id for e in examples], pa.int64()),
                "path": pa.array([e.path for e in examples], pa.string()),
                "label": pa.array([e.label for e in examples], pa.string()),
                "target": pa.array([e.target for e in examples], pa.int64()),
            }
        )
        _write_parquet(building / "examples.parquet", table)
        meta = {
            "format": STORE_FORMAT,
            "fingerprint": wanted,
            "settings": dict(settings),
            "shape": list(shape),
            "count": len(examples),
            "examples": ids,
        }
        with atomic_open(building / "store.json") as handle:
            handle.write(json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.replace(building, root)
        return cls(root, meta)

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
        """Hold the store's run lock until the process ends (or :meth:`unlock`).

        Raises:
            StoreError: If another process is writing to the store.
        """
        import fcntl

        handle = open(self.root / "run.lock", "a+b")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"--out {self.root}: another igkit run is writing to this store; wait for it "
                "or use a new --out"
            ) from None
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

    def verify(self) -> list[int]:
        """Drop committed ok rows whose chunk is missing or damaged; return their ids.

        Each affected part file is rewritten atomically without those rows.
        """
        import pyarrow.parquet as pq

        dropped: list[int] = []
        for part in self._parts():
            table = pq.read_table(part)
            keep = []
            for index, row in enumerate(table.to_pylist()):
                if row["status"] == "ok" and not self._chunk_matches(row["id"], row["checksum"]):
                    dropped.append(int(row["id"]))
                else:
                    keep.append(index)
            if len(keep) == table.num_rows:
                continue
            if keep:
                _write_parquet(part, table.take(keep))
            else:
                part.unlink()
        return dropped

    def _chunk_matches(self, example_id: int, expected: int | None) -> bool:
        try:
            values = np.asarray(self.array[int(example_id)])
        except Exception:  # noqa: BLE001 - a truncated chunk fails to decode
            return False
        return expected is not None and checksum(values) == int(expected)

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
        """The results table (all part files), sorted by id."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [pq.read_table(p) for p in self._parts()]
        if not parts:
            return _schema().empty_table()
        return pa.concat_tables(parts).sort_by("id")

    def query(self, sql: str) -> Any:
        """Run DuckDB SQL where the view ``results`` is the results table; returns a relation.

        Example: ``store.query("select status, count(*) from results group by 1").fetchall()``.
        """
        import duckdb

        connection = duckdb.connect()
        pattern = str(self.root / "results" / "*.parquet").replace("'", "''")
        if self._parts():
            connection.execute(
                f"create view results as select * from read_parquet('{pattern}')"
            )
        else:
            connection.register("results", _schema().empty_table())
        return connection.sql(sql)

    def attributions(self, example_id: int) -> np.ndarray:
        """One example's ``(H, W, C)`` attributions (NaN where none were committed)."""
        return np.asarray(self.array[int(example_id)], dtype=np.float32)


def _examples_digest(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.id, e.path, e.label, e.target]).encode("utf-8"))
    return digest.hexdigest()[:16]
