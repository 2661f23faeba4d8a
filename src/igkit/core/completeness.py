"""The completeness check: attributions must add up to the change in the model's output."""

from __future__ import annotations

import numpy as np

__all__ = ["completeness", "l2_norm", "relative_change"]


def completeness(
    attributions: np.ndarray,
    score: np.ndarray,
    baseline_score: np.ndarray,
    unchanged: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per example ``delta = sum(attr) - (F(x) - F(x'))`` and ``|delta| / |F(x) - F(x')|``.

    Sums run in float64 whatever the attributions' dtype. Where F(x) equals F(x') (exactly, or
    to rounding where ``unchanged`` says so, see ``igkit.core.checks.unchanged``) the relative
    error is NaN: there is nothing to be relative to, and neither 0 ("within tolerance") nor
    infinity would be true.
    """
    n = attributions.shape[0]
    total = attributions.reshape(n, -1).astype(np.float64).sum(axis=1)
    gap = np.asarray(score, dtype=np.float64) - np.asarray(baseline_score, dtype=np.float64)
    delta = total - gap
    flat = gap == 0 if unchanged is None else (gap == 0) | np.asarray(unchanged, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(delta) / np.abs(gap)
    rel = np.where(flat, np.nan, rel)
    return delta, rel


def l2_norm(x: np.ndarray) -> float:
    """The L2 norm of all of ``x``, without BLAS.

    ``np.linalg.norm`` of a whole array is a BLAS dot product, and OpenBLAS's threads keep
    spinning for a while after one: the model's next batch (PyTorch, JAX, TensorFlow) then
    shares the cores with them. Between the batches of a call that made a whole IG call on the
    zoo's ResNet-style net up to 3x slower (``benchmarks/RESULTS.md``, model zoo, cost)."""
    x = np.asarray(x)
    return float(np.sqrt(np.square(x, dtype=np.float64).sum()))


def relative_change(new: np.ndarray, old: np.ndarray) -> float:
    """``||new - old|| / ||new||`` (L2), the refinement's estimate of the attribution error."""
    new = np.asarray(new, dtype=np.float64)
    norm = l2_norm(new)
    diff = l2_norm(new - np.asarray(old, dtype=np.float64))
    if norm == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / norm
