"""The one result type every attribution call returns."""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace

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

    One result type for one or several classes per input. With one class per input
    (``target=None``, an int or one int per input) the per-input fields below are ``(N,)`` and
    ``attributions`` has the inputs' shape. With several (a 2-D ``target``, per-input lists,
    ``"all"`` or a callable such as :func:`igkit.labels_above`) the result is *multi-target*:
    every per-input field gains a target axis, ``(N, T)``, ``attributions`` is
    ``(N, T, *example_shape)`` (the batch axis is kept even for one unbatched example), and
    ``target_mask`` says which slots hold an explanation. With ragged targets (inputs with
    different numbers of classes) the empty slots hold ``target = -1``, zero attributions, NaN
    scores and errors, ``steps = evaluations = 0`` and ``converged = False``; :meth:`pairs` and
    :meth:`per_target` walk the filled slots only.

    The fields from ``output`` on hold what redoes, extends or draws the result;
    ``igkit.integrated_gradients`` fills them, and they are None in a result built without them.

    Attributes:
        attributions: Same shape as the inputs given (one example or a batch); with a target
            axis after the batch axis for multi-target results.
        delta: Per input, ``sum(attributions) - (score - baseline_score)``: the completeness gap.
        relative_error: Per input, ``|delta| / |score - baseline_score|``; NaN where there is
            nothing to attribute (see :attr:`nothing_to_attribute`).
        score: Per input, F(x): the explained output of the target class.
        baseline_score: Per input, F(x'), averaged over the baselines when there are several.
        target: Per input, the class explained.
        steps: Per input, the step count of the rule that produced the attributions (for
            ``steps="auto"``, the finest level it needed).
        method: The quadrature rule that ran: for ``method="auto"`` the rule it chose
            ("secant" or "gauss_legendre").
        tol: The completeness tolerance the result is judged against.
        converged: Per input, ``relative_error <= tol``: the attributions add up to the
            model's change within the tolerance; for ``steps="auto"`` also that the refinement
            met ``tol`` (its error estimate too): False for every input that raised
            ``NotConvergedWarning``. False where there is nothing to attribute
            (F(x) = F(x'), relative error NaN): completeness cannot be checked against a zero
            change, so no success is claimed; :meth:`completeness_report` says why. With a
            fixed step count, inputs that miss ``tol`` also warn ``NotConvergedWarning``.
        evaluations: Per input, gradient evaluations spent, over all its baselines and (for
            ``steps="auto"``) all refinement levels, pilots and ``method="auto"``'s probe; at
            most ``max_steps`` per baseline. Forward-only passes (F(x) and F(x') for
            completeness; for "secant" one per distinct baseline) are not counted.
        baselines: The baselines' labels ("black", "uniform", "custom", ...).
        error_estimate: Per input, the rule's own estimate of the attribution error, relative
            L2: ``||estimated error of attributions|| / ||attributions||``. From the last two
            refinement levels (point rules: their change, extrapolated with the observed rate
            of convergence; "secant": the change of each pilot region's integral to its final
            pieces, scaled by the pieces per region; "adaptive": its cells' changes).
            ``steps="auto"`` stops on it (with completeness); with "secant", whose
            completeness is exact by construction, it is the only accuracy signal. NaN where
            the rule has none (a fixed step count of a point rule, secant under 32 pieces);
            None in a result built without it.
        path: The per-path trace when asked for, else None. For multi-target results its
            lists hold one entry per explanation, in :meth:`pairs` order.
        target_mask: ``(N, T)`` True where input ``i`` has a ``k``-th target, for multi-target
            results; None for single-target ones.
        output: The explained output: "raw", "softmax", "sigmoid", or "callable" for a
            user's function.
        inputs: The explained inputs as numpy, in the layout given and the compute dtype, with
            the attributions' input axes: ``(N, *example_shape)``, or ``example_shape`` for an
            unbatched single-target result (no target axis in either case).
        channel_axis: The axis holding channels in a batch of inputs (axis 0 the batch), as
            ``integrated_gradients(channel_axis=)`` takes it; None when there is none.
        baseline_inputs: The first baseline as numpy, shaped like ``inputs``.
        seed: The seed of the random baselines.
        requested_steps: What was asked for: a step count or "auto" (``steps`` holds what
            each input used).
        max_steps: The ceiling ``steps="auto"`` was given.
        attribution_method: The attribution method that produced the result (a name of
            ``igkit.attribution_methods()``): "integrated_gradients" for every quadrature rule
            (``method`` names the rule), else e.g. "saliency" or "occlusion" (``method`` is then
            the same name). Methods without a completeness property leave ``delta`` and
            ``relative_error`` NaN and ``converged`` True (see ``igkit.methods``), with
            ``complete`` False.
        complete: Whether the method claims completeness (its attributions add up to
            F(x) - F(x')), so that ``delta`` and ``relative_error`` measure something; False
            for saliency, Grad-CAM, occlusion and the like.
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
    error_estimate: np.ndarray | None = None
    path: PathTrace | None = field(default=None, repr=False)
    target_mask: np.ndarray | None = None
    output: str | None = None
    inputs: np.ndarray | None = field(default=None, repr=False)
    channel_axis: int | None = None
    baseline_inputs: np.ndarray | None = field(default=None, repr=False)
    seed: int | None = None
    requested_steps: int | str | None = None
    max_steps: int | None = None
    attribution_method: str = "integrated_gradients"
    complete: bool = True

    def __len__(self) -> int:
        return int(self.delta.shape[0])

    @property
    def multi_target(self) -> bool:
        """Whether the per-input fields have a target axis (see the class docstring)."""
        return self.target_mask is not None

    @property
    def nothing_to_attribute(self) -> np.ndarray:
        """Per input (per slot for multi-target results), True where F(x) = F(x') to rounding:
        the explained output does not change from the baseline to the input (a constant,
        zero-weight or saturated output, or an input equal to its baseline), so the
        attributions must add up to zero and completeness cannot be checked. Such explanations
        have ``relative_error`` NaN and ``converged`` False, and raised
        ``igkit.NothingToAttributeWarning``. The empty slots of ragged targets are False, and
        so is every explanation of a method without completeness (``complete`` False)."""
        if not self.complete:
            return np.zeros(self.relative_error.shape, dtype=bool)
        return np.isnan(self.relative_error) & ~np.isnan(self.score)

    def pairs(self) -> list[tuple[int, int]]:
        """``(input, slot)`` of every explanation held, input-major.

        For single-target results the slot is always 0 and there is one pair per input.
        """
        if self.target_mask is None:
            return [(i, 0) for i in range(len(self))]
        return [(int(i), int(k)) for i, k in zip(*np.nonzero(self.target_mask), strict=True)]

    def per_target(self) -> list[Result]:
        """One single-target Result per explanation, in :meth:`pairs` order.

        Each holds one input (``attributions`` of shape ``(1, *example_shape)``, per-input
        fields of shape ``(1,)``, ``inputs`` and ``baseline_inputs`` of that input,
        ``(1, *example_shape)``), so it can go wherever a single-target result goes (figures,
        ``completeness_report``). The empty slots of ragged targets are skipped. A
        single-target result of one input is returned as it is.
        """
        if self.target_mask is None:
            if len(self) == 1:
                # Already one explanation (its attributions may lack the batch axis).
                return [self]
            singles: list[tuple[int, tuple[int, ...]]] = [(i, (i,)) for i in range(len(self))]
        else:
            singles = list(enumerate(self.pairs()))
        out = []
        for j, where in singles:
            attr = self.attributions[where]
            row = where[0]  # the input: ``inputs`` has no target axis
            trace = None
            if self.path is not None:
                trace = PathTrace(
                    [self.path.alphas[j]],
                    [self.path.scores[j]],
                    [self.path.mean_abs_gradient[j]],
                )
            out.append(
                replace(
                    self,
                    attributions=np.asarray(attr)[None],
                    delta=self.delta[where][None],
                    relative_error=self.relative_error[where][None],
                    score=self.score[where][None],
                    baseline_score=self.baseline_score[where][None],
                    target=self.target[where][None],
                    steps=self.steps[where][None],
                    converged=self.converged[where][None],
                    evaluations=self.evaluations[where][None],
                    error_estimate=(None if self.error_estimate is None
                                    else self.error_estimate[where][None]),
                    path=trace,
                    target_mask=None,
                    inputs=None if self.inputs is None else self.inputs[row][None],
                    baseline_inputs=(
                        None if self.baseline_inputs is None else self.baseline_inputs[row][None]
                    ),
                )
            )
        return out

    def numbers(self, index: int = 0) -> dict[str, object]:
        """One single-target explanation's numbers as plain Python values, under the names the
        npz files and results tables use (multi-target results: take ``per_target()`` items)."""
        i = index
        return {
            "target": int(self.target[i]),
            "score": float(self.score[i]),
            "baseline_score": float(self.baseline_score[i]),
            "delta": float(self.delta[i]),
            "relative_error": float(self.relative_error[i]),
            "converged": bool(self.converged[i]),
            "steps": int(self.steps[i]),
            "evaluations": int(self.evaluations[i]),
            "error_estimate": (float("nan") if self.error_estimate is None
                               else float(self.error_estimate[i])),
        }

    def completeness_report(self, index: int = 0, slot: int | None = None) -> str:
        """The completeness check in words, as the TF tutorial states it.

        Args:
            index: The input.
            slot: For multi-target results, which of the input's targets (default the first).
        """
        i: tuple[int, ...] = (index,)
        if self.target_mask is not None:
            i = (index, 0 if slot is None else slot)
            if not self.target_mask[i]:
                raise IndexError(f"input {index} has no target in slot {i[1]}")
        gap = self.score[i] - self.baseline_score[i]
        total = gap + self.delta[i]
        if not self.complete:
            return (
                f"{self.attribution_method} makes no completeness claim (its attributions need "
                f"not add up to F(x) - F(x')); F(x) = {self.score[i]:.6g}, "
                f"{self.evaluations[i]} model evaluations"
            )
        if self.nothing_to_attribute[i]:
            a, b = f"{self.score[i]:.6g}", f"{self.baseline_score[i]:.6g}"
            equal = (f"F(x) = F(x') = {a}" if a == b
                     else f"F(x) = {a} and F(x') = {b} (equal to rounding)")
            return (
                f"nothing to attribute: {equal}, the explained output does not change from "
                f"the baseline to the input, so completeness cannot be checked (sum of "
                f"attributions {total:.6g} after {self.steps[i]} steps, {self.method})"
            )
        verdict = "within" if self.relative_error[i] <= self.tol else "NOT within"
        estimate = "" if self.error_estimate is None or np.isnan(self.error_estimate[i]) else (
            f"; estimated attribution error {self.error_estimate[i]:.3%}")
        return (
            f"completeness {verdict} {self.tol:.1%}: sum of attributions {total:.6g}, "
            f"F(x) - F(x') = {self.score[i]:.6g} - {self.baseline_score[i]:.6g} = {gap:.6g}, "
            f"relative error {self.relative_error[i]:.3%} after {self.evaluations[i]} "
            f"evaluations ({self.method}){estimate}"
        )

    def _repr_html_(self) -> str:
        """The result in a notebook: ``igkit.viz.notebook.result_html`` (figures and numbers),
        imported when first shown so that ``import igkit`` stays light; without it, the
        completeness check of every explanation as text."""
        try:
            from igkit.viz.notebook import result_html
        except ImportError:
            reports = [self.completeness_report(i, k) for i, k in self.pairs()]
            return "<pre>" + html.escape("\n".join(reports)) + "</pre>"
        return result_html(self)
