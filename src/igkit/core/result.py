"""The one result type every attribution call returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PathTrace", "Result"]


@dataclass(frozen=True)
class PathTrace:
    """What happened along each path, kept when ``return_path=True``.

    For input ``i``, ``alphas[i]`` are the evaluated alphas in increasing order, ``scores[i]`` the
    target score F at each, and ``mean_abs_gradient[i]`` the mean |dF/dx| over the input's
    elements there: the data of the TF tutorial's saturation plots. With several baselines the
    first baseline's path is kept.
    """

    alphas: list[np.ndarray]
    scores: list[np.ndarray]
    mean_abs_gradient: list[np.ndarray]


@dataclass(frozen=True)
class Result:
    """Integrated Gradients attributions and the numbers that show they are right.

    Attributes:
        attributions: Same shape as the inputs given (one example or a batch).
        delta: Per input, ``sum(attributions) - (score - baseline_score)``: the completeness gap.
        relative_error: Per input, ``|delta| / |score - baseline_score|``.
        score: Per input, F(x): the explained output of the target class.
        baseline_score: Per input, F(x'), averaged over the baselines when there are several.
        target: Per input, the class explained.
        steps: Per input, the step count of the rule that produced the attributions (for
            ``steps="auto"``, the finest level it needed).
        method: The quadrature rule.
        tol: The completeness tolerance the result is judged against.
        converged: Per input, ``relative_error <= tol``.
        evaluations: Per input, gradient evaluations spent, over all its baselines and (for
            ``steps="auto"``) all refinement levels.
        baselines: The baselines' labels ("black", "uniform", "custom", ...).
        path: The per-path trace when asked for, else None.
    """

    attributions: np.ndarray
    delta: np.ndarray
    relative_error: np.ndarray
    score: np.ndarray
    baseline_score: np.ndarray
    target: np.ndarray
    steps: np.ndarray
    method: str
    tol: float
    converged: np.ndarray
    evaluations: np.ndarray
    baselines: tuple[str, ...] = ("black",)
    path: PathTrace | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.delta.shape[0])

    def completeness_report(self, index: int = 0) -> str:
        """The completeness check in words, as the TF tutorial states it."""
        i = index
        gap = self.score[i] - self.baseline_score[i]
        total = gap + self.delta[i]
        verdict = "within" if self.relative_error[i] <= self.tol else "NOT within"
        return (
            f"completeness {verdict} {self.tol:.1%}: sum of attributions {total:.6g}, "
            f"F(x) - F(x') = {self.score[i]:.6g} - {self.baseline_score[i]:.6g} = {gap:.6g}, "
            f"relative error {self.relative_error[i]:.3%} after {self.steps[i]} steps "
            f"({self.method})"
        )
