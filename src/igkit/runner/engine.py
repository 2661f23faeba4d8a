"""What both engines share: the run's settings, the sources, and explaining one example.

:class:`RunSettings` is plain data (picklable, JSON-able): Ray ships it to its actors, and its
:meth:`RunSettings.fingerprint_fields` go into the store. :class:`Explainer` loads the model once
and turns one :class:`~igkit.runner.store.Example` into a result row and its HWC attributions;
any failure of that example (a corrupt image, a model error) becomes a failed row instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igkit.runner.store import Example

__all__ = [
    "Explained",
    "Explainer",
    "RunSettings",
    "SourceError",
    "failed_row",
    "read_source",
]

MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


class SourceError(ValueError):
    """A SOURCE that cannot be read: the message names the file and the problem."""


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines the numbers of a run (and nothing that does not).

    Attributes mirror the ``igkit explain`` options. ``target`` is "top1", a class index as
    text, or a class name; a manifest's ``target`` column overrides it per example.
    ``model_digest`` identifies a model file's contents ("" for named models).
    """

    model: str
    weights: str | None
    trust: bool
    model_digest: str
    input_size: tuple[int, int] | None
    preprocess: str | None
    target: str
    steps: int | str
    method: str
    tol: float
    max_steps: int
    batch_size: int
    baseline: tuple[str | float, ...]
    output: str | None
    seed: int

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings as JSON-able values, as stored (``trust`` is left out: it is a
        permission, not a setting)."""
        fields = dataclasses.asdict(self)
        fields.pop("trust")
        fields["input_size"] = list(self.input_size) if self.input_size else None
        fields["baseline"] = list(self.baseline)
        return fields

    def to_json(self) -> str:
        """The settings as canonical JSON (the ``settings`` column of each row)."""
        return json.dumps(self.fingerprint_fields(), sort_keys=True)


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
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
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


class Explainer:
    """The model loaded once, explaining one example at a time (in either engine).

    Args:
        settings: The run's settings.
        threads: PyTorch intra-op threads for this process (None: torch's default). On a busy
            machine one thread per process is often far faster for small models.
        device: Where to run a PyTorch model, e.g. "cuda" (None: where it was loaded, the CPU).

    Raises:
        igkit.models.loaders.ModelLoadError: If the model cannot be loaded.
    """

    def __init__(
        self, settings: RunSettings, threads: int | None = None, device: str | None = None
    ) -> None:
        from igkit.models.loaders import load_model
        from igkit.models.spec import guess_labels

        self.settings = settings
        model = load_model(settings.model, trust=settings.trust, weights=settings.weights)
        if threads is not None and model.framework == "torch":
            import torch

            torch.set_num_threads(threads)
        if device is not None and model.framework == "torch":
            model.model.to(device)  # type: ignore[attr-defined]
        if settings.input_size is not None:
            model = dataclasses.replace(model, input_size=tuple(settings.input_size))
        self.model = model
        self.mode = settings.preprocess or model.preprocess
        self.output = settings.output or model.default_output
        self.settings_json = settings.to_json()
        self._classes: int | None = None
        self._labels = model.labels
        self._guess = guess_labels

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, 3)`` of the model inputs and of each example's attributions."""
        height, width = self.model.input_size
        return int(height), int(width), 3

    def classes(self) -> int:
        """Number of model outputs, found by running the model on one black image."""
        if self._classes is None:
            zeros = np.zeros((1, *self.shape), dtype=np.float32)
            self._classes = int(self.model.predict(zeros).shape[1])
            if self._labels is None:
                self._labels = self._guess(self._classes)
            if self._labels is not None and len(self._labels) != self._classes:
                self._labels = None
        return self._classes

    def label(self, index: int) -> str:
        """The name of class ``index`` ("class N" when the model has none)."""
        self.classes()
        return self._labels[index] if self._labels is not None else f"class {index}"

    def fixed_target(self) -> int | None:
        """The class index ``--target`` names, None for "top1".

        Raises:
            ValueError: If the target is out of range or an unknown class name.
        """
        from igkit.models.spec import find_label

        text = self.settings.target
        if text.lower() == "top1":
            return None
        classes = self.classes()
        try:
            index = int(text)
        except ValueError:
            if self._labels is None:
                raise ValueError(
                    f"--target {text!r}: {self.model.name} has no class names; pass a class index"
                ) from None
            try:
                return find_label(self._labels, text)
            except KeyError:
                raise ValueError(f"--target {text!r}: not a class of {self.model.name}") from None
        if not 0 <= index < classes:
            raise ValueError(f"--target {text}: out of range, classes are 0..{classes - 1}")
        return index

    def load(self, example: Example) -> np.ndarray:
        """Decode and preprocess one example's image (``(H, W, 3)`` float32 in [0, 1]).

        Raises:
            igkit.io.images.ImageError: For a missing or corrupt image.
        """
        from igkit.io.images import load_image, preprocess

        return preprocess(load_image(example.path), self.model.input_size, self.mode)  # type: ignore[arg-type]

    def explain(self, example: Example, pixels: np.ndarray | Exception) -> Explained:
        """IG for one example whose image was loaded into ``pixels`` (or failed to load)."""
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

        model, s = self.model, self.settings
        classes = self.classes()
        target = example.target if example.target is not None else self.fixed_target()
        if target is None:
            target = int(np.argmax(model.predict(pixels[None], batch_size=1)[0]))
        if not 0 <= target < classes:
            raise ValueError(f"target {target} out of range, classes are 0..{classes - 1}")
        x = model.to_model_layout(pixels[None])
        # The row's relative_error and converged columns report convergence.
        result = model.explain(x, target, s, self.output)
        attributions = np.ascontiguousarray(model.to_hwc(result.attributions[0]), np.float32)
        row = {
            "id": example.id,
            "path": example.path,
            "label": example.label,
            **result.numbers(0),
            "target": target,
            "target_label": self.label(target),
            "seconds": time.perf_counter() - started,
            "status": "ok",
            "error": None,
            "checksum": None,
            "settings": self.settings_json,
        }
        return Explained(row, attributions)
