"""Checks of the numbers a call produces, so that none of them is silently wrong.

The engine already computes F(x) and F(x') (and, where the backend declares ``raw_outputs``,
the model's own outputs before ``output=``'s transform) before any path is evaluated; the
checks here read only those, so they cost no model call:

* a model that already returns probabilities, explained with ``output="softmax"`` or
  ``"sigmoid"`` (a transform of probabilities, not the model's decision), is refused when the
  signal is reliable (every row a distribution) and warned about when it is only suggestive
  (every value in [0, 1]: logits can fall there by chance);
* NaN or Inf outputs are refused, naming the input or baseline;
* F(x) = F(x') (to rounding) leaves nothing to attribute: completeness has nothing to be
  relative to, which is said in words (:class:`NothingToAttributeWarning`).

NumPy only, like the rest of ``core``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import numpy as np

if TYPE_CHECKING:
    from igkit.backends.base import Taken

__all__ = [
    "NothingToAttributeWarning",
    "OutputTransformWarning",
    "check_finite_gradients",
    "check_finite_outputs",
    "check_output_transform",
    "distribution_rows",
    "format_alpha",
    "refuse_non_finite",
    "rounding_eps",
    "unchanged",
]


class NothingToAttributeWarning(RuntimeWarning):
    """F(x) = F(x') (to rounding) for some explanations: the explained output does not change
    from the baseline to the input (a constant or zero-weight model, a saturated output, or an
    input equal to its baseline), so the attributions must add up to zero and completeness
    cannot be judged. Those explanations have ``relative_error`` NaN and ``converged`` False;
    ``Result.nothing_to_attribute`` marks them."""


class OutputTransformWarning(RuntimeWarning):
    """``output="softmax"`` or ``"sigmoid"`` on a model whose outputs all lie in [0, 1]: it may
    already return probabilities, and the transform would then explain a transform of them.
    Rows that sum to 1 are refused outright; values in [0, 1] alone can be logits by chance,
    so they are only warned about."""


def rounding_eps(dtype: np.dtype | type) -> float:
    """The machine epsilon of a floating compute dtype (float32 for anything else)."""
    dt = np.dtype(dtype)
    return float(np.finfo(dt if dt.kind == "f" else np.float32).eps)


def unchanged(score: np.ndarray, baseline_score: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Where F(x) = F(x') to rounding: ``|F(x) - F(x')| <= 8 eps max(|F(x)|, |F(x')|)`` in the
    compute dtype (both exactly 0 included). A change that small is the rounding of the two
    forward passes, not something the attributions could be checked against."""
    score = np.asarray(score, dtype=np.float64)
    baseline_score = np.asarray(baseline_score, dtype=np.float64)
    scale = np.maximum(np.abs(score), np.abs(baseline_score))
    return np.abs(score - baseline_score) <= 8 * rounding_eps(dtype) * scale


def distribution_rows(raw: np.ndarray, dtype: np.dtype | type) -> bool:
    """Whether every row of ``raw`` (``(rows, classes)``, two classes or more) is a probability
    distribution: non-negative and summing to 1 within the rounding of a sum of ``classes``
    values in ``dtype`` (at least 1e-6, at most 1e-2 for half precision)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] < 2 or raw.shape[0] == 0:
        return False
    atol = min(1e-2, max(1e-6, raw.shape[1] * rounding_eps(dtype)))
    return bool(np.all(raw >= 0.0) and np.all(np.abs(raw.sum(axis=1) - 1.0) <= atol))


def check_output_transform(
    output: object,
    transformed: np.ndarray,
    raw: np.ndarray | None,
    dtype: np.dtype | type,
    where: str = "the inputs and baselines",
    stacklevel: int = 4,
) -> None:
    """Refuses (or warns about) a named output transform that cannot be what was meant.

    Args:
        output: The ``output=`` argument; only "softmax" and "sigmoid" are checked.
        transformed: The outputs after the transform, ``(rows, classes)``.
        raw: The model's own outputs at the same rows, or None when the backend does not
            hand them back (then only the single-class softmax is checked).
        dtype: The compute dtype (for the rounding of row sums).
        where: What the rows are, for the messages.
        stacklevel: Of the warning, counted from this function (4: the engine's caller's
            caller, i.e. whoever called ``igkit.integrated_gradients``).

    Raises:
        ValueError: softmax over a single output (always 1); softmax or sigmoid over rows that
            are already probability distributions.

    Warns:
        OutputTransformWarning: softmax or sigmoid over outputs that all lie in [0, 1] but
            whose rows do not sum to 1.
    """
    if output not in ("softmax", "sigmoid"):
        return
    if output == "softmax" and transformed.ndim == 2 and transformed.shape[1] == 1:
        raise ValueError(
            "output='softmax' over a model with a single output is 1 everywhere, so there "
            "would be nothing to explain; use output='sigmoid' for a one-logit binary "
            "classifier, or output='raw'"
        )
    if raw is None or raw.size == 0:
        return
    if distribution_rows(raw, dtype):
        raise ValueError(
            f"the model's outputs are already probabilities: on {where} every row is "
            f"non-negative and sums to 1 (the model ends in a softmax), so output={output!r} "
            f"would explain {output}(probabilities), not the model's decision. Pass "
            "output='raw' to explain the model's own probabilities (or remove its final "
            "softmax to explain logits)"
        )
    if np.all((raw >= 0.0) & (raw <= 1.0)):
        import warnings

        lo, hi = float(raw.min()), float(raw.max())
        squeezed = "[0.5, 0.73]" if output == "sigmoid" else "a near-uniform distribution"
        warnings.warn(
            f"every output of the model lies in [0, 1] on {where} ({lo:.3g} to {hi:.3g}): if "
            f"they are probabilities (a final sigmoid or softmax), output={output!r} explains "
            f"{output}(probabilities), squeezed into {squeezed}; pass output='raw' to explain "
            "the model's own probabilities. If they are logits that happen to lie in [0, 1], "
            "ignore this warning (igkit.OutputTransformWarning)",
            OutputTransformWarning,
            stacklevel=stacklevel,
        )


def check_finite_outputs(outputs: np.ndarray, rows: Sequence[str]) -> None:
    """Refuses NaN in any output of the rows igkit evaluated, naming the first such row.

    Args:
        outputs: ``(rows, classes)`` transformed outputs.
        rows: What each row is, e.g. "input 0 (F(x))", "the 'black' baseline of input 0
            (F(x'))".

    Raises:
        ValueError: Naming the row, how many of its outputs are NaN, and the fix.
    """
    bad = np.isnan(outputs).reshape(outputs.shape[0], -1)
    hit = np.flatnonzero(bad.any(axis=1))
    if hit.size:
        r = int(hit[0])
        count = int(bad[r].sum())
        more = (f" (and {hit.size - 1} more row{'s' if hit.size > 2 else ''})"
                if hit.size > 1 else "")
        raise ValueError(
            f"the model's output is NaN at {rows[r]}: {count} of {bad.shape[1]} outputs{more}. "
            "Attributions of a NaN output would be NaN; check the model (a division by zero, "
            "log or sqrt of a negative, an overflow) and what it was given"
        )


def check_finite_gradients(
    sums: np.ndarray, pair_input: np.ndarray, pair_target: np.ndarray
) -> np.ndarray:
    """``sums`` (one gradient per explained (input, class) pair), or a ValueError naming the
    first pair whose gradient is NaN or Inf (plain saliency, ``igkit.gradients``)."""
    bad = ~np.isfinite(sums.reshape(sums.shape[0], -1)).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"the gradient of class {int(pair_target[r])} at input {int(pair_input[r])} is not "
            "finite (NaN or Inf): the model is not differentiable to a finite value there "
            "(e.g. sqrt, log or a division at 0)"
        )
    return sums


def format_alpha(alpha: float) -> str:
    """``alpha=0.25``, with the path's ends named."""
    text = f"alpha={alpha:.6g}"
    if alpha == 0.0:
        return text + " (the baseline)"
    if alpha == 1.0:
        return text + " (the input)"
    return text


def refuse_non_finite(
    paths: list[int],
    alphas: list,
    taken: Taken,
    sums_at: Callable[[int, np.ndarray], np.ndarray],
    describe_path: Callable[[int], str] | None,
) -> NoReturn:
    """Raises a ValueError naming where a path's score or gradient stops being finite.

    Args:
        paths: The paths just evaluated, in row order.
        alphas: Each path's alphas, in row order.
        taken: What the evaluation gave (its ``scores`` one per row).
        sums_at: ``(path, alphas) -> gradient sum`` of more evaluations of one path.
        describe_path: ``path -> words``, or None.

    A NaN score names its row's alpha at once. A gradient is found by bisecting its path's
    alphas (a sum of gradients is finite only when each is): a few more model calls, on a call
    that fails anyway.
    """
    counts = [len(a) for a in alphas]
    finite_scores = np.isfinite(taken.scores)
    if taken.scores.shape[0] == sum(counts) and not finite_scores.all():
        row = int(np.flatnonzero(~finite_scores)[0])
        j = int(np.searchsorted(np.cumsum(counts), row, side="right"))
        alpha = float(alphas[j][row - sum(counts[:j])])
        what = f"the explained score is {taken.scores[row]:g}"
    else:
        sums = taken.sums[paths].reshape(len(paths), -1)
        bad = np.flatnonzero(~np.isfinite(sums).all(axis=1))
        j = int(bad[0]) if bad.size else 0
        candidates = np.asarray(alphas[j], dtype=np.float64)
        while candidates.shape[0] > 1:
            half = candidates[: candidates.shape[0] // 2]
            finite = np.isfinite(sums_at(paths[j], half)).all()
            candidates = candidates[half.shape[0]:] if finite else half
        alpha = float(candidates[0])
        what = "the gradient is not finite"
    where = describe_path(paths[j]) if describe_path else f"path {paths[j]}"
    ends = " or a method whose nodes avoid the path's ends (method='gauss_legendre')"
    raise ValueError(
        f"on {where}, {what} at {format_alpha(alpha)}, so its attributions would be NaN: the "
        "model is not differentiable to a finite value there (e.g. sqrt, log or a division at "
        "0, or an overflow). Fix the model there, or pass another baseline"
        + (ends if alpha in (0.0, 1.0) else "")
    )
