"""Packs path points of many paths into device-sized batches.

A *path* is one (input, baseline, target) triple; a *row* is one point on it: the path's index,
the interpolation constant alpha and the quadrature weight. Rows of several paths share a batch, so
a call with many small-step images still fills every batch, and the model sees exactly
``ceil(rows / batch_size)`` batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RowBatch", "all_rows", "default_batch_size", "pack_rows"]


@dataclass(frozen=True)
class RowBatch:
    """One batch of path points: parallel arrays, one entry per row."""

    path: np.ndarray  # int64, which path each row lies on
    alpha: np.ndarray  # float64 in [0, 1]
    weight: np.ndarray  # float64 quadrature weight (or relative weight for nested refinement)

    def __len__(self) -> int:
        return int(self.path.shape[0])

    def slice(self, start: int, stop: int) -> RowBatch:
        return RowBatch(self.path[start:stop], self.alpha[start:stop], self.weight[start:stop])

    def padded(self, rows: int) -> RowBatch:
        """This batch grown to ``rows`` rows by repeating its last row with weight 0.

        Compiled steps (tf.function, jax.jit) need a fixed batch shape. The padding leaves the
        sums unchanged, and the padded gradient is one a real row already has (no new NaN/Inf).
        """
        extra = rows - len(self)
        if extra <= 0:
            return self
        return RowBatch(
            np.concatenate([self.path, np.full(extra, self.path[-1])]),
            np.concatenate([self.alpha, np.full(extra, self.alpha[-1])]),
            np.concatenate([self.weight, np.zeros(extra)]),
        )


def all_rows(
    paths: Sequence[int], alphas: Sequence[np.ndarray], weights: Sequence[np.ndarray]
) -> RowBatch:
    """Every (path, alpha, weight) row of a level, path after path, as one ``RowBatch``."""
    if not paths:
        return RowBatch(np.empty(0, np.int64), np.empty(0), np.empty(0))
    return RowBatch(
        np.concatenate(
            [np.full(len(a), p, dtype=np.int64) for p, a in zip(paths, alphas, strict=True)]
        ),
        np.concatenate([np.asarray(a, dtype=np.float64) for a in alphas]),
        np.concatenate([np.asarray(w, dtype=np.float64) for w in weights]),
    )


def pack_rows(
    paths: Sequence[int],
    alphas: Sequence[np.ndarray],
    weights: Sequence[np.ndarray],
    batch_size: int,
) -> Iterator[RowBatch]:
    """Yields batches of at most ``batch_size`` rows covering every (path, alpha, weight) given.

    Args:
        paths: Path indices, one per entry of ``alphas``/``weights``.
        alphas: For each path, the alphas to evaluate.
        weights: For each path, the weights of those alphas.
        batch_size: The most rows per batch (>= 1).

    Rows keep their order: all of the first path, then the next, split across batches wherever a
    batch fills up.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = all_rows(paths, alphas, weights)
    for start in range(0, len(rows), batch_size):
        yield rows.slice(start, start + batch_size)


def default_batch_size(example_size: int, *, budget: int = 2_500_000, cap: int = 256) -> int:
    """A batch size whose inputs hold about ``budget`` numbers (16 for a 224x224x3 image).

    On 2 CPU cores, EfficientNet-Lite0 runs 3-4x slower per point at batch 64 than at 16 (page
    faults in the backward pass), so the CPU default stays small; a GPU backend passes a larger
    budget.
    """
    return int(max(1, min(cap, budget // max(1, int(example_size)))))
