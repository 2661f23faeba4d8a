"""Synthetic images, attributions, Results and path traces for the tests of igkit.viz."""

from __future__ import annotations

import dataclasses

import numpy as np

from igkit.core.result import PathTrace, Result

SIZE = 32


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    img = np.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * yy, 0.8 - 0.4 * yy], axis=-1)
    img[(xx - 0.4) ** 2 + (yy - 0.4) ** 2 < 0.04] = (0.9, 0.8, 0.2)
    return img


def _blob(cx: float, cy: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def _attributions() -> np.ndarray:
    field = _blob(0.4, 0.4, 0.12) - 0.5 * _blob(0.8, 0.75, 0.08)
    return 0.01 * np.stack([field, 0.5 * field, 0.2 * field], axis=-1)


def _result(
    attr: np.ndarray, *, converged: bool = True, method: str = "trapezoid", **fields: object
) -> Result:
    """A single-input Result; ``fields`` set or override fields the Result class has."""
    values: dict[str, object] = {
        "attributions": attr,
        "delta": np.array([0.001]),
        "relative_error": np.array([0.004 if converged else 0.2]),
        "score": np.array([0.93]),
        "baseline_score": np.array([0.01]),
        "target": np.array([7]),
        "steps": np.array([32]),
        "method": method,
        "tol": 0.01,
        "converged": np.array([converged]),
        "evaluations": np.array([32]),
        **fields,
    }
    names = {f.name for f in dataclasses.fields(Result)}
    return Result(**{k: v for k, v in values.items() if k in names})


def _trace() -> PathTrace:
    alphas = np.linspace(0.0, 1.0, 21)
    p = 1.0 / (1.0 + np.exp(-10.0 * (alphas - 0.3)))
    return PathTrace([alphas], [p], [10.0 * p * (1.0 - p)])
