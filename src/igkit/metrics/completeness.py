"""Completeness and stability: do the attributions add up, and do they repeat?

* :func:`completeness`: ``delta = sum(a) - (f(x) - f(x'))`` against a baseline ``x'`` and the
  relative error ``|delta| / |f(x) - f(x')|`` of any attribution map, measured with the model
  (the inputs and baselines share their forward batches). Integrated Gradients claims 0; most
  other methods claim nothing, which this shows.
* :func:`completeness_of`: the same statistics read from an ``igkit.Result`` without a model
  call (stored attributions carry their delta).
* :func:`stability`: explanations of the same inputs from several runs (seeds of a random
  method, or baselines) compared pairwise: their mean similarity and the spread of the maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from igkit.core.baselines import BaselineContext, make_baselines
from igkit.core.completeness import completeness as _completeness
from igkit.core.result import Result
from igkit.metrics._model import check_attributions, open_model, targets_of
from igkit.metrics._results import MetricResult
from igkit.metrics.randomisation import SIMILARITIES

__all__ = [
    "CompletenessResult",
    "StabilityResult",
    "completeness",
    "completeness_of",
    "stability",
]


@dataclass(frozen=True)
class CompletenessResult(MetricResult):
    """Completeness per input.

    Attributes:
        delta: ``(N,)`` ``sum(a) - (f(x) - f(x'))``.
        score: ``(N,)`` ``f(x)`` of the target.
        baseline_score: ``(N,)`` ``f(x')`` of the target.
        values: ``(N,)`` ``|delta| / |f(x) - f(x')|`` (NaN where ``f(x) = f(x')``).
    """

    delta: np.ndarray
    score: np.ndarray
    baseline_score: np.ndarray


def completeness(
    model: object,
    x: object,
    attributions: object,
    *,
    target: object = None,
    baseline: object = "black",
    channel_axis: int | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> CompletenessResult:
    """How far ``attributions`` are from adding up to ``f(x) - f(baseline)``; low is good.

    ``baseline`` takes one of the forms ``igkit.integrated_gradients`` takes (a name such as
    "black" or "blur", a number, an image), built with ``channel_axis``, ``input_range`` and
    ``seed`` as there.
    """
    xa = np.asarray(x)
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (runner, xs, out):
        targets = targets_of(target, out)
        ctx = BaselineContext(xs, channel_axis, input_range, np.random.default_rng(seed))
        base = make_baselines(baseline, ctx)
        if len(base) != 1:
            raise ValueError("completeness takes one baseline; pass a name, number or image")
        n = xs.shape[0]
        fb = runner.outputs(base[0][1].astype(xs.dtype))[np.arange(n), targets]
    fx = out[np.arange(n), targets]
    delta, rel = _completeness(np.asarray(a), fx, fb)
    return CompletenessResult("completeness", rel, False, delta, fx, fb)


def completeness_of(result: Result) -> CompletenessResult:
    """The completeness statistics an ``igkit.Result`` already holds (single-target)."""
    if result.multi_target:
        raise ValueError("completeness_of reads single-target results; split with per_target()")
    def flat(v: object) -> np.ndarray:
        return np.atleast_1d(np.asarray(v, dtype=np.float64))

    return CompletenessResult(
        "completeness", flat(result.relative_error), False, flat(result.delta),
        flat(result.score), flat(result.baseline_score),
    )


@dataclass(frozen=True)
class StabilityResult(MetricResult):
    """Agreement of several explanations of the same inputs.

    Attributes:
        pairwise: ``(N, R(R-1)/2)`` the similarity of each pair of runs.
        spread: ``(N,)`` the norm of the maps' standard deviation over runs divided by the
            norm of their mean (0: identical maps).
        values: ``(N,)`` the mean pairwise similarity; high is good.
    """

    pairwise: np.ndarray
    spread: np.ndarray


def stability(
    maps: Sequence[object], *, similarity: str = "spearman", channel_axis: int | None = None
) -> StabilityResult:
    """Stability across runs: ``maps`` holds ``R >= 2`` explanations ``(N, ...)`` of the same
    inputs (e.g. one per seed of SmoothGrad, or IG per baseline); ``similarity`` a name of
    ``igkit.metrics.randomisation.SIMILARITIES``."""
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"unknown similarity {similarity!r}; choose from {', '.join(SIMILARITIES)}"
        )
    runs = [np.asarray(m, dtype=np.float64) for m in maps]
    if len(runs) < 2 or any(r.shape != runs[0].shape for r in runs):
        raise ValueError(
            "stability needs at least two explanations of the same inputs, all of one shape; "
            f"got shapes {[r.shape for r in runs]}"
        )
    pairs = np.stack(
        [SIMILARITIES[similarity](p, q, channel_axis) for p, q in combinations(runs, 2)], axis=1
    )
    stack = np.stack(runs).reshape(len(runs), runs[0].shape[0], -1)
    mean_norm = np.linalg.norm(stack.mean(axis=0), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.linalg.norm(stack.std(axis=0), axis=1) / mean_norm
    return StabilityResult("stability", pairs.mean(axis=1), True, pairs, spread)
