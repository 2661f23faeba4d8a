"""What both engines share: the sources, and explaining one example at a dataset's pace.

A dataset run is the explanation workflow (:mod:`igkit.workflow`) one example at a time:
:class:`DatasetExplainer` holds a :class:`~igkit.workflow.Explainer` (the model loaded once)
and turns one :class:`~igkit.runner.store.Example` into a result row and its HWC attributions;
any failure of that example (a corrupt image, a model error) becomes a failed row instead. The
run's :class:`~igkit.workflow.ExplainSettings` is plain, picklable data: Ray ships it to its
actors, and its fingerprint is the store's identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igkit.runner.store import Example
from igkit.workflow.explainer import Explainer
from igkit.workflow.inputs import ImageReader, Input
from igkit.workflow.settings import ExplainSettings

__all__ = [
    "DatasetExplainer",
    "Explained",
    "SourceError",
    "failed_row",
    "file_digest",
    "read_source",
]

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


class SourceError(ValueError):
    """A SOURCE that cannot be read: the message names the file and the problem."""


def file_digest(spec: str) -> str:
    """SHA-256 (16 hex digits) of a model file or folder named by ``spec``; "" otherwise."""
    path = Path(spec).expanduser()
    if not path.exists():
        return ""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------ sources


def read_source(source: str | os.PathLike[str]) -> list[Example]:
    """The examples of SOURCE: an image folder, or a CSV / Parquet manifest.

    A manifest has a ``path`` column (relative paths are relative to the manifest's folder) and
    optional ``label`` (the example's class, any text) and ``target`` (a class index to
    explain) columns. Paths become absolute, so a store can be resumed from any folder.

    Raises:
        SourceError: For a missing source, an empty folder or a malformed manifest.
    """
    from igkit.io.images import ImageError, list_images

    path = Path(source)
    if not path.exists():
        raise SourceError(f"{path}: no such folder or manifest")
    if path.is_dir():
        try:
            files = list_images([path])
        except ImageError as exc:
            raise SourceError(str(exc)) from None
        return [Example(i, str(f.resolve())) for i, f in enumerate(files)]
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise SourceError(
            f"{path}: SOURCE must be an image folder or a .csv/.parquet manifest with a 'path' "
            "column"
        )
    rows = _read_manifest(path, suffix)
    examples = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 1}"
        raw_path = row.get("path")
        if raw_path is None or str(raw_path).strip() == "":
            raise SourceError(f"{where}: empty path")
        file = Path(str(raw_path).strip())
        if not file.is_absolute():
            file = path.parent / file
        label = row.get("label")
        label = None if label is None or str(label).strip() == "" else str(label).strip()
        target = row.get("target")
        if target is not None and str(target).strip() != "":
            try:
                target_value: int | None = int(str(target).strip())
            except ValueError:
                raise SourceError(f"{where}: target {target!r} is not a class index") from None
        else:
            target_value = None
        examples.append(Example(i, str(file.resolve()), label, target_value))
    if not examples:
        raise SourceError(f"{path}: the manifest lists no images")
    return examples


def _read_manifest(path: Path, suffix: str) -> list[dict[str, Any]]:
    if suffix == ".csv":
        import csv

        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                columns = [c.strip() for c in reader.fieldnames or []]
                rows = [
                    {k.strip(): v for k, v in row.items() if k is not None} for row in reader
                ]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: cannot read the CSV manifest ({exc})") from None
    else:
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        except ImportError:
            raise SourceError(
                "reading a Parquet manifest needs pyarrow: pip install 'igkit[dataset]'"
            ) from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise SourceError(f"{path}: cannot read the Parquet manifest ({exc})") from None
        columns = list(table.column_names)
        rows = table.to_pylist()
    if "path" not in columns:
        raise SourceError(
            f"{path}: the manifest has no 'path' column (columns: {', '.join(columns) or 'none'})"
        )
    return rows


# ---------------------------------------------------------------------------------- explaining


@dataclass(frozen=True)
class Explained:
    """One example done: its result row and, for ok rows, its ``(H, W, C)`` attributions."""

    row: dict[str, Any]
    attributions: np.ndarray | None


def failed_row(
    example: Example, settings_json: str, message: str, seconds: float
) -> dict[str, Any]:
    """A result row for an example that could not be explained."""
    return {
        "id": example.id,
        "path": example.path,
        "label": example.label,
        "target": None,
        "target_label": None,
        "score": None,
        "baseline_score": None,
        "delta": None,
        "relative_error": None,
        "converged": None,
        "steps": None,
        "evaluations": None,
        "seconds": seconds,
        "status": "failed",
        "error": " ".join(message.split()),
        "checksum": None,
        "settings": settings_json,
    }


class DatasetExplainer:
    """The workflow's explainer at a dataset's pace, in either engine.

    Args:
        settings: The run's settings (one target per example: ``targets`` holds one spec).
        model_digest: Identifies a model file's contents, for the rows' settings.
        threads: PyTorch intra-op threads for this process (None: torch's default). On a busy
            machine one thread per process is often far faster for small models.
        device: Where to run a PyTorch model, e.g. "cuda" (None: where it was loaded, the CPU).

    Raises:
        igkit.workflow.InputError: If the model cannot be loaded or does not fit the settings.
    """

    def __init__(
        self,
        settings: ExplainSettings,
        model_digest: str = "",
        threads: int | None = None,
        device: str | None = None,
    ) -> None:
        self.settings = settings
        self.workflow = Explainer(settings, threads=threads, device=device)
        # The rows record what was used, the model's defaults resolved.
        used = settings.fingerprint(model_digest)
        used.update(
            output=self.workflow.output,
            preprocess=self.workflow.preprocess,
            input_size=list(self.workflow.model.input_size),
        )
        self.settings_json = json.dumps(used, sort_keys=True)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the model inputs and of each example's attributions."""
        return self.workflow.shape

    @staticmethod
    def input(example: Example) -> Input:
        """The workflow's view of one dataset example."""
        return Input(
            name=str(example.id), where=example.path, read=ImageReader(example.path),
            sources=(example.path,), id=example.id, label=example.label, target=example.target,
        )

    def load(self, example: Example) -> np.ndarray:
        """Decode and preprocess one example's image (``(H, W, C)`` float32 in [0, 1]).

        Raises:
            igkit.io.images.ImageError: For a missing or corrupt image.
        """
        return self.workflow.read(self.input(example))

    def explain(self, example: Example, pixels: np.ndarray | Exception) -> Explained:
        """Explain one example whose image was loaded into ``pixels`` (or failed to load)."""
        started = time.perf_counter()
        if isinstance(pixels, Exception):
            return self._failed(example, pixels, started)
        try:
            return self._explain(example, pixels, started)
        except Exception as exc:  # noqa: BLE001 - one bad example must not end the run
            return self._failed(example, exc, started)

    def explain_path(self, example: Example) -> Explained:
        """Load and explain one example (load errors become a failed row)."""
        try:
            pixels: np.ndarray | Exception = self.load(example)
        except Exception as exc:  # noqa: BLE001 - reported in the row
            pixels = exc
        return self.explain(example, pixels)

    def _failed(self, example: Example, exc: BaseException, started: float) -> Explained:
        from igkit.io.images import ImageError

        message = str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        return Explained(failed_row(example, self.settings_json, message, seconds), None)

    def _explain(self, example: Example, pixels: np.ndarray, started: float) -> Explained:
        prediction = self.workflow.predict(self.input(example), pixels)
        done = self.workflow.explain(prediction).targets[0]
        row = {
            "id": example.id,
            "path": example.path,
            "label": example.label,
            **done.result.numbers(0),
            "target": done.target,
            "target_label": done.label,
            "seconds": time.perf_counter() - started,
            "status": "ok",
            "error": None,
            "checksum": None,
            "settings": self.settings_json,
        }
        return Explained(row, done.attributions)
