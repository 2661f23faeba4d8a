"""Robustness: infidelity and max-sensitivity (Yeh et al., NeurIPS 2019).

* :func:`infidelity`: ``E_I[(I . a - (f(x) - f(x - I)))^2]``, how far the attribution's linear
  prediction of a perturbation's effect is from the model's. Zero for the gradient of a linear
  model under any perturbation. Perturbations ``I``: Gaussian noise, a random square replaced
  by a value (Yeh's "square removal"), or any function of one input.
* :func:`max_sensitivity`: ``max_{|d|_inf <= r} |a(x + d) - a(x)| / |a(x)|`` over sampled
  ``d``, how much the explanation moves when the input moves a little. It needs the
  explanation method, ``explain(model, x, target) -> attributions``.

Perturbation ``s`` of input ``i`` draws from ``numpy.random.default_rng([seed, i, s])``, so the
numbers do not depend on ``batch_size``; all perturbed images go through the model (or the
explanation method) in packed batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from igkit.metrics._model import check_attributions, open_model, score_rows, targets_of
from igkit.metrics._results import MetricResult

__all__ = ["Explain", "Perturb", "SensitivityResult", "infidelity", "max_sensitivity"]

#: ``perturb(x_i, sample, rng) -> perturbed x_i``: one input's ``sample``-th perturbation.
Perturb = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
#: ``explain(model, x, target) -> attributions`` shaped like ``x`` (a batch).
Explain = Callable[[object, np.ndarray, np.ndarray], object]


def _rng(seed: int, i: object, s: object) -> np.random.Generator:
    """The generator of perturbation ``s`` of input ``i``."""
    return np.random.default_rng([seed, int(i), int(s)])  # type: ignore[call-overload]


def _perturber(
    perturbation: object, scale: float, patch: int, value: float, channel_axis: int | None
) -> Perturb:
    if callable(perturbation):
        return perturbation  # type: ignore[return-value]
    if perturbation == "gaussian":
        def gaussian(xi: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
            del s
            return xi - rng.normal(0.0, scale, size=xi.shape)
        return gaussian
    if perturbation == "square":
        def square(xi: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
            del s
            spatial = [a for a in range(xi.ndim) if channel_axis is None or a != channel_axis - 1]
            index: list[slice] = [slice(None)] * xi.ndim
            for axis in spatial[-2:]:
                size = min(patch, xi.shape[axis])
                start = int(rng.integers(0, xi.shape[axis] - size + 1))
                index[axis] = slice(start, start + size)
            out = xi.copy()
            out[tuple(index)] = value
            return out
        return square
    raise ValueError(
        f"unknown perturbation {perturbation!r}; choose 'gaussian', 'square' or pass a "
        "function perturb(x_i, sample, rng) -> perturbed x_i"
    )


def infidelity(
    model: object,
    x: object,
    attributions: object,
    *,
    target: object = None,
    perturbation: object = "gaussian",
    samples: int = 32,
    scale: float = 0.1,
    patch: int = 4,
    value: float = 0.0,
    channel_axis: int | None = None,
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> MetricResult:
    """Infidelity of ``attributions``: the mean over ``samples`` perturbations of
    ``(sum(a * (x - x_perturbed)) - (f(x) - f(x_perturbed)))^2``; low is good.

    Args:
        model, x, attributions, target, output, batch_size: As for ``igkit.metrics.deletion``.
        perturbation: "gaussian" (``x - N(0, scale^2)`` per element), "square" (a random
            ``patch`` x ``patch`` square of the last two spatial axes set to ``value``, all
            channels), or ``perturb(x_i, sample, rng) -> perturbed x_i``.
        samples: Perturbations per input.
        channel_axis: Axis of ``x`` holding channels (not a spatial axis for "square").
        seed: Seeds the perturbations.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    perturb = _perturber(perturbation, scale, patch, value, channel_axis)
    xa = np.asarray(x)
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (runner, xs, out):
        targets = targets_of(target, out)
        fx = out[np.arange(xs.shape[0]), targets]
        explained = np.zeros(xs.shape[0] * samples)

        def build(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            i, s = rows // samples, rows % samples
            images = np.stack([
                np.asarray(perturb(xs[ii], int(ss), _rng(seed, ii, ss)), dtype=np.float64)
                for ii, ss in zip(i, s, strict=True)
            ])
            explained[rows] = ((xs[i] - images) * a[i]).reshape(rows.shape[0], -1).sum(axis=1)
            return images.astype(xs.dtype), targets[i]

        scores = score_rows(runner, xs.shape[0] * samples, build)
    change = fx.repeat(samples) - scores
    err = ((explained - change) ** 2).reshape(-1, samples).mean(axis=1)
    return MetricResult("infidelity", err, False)


@dataclass(frozen=True)
class SensitivityResult(MetricResult):
    """Max-sensitivity per input.

    Attributes:
        sensitivities: ``(N, samples)`` the change of the explanation at each perturbation
            (relative to ``|a(x)|`` when ``relative``).
        values: ``(N,)`` the largest of them.
    """

    sensitivities: np.ndarray


def max_sensitivity(
    model: object,
    x: object,
    attributions: object,
    explain: Explain,
    *,
    target: object = None,
    radius: float = 0.02,
    samples: int = 10,
    relative: bool = True,
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> SensitivityResult:
    """Max-sensitivity: the largest Frobenius norm of ``explain`` at ``x + d`` minus
    ``attributions`` over ``samples`` draws of ``d ~ U(-radius, radius)`` per element, divided
    by the norm of ``attributions`` when ``relative``; low is good.

    ``explain(model, x_batch, targets)`` is called on batches of up to ``batch_size`` perturbed
    inputs, each with its input's target (resolved once, at ``x``).
    """
    if not callable(explain):
        raise TypeError("explain must be a function explain(model, x, target) -> attributions")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    xa = np.asarray(x)
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (runner, xs, out):
        targets = targets_of(target, out)
        bs = runner.batch_size
    n = xs.shape[0]
    flat = a.reshape(n, -1)
    diffs = np.empty(n * samples)
    for start in range(0, n * samples, bs):
        rows = np.arange(start, min(n * samples, start + bs))
        i, s = rows // samples, rows % samples
        noise = np.stack([
            _rng(seed, ii, ss).uniform(-radius, radius, xs.shape[1:])
            for ii, ss in zip(i, s, strict=True)
        ])
        moved = np.asarray(explain(model, (xs[i] + noise).astype(xs.dtype), targets[i]),
                           dtype=np.float64)
        diffs[rows] = np.linalg.norm(moved.reshape(rows.shape[0], -1) - flat[i], axis=1)
    sens = diffs.reshape(n, samples)
    if relative:
        norm = np.linalg.norm(flat, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens = np.where(norm > 0, sens / np.where(norm > 0, norm, 1.0), np.nan)
    return SensitivityResult("max_sensitivity", sens.max(axis=1), False, sens)
