"""The local engine: one process, images decoded ahead of the model in a background thread.

A reader thread decodes and preprocesses the pending examples into a bounded queue while the
main thread runs Integrated Gradients; results are committed to the store every
``commit_every`` examples (see :mod:`igkit.runner.store` for why a kill loses at most the
uncommitted batch and never leaves half a row).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from igkit.runner.engine import DatasetExplainer, Explained
from igkit.runner.store import DatasetStore, Example
from igkit.workflow.progress import Progress

__all__ = ["run_local"]

_DONE = object()


def _prefetch(
    explainer: DatasetExplainer,
    examples: Sequence[Example],
    out: queue.Queue,
    stop: threading.Event,
) -> None:
    """Reader thread: put ``(example, pixels or exception)`` for each example, then _DONE."""
    for example in examples:
        if stop.is_set():
            break
        try:
            item: np.ndarray | Exception = explainer.load(example)
        except Exception as exc:  # noqa: BLE001 - becomes the example's failed row
            item = exc
        while not stop.is_set():
            try:
                out.put((example, item), timeout=0.1)
                break
            except queue.Full:
                continue
    out.put(_DONE)


def run_local(
    explainer: DatasetExplainer,
    store: DatasetStore,
    pending: Sequence[Example],
    *,
    commit_every: int = 16,
    prefetch: int = 8,
    progress: Progress | None = None,
    on_commit: Callable[[list[dict[str, Any]]], None] | None = None,
) -> int:
    """Explain ``pending`` examples in this process, committing every ``commit_every``.

    Returns:
        The number of failed examples.
    """
    items: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()
    reader = threading.Thread(
        target=_prefetch, args=(explainer, pending, items, stop), name="igkit-prefetch", daemon=True
    )
    reader.start()
    failed = 0
    batch: list[Explained] = []

    def commit() -> None:
        nonlocal failed
        rows = [e.row for e in batch]
        arrays = {e.row["id"]: e.attributions for e in batch if e.attributions is not None}
        store.commit(rows, arrays)
        bad = sum(r["status"] != "ok" for r in rows)
        failed += bad
        if progress is not None:
            progress.update(len(rows), failed)
        if on_commit is not None:
            on_commit(rows)
        batch.clear()

    try:
        while True:
            item = items.get()
            if item is _DONE:
                break
            example, pixels = item
            batch.append(explainer.explain(example, pixels))
            if len(batch) >= commit_every:
                commit()
        commit()
    finally:
        stop.set()
        reader.join(timeout=5)
    return failed
