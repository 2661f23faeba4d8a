"""SHAP-style methods: expected gradients (GradientSHAP), DeepLift and DeepLiftSHAP.

* ``expected_gradients`` (Erion et al. 2021; Captum's GradientShap): for each of ``samples``
  draws, a reference ``x'`` from the baseline distribution, ``alpha ~ U(0, 1)`` and (with
  ``stdev > 0``) the input with Gaussian noise ``x~ = x + N(0, sigma^2)``; the attribution is the
  mean over draws of ``(x~ - x') * grad F(x' + alpha (x~ - x'))``. Its expectation is IG averaged
  over the references (exactly so without noise), so it converges to IG with one reference as
  ``1 / sqrt(samples)``; ``delta`` and ``relative_error`` measure the Monte Carlo error against
  the drawn references' mean score. All draws of all explanations are one batched call.
* ``deeplift`` (Shrikumar et al. 2017, the Rescale rule): on a network of linear maps and
  elementwise activations, Rescale's multiplier of a unit is its secant slope
  ``(f(z) - f(z')) / (z - z')`` between the baseline's and the input's pre-activations, chained
  through the linear maps: that is one secant piece over the whole path, i.e. Integrated
  Gradients with ``method="secant"`` and ``steps=1``, complete to rounding. It runs exactly
  that (``igkit.core.engine.run_integrated_gradients``), so it needs a session declaring
  ``interval_accumulation``; sessions without it are refused by name with the fix. On such
  nets it equals Captum's DeepLift (Rescale) to float32 rounding. Max-pooling follows the
  secant's crossing-point rule, not Captum's max-pool multiplier: both are complete, but the
  attributions differ.
* ``deeplift_shap`` (Lundberg and Lee 2017; Captum's DeepLiftShap): DeepLift against every
  reference of the distribution (one secant piece each, all in one run), averaged.

``baseline=`` for ``expected_gradients`` and ``deeplift_shap`` is the distribution of references:
an array ``(K, *example_shape)`` holds K references used for every input (Captum's
convention; note that an array of the batch's shape is K = N references here, not one baseline
per input), one example's shape is one reference, and a name or a list (names, numbers, arrays)
gives each input its references as ``baseline=`` does for Integrated Gradients. ``deeplift``
takes ``baseline=`` as Integrated Gradients does (several are averaged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from igkit.backends.base import capabilities_of
from igkit.core.engine import run_integrated_gradients
from igkit.core.result import Result
from igkit.methods.context import MethodContext
from igkit.methods.noise import noisy_copies
from igkit.methods.options import non_negative_float, positive_float, positive_int
from igkit.methods.registry import MethodSpec, Option, register_method

__all__ = ["references"]


def _as_array(item: object) -> np.ndarray | None:
    """``item`` as numpy when it is an array or tensor (torch, TF, JAX), else None."""
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, (str, bytes, int, float, list, tuple, np.number)) or item is None:
        return None
    detach = getattr(item, "detach", None)
    if callable(detach):
        item = detach().cpu()
    if hasattr(item, "__array__") or hasattr(item, "numpy"):
        return np.asarray(item)
    return None


def references(ctx: MethodContext) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The reference distribution of ``baseline=``: a table ``(T, *example_shape)``, the rows
    each input draws from ``(N, B)`` (indices into the table) and the references' labels."""
    x = ctx.x
    n, example = x.shape[0], x.shape[1:]
    array = _as_array(ctx.baseline)
    if array is not None:
        if array.shape == example:
            array = array[None]
        if array.ndim != x.ndim or array.shape[1:] != example or array.shape[0] == 0:
            raise ValueError(
                f"baseline of shape {array.shape} is not a distribution of references: pass "
                f"an array of shape (K, *{example}) (K references drawn for every input), one "
                f"reference of shape {example}, or a name such as 'black'"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("baseline contains NaN or Inf; replace them with finite values")
        k = array.shape[0]
        return (np.asarray(array, dtype=x.dtype), np.tile(np.arange(k), (n, 1)),
                (f"distribution of {k}",))
    named = ctx.baselines()
    b = len(named)
    table = np.stack([arr for _, arr in named], axis=1).reshape(n * b, *example)
    return table, np.arange(n * b).reshape(n, b), tuple(label for label, _ in named)


# -- expected gradients ----------------------------------------------------------------------


def _expected_gradients(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    samples = options["samples"]
    table, rows_of, labels = references(ctx)
    x = ctx.x
    n, r = x.shape[0], ctx.n_pairs
    # Draws per input (its classes share them), in a fixed order: references, alphas, noise.
    pick = ctx.rng.integers(0, rows_of.shape[1], size=(n, samples))
    alpha = ctx.rng.random((n, samples))
    ref_rows = rows_of[np.arange(n)[:, None], pick]
    if options["stdev"] > 0:
        low, high = ctx.input_range
        ends = noisy_copies(ctx.rng, x, samples, options["stdev"] * (high - low))
    else:
        ends = np.broadcast_to(x[:, None], (n, samples, *x.shape[1:]))
    refs = table[ref_rows]
    diff = ends - refs  # (N, S, ...), in the inputs' dtype
    shape = (n, samples) + (1,) * (x.ndim - 1)
    points = (refs + alpha.reshape(shape).astype(x.dtype) * diff).astype(x.dtype, copy=False)
    inputs = ctx.plan.pair_input
    flat = (r * samples, *x.shape[1:])
    grads = ctx.gradients(points[inputs].reshape(flat), np.repeat(np.arange(r), samples))
    terms = diff[inputs].astype(np.float64) * grads.reshape(r, samples, *x.shape[1:])
    attr = terms.mean(axis=1)
    # F(x') of the drawn references: the attributions add up to F(x) minus their mean (in
    # expectation over alpha, without noise).
    ref_scores = ctx.outputs_at(table)[:, ctx.plan.pair_target]  # (T, R)
    base = ref_scores[ref_rows[inputs], np.arange(r)[:, None]].mean(axis=1)
    first = table[rows_of[:, 0]]
    return ctx.result(attr, evaluations=samples, baseline_score=base, complete=True,
                      tol=options["tol"], baselines=labels, baseline_inputs=first,
                      requested_steps=samples)


register_method(MethodSpec(
    name="expected_gradients",
    answers="each feature's share of F(x) - E[F(x')] over a distribution of references "
    "(IG with random references and alphas; GradientSHAP)",
    cost="samples gradients (+ 1 forward pass per reference)",
    run=_expected_gradients,
    options=(
        Option("samples", 50, "random (reference, alpha) draws per explanation", positive_int),
        Option("stdev", 0.0, "noise added to the input, as a fraction of the input range",
               non_negative_float),
        Option("tol", 0.05, "relative completeness tolerance of the Monte Carlo estimate",
               positive_float),
    ),
    uses_baseline=True,
    complete=True,
    stochastic=True,
))


# -- DeepLift and DeepLiftSHAP -----------------------------------------------------------------


def _refuse_without_secant(ctx: MethodContext, name: str) -> None:
    if not capabilities_of(ctx.session).interval_accumulation:
        title = getattr(ctx.backend, "title", None) or getattr(ctx.backend, "name", "backend")
        raise ValueError(
            f"method={name!r} is DeepLift's Rescale rule, computed exactly as one secant piece "
            f"of Integrated Gradients (method='secant', steps=1), which needs a session "
            f"declaring interval_accumulation; the {title} session does not: explain a "
            "PyTorch model (or a backend with secant support), or use "
            "method='integrated_gradients' or 'expected_gradients', which need plain "
            "gradients only"
        )


def _one_piece(
    ctx: MethodContext, baselines: list[tuple[str, np.ndarray]], tol: float,
    labels: tuple[str, ...],
) -> Result:
    """DeepLift of every explanation against each of ``baselines``, averaged: one secant
    piece per (explanation, baseline), all in one run."""
    ig = run_integrated_gradients(
        ctx.session, ctx.x, baselines, target=ctx.target_spec(), method="secant", steps=1,
        tol=tol, batch_size=ctx.batch_size,
    )

    def pairs(a: np.ndarray) -> np.ndarray:
        return a if ig.target_mask is None else a[ig.target_mask]

    return ctx.result(
        pairs(ig.attributions), evaluations=pairs(ig.evaluations), steps=1,
        baseline_score=pairs(ig.baseline_score), complete=True, tol=tol, baselines=labels,
        baseline_inputs=baselines[0][1], method="secant", requested_steps=1,
    )


def _deeplift(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    _refuse_without_secant(ctx, "deeplift")
    named = ctx.baselines()
    return _one_piece(ctx, named, options["tol"], tuple(label for label, _ in named))


def _deeplift_shap(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    _refuse_without_secant(ctx, "deeplift_shap")
    table, rows_of, labels = references(ctx)
    baselines = [(f"reference {b}", table[rows_of[:, b]]) for b in range(rows_of.shape[1])]
    return _one_piece(ctx, baselines, options["tol"], labels)


_TOL = Option("tol", 0.01, "relative completeness tolerance (exact nets meet it to rounding)",
              positive_float)

register_method(MethodSpec(
    name="deeplift",
    answers="each feature's share of F(x) - F(x') by DeepLift's Rescale rule (one secant "
    "piece of IG; exact completeness)",
    cost="1 secant gradient per baseline",
    run=_deeplift,
    options=(_TOL,),
    uses_baseline=True,
    complete=True,
))

register_method(MethodSpec(
    name="deeplift_shap",
    answers="each feature's share of F(x) - E[F(x')]: DeepLift averaged over a distribution "
    "of references",
    cost="1 secant gradient per reference",
    run=_deeplift_shap,
    options=(_TOL,),
    uses_baseline=True,
    complete=True,
))
