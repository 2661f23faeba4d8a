"""What an attribution method works with: the model's session, the inputs, the explanations.

``igkit.attribute`` checks the arguments, opens the backend session, runs the first forward
pass (outputs checked, targets resolved) and hands a ``MethodContext`` to the method. Methods
reach the model only through it, so every method is batched the same way and runs on every
backend:

* ``gradients(points, pairs)``: the gradient of each point's explained score, the points packed
  into full batches of ``batch_size`` rows (at most ``chunk`` points are on the device at once,
  so memory is bounded by ``batch_size`` whatever the number of samples);
* ``outputs(points)``: forward only, in batches;
* ``scores(points, pairs)``: the explained score of each point (forward only);
* ``baselines()``: the ``baseline=`` arrays of the inputs, built once;
* ``result(attributions, ...)``: the ``Result`` of the explanations, with completeness measured
  for methods that claim it.

An explanation is an (input, class) pair of ``plan`` (``igkit.core.targets.TargetPlan``); arrays
``per pair`` are ``(R, *example_shape)`` in its order.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from igkit.backends.base import RowSession, Session, capabilities_of
from igkit.core.baselines import BaselineContext, make_baselines
from igkit.core.checks import NothingToAttributeWarning, check_finite_gradients, unchanged
from igkit.core.completeness import completeness
from igkit.core.planner import RowBatch
from igkit.core.result import Result
from igkit.core.targets import TargetPlan

__all__ = ["MethodContext"]


@dataclass
class MethodContext:
    """A method's view of one ``igkit.attribute`` call (see the module docstring).

    Attributes:
        session: The backend session (``igkit.backends.base.Session``).
        backend: The backend module (``name``, ``title``, ``CAPABILITIES``).
        model: The callable the backend runs (for methods that need the model itself, e.g. to
            hook layers).
        x: The inputs ``(N, *example_shape)`` in the compute dtype.
        outputs: The explained outputs at ``x``, ``(N, classes)`` float64.
        plan: The explanations: (input, class) pairs.
        baseline: The ``baseline=`` argument as given.
        channel_axis: The axis of ``x`` holding channels, or None.
        input_range: ``(low, high)`` of valid inputs.
        rng: The generator seeded by ``seed=``; methods draw every random number from it.
        batch_size: The most rows per model call.
        method: The method's name, recorded in the result.
        output: The ``output=`` argument (a name, or "callable").
        seed: The seed.
    """

    session: Session
    backend: ModuleType
    model: object
    x: np.ndarray
    outputs: np.ndarray
    plan: TargetPlan
    baseline: object
    channel_axis: int | None
    input_range: tuple[float, float]
    rng: np.random.Generator
    batch_size: int
    method: str
    output: str
    seed: int
    gradient_evaluations: int = 0
    forward_evaluations: int = 0
    _baselines: list[tuple[str, np.ndarray]] | None = field(default=None, repr=False)

    # -- what the explanations are ------------------------------------------------------------

    @property
    def n_pairs(self) -> int:
        return len(self.plan)

    @property
    def pair_inputs(self) -> np.ndarray:
        """``(R, *example_shape)``: the input of each explanation."""
        return self.x[self.plan.pair_input]

    @property
    def pair_score(self) -> np.ndarray:
        """``(R,)``: F(x) of each explanation."""
        return self.outputs[self.plan.pair_input, self.plan.pair_target]

    @property
    def chunk(self) -> int:
        """The most points ``gradients`` places on the device at once."""
        return max(self.batch_size * 8, 64)

    def baselines(self) -> list[tuple[str, np.ndarray]]:
        """The baselines of ``baseline=``: (label, ``(N, *example_shape)``) each, built once."""
        if self._baselines is None:
            ctx = BaselineContext(
                inputs=self.x, channel_axis=self.channel_axis, input_range=self.input_range,
                rng=self.rng,
            )
            self._baselines = [
                (label, np.asarray(b, dtype=self.x.dtype)) for label, b in
                make_baselines(self.baseline, ctx)
            ]
        return self._baselines

    # -- model calls --------------------------------------------------------------------------

    def gradients(self, points: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """The gradient of explanation ``pairs[m]``'s score at ``points[m]``, ``(M, ...)``.

        Points go to the session ``chunk`` at a time and through the model in full batches.
        """
        return self.gradients_and_scores(points, pairs)[0]

    def gradients_and_scores(
        self, points: np.ndarray, pairs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`gradients` and the explained scores at the points (``(M,)`` float64), from
        the same passes."""
        pairs = np.asarray(pairs, dtype=np.int64)
        points = np.asarray(points, dtype=self.x.dtype)
        if points.shape[0] != pairs.shape[0]:
            raise ValueError(f"{points.shape[0]} points for {pairs.shape[0]} explanations")
        out = np.empty(points.shape, dtype=self.x.dtype)
        scores = np.empty(points.shape[0], dtype=np.float64)
        targets = self.plan.pair_target[pairs]
        for start in range(0, points.shape[0], self.chunk):
            stop = min(points.shape[0], start + self.chunk)
            out[start:stop], scores[start:stop] = self._gradients_chunk(
                points[start:stop], targets[start:stop]
            )
        self.gradient_evaluations += int(points.shape[0])
        return out, scores

    def target_spec(self) -> object:
        """A ``target=`` value that gives this context's explanations again (for methods that
        call ``igkit.core.engine.run_integrated_gradients`` on the session)."""
        plan = self.plan
        if plan.mask is None:
            return plan.pair_target.copy()
        rows: list[list[int]] = [[] for _ in range(self.x.shape[0])]
        for i, c in zip(plan.pair_input, plan.pair_target, strict=True):
            rows[int(i)].append(int(c))
        return rows

    def _gradients_chunk(
        self, points: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        m = points.shape[0]
        # A path from 0 to the point, evaluated at alpha = 1 with weight 1: its gradient.
        self.session.set_paths(points, np.zeros_like(points), np.arange(m), targets)
        rows = RowBatch(np.arange(m, dtype=np.int64), np.ones(m), np.ones(m))
        if capabilities_of(self.session).row_accumulation:
            session: RowSession = self.session  # type: ignore[assignment]
            session.accumulate_rows(rows, self.batch_size)
        else:
            for start in range(0, m, self.batch_size):
                self.session.accumulate(rows.slice(start, min(m, start + self.batch_size)))
        taken = self.session.take()
        sums = check_finite_gradients(taken.sums, np.arange(m), targets)
        return sums, np.asarray(taken.scores, dtype=np.float64)

    def outputs_at(self, points: np.ndarray) -> np.ndarray:
        """Forward only: the explained outputs ``(M, classes)`` at ``points``, in batches."""
        points = np.asarray(points, dtype=self.x.dtype)
        self.forward_evaluations += int(points.shape[0])
        return np.asarray(self.session.outputs(points), dtype=np.float64)

    def scores(self, points: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Forward only: explanation ``pairs[m]``'s score at ``points[m]``, ``(M,)``."""
        out = self.outputs_at(points)
        return out[np.arange(out.shape[0]), self.plan.pair_target[np.asarray(pairs)]]

    # -- the result ---------------------------------------------------------------------------

    def result(
        self,
        attributions: np.ndarray,
        *,
        evaluations: np.ndarray | int | None = None,
        steps: np.ndarray | int = 1,
        baseline_score: np.ndarray | None = None,
        complete: bool = False,
        tol: float = 0.01,
        baselines: tuple[str, ...] | None = None,
        baseline_inputs: np.ndarray | None = None,
        method: str | None = None,
        requested_steps: int | str | None = None,
    ) -> Result:
        """The ``Result`` of per-pair ``attributions`` ``(R, *example_shape)``.

        With ``complete`` (the method claims completeness) and ``baseline_score`` (F(x') per
        pair), ``delta`` and ``relative_error`` measure it and ``converged`` is
        ``relative_error <= tol``; otherwise they are NaN and ``converged`` True: the method
        ran to its definition and there is no sum to check.
        """
        r = self.n_pairs
        attr = np.asarray(attributions).astype(self.x.dtype, copy=False)
        if attr.shape != (r, *self.x.shape[1:]):
            raise ValueError(
                f"method {self.method!r} returned attributions of shape {attr.shape}; expected "
                f"{(r, *self.x.shape[1:])}"
            )
        score = self.pair_score
        if complete and baseline_score is not None:
            flat = unchanged(score, baseline_score, self.x.dtype)
            delta, rel = completeness(attr, score, baseline_score, flat)
            converged = rel <= tol
            base = np.asarray(baseline_score, dtype=np.float64)
        else:
            delta = np.full(r, np.nan)
            rel = np.full(r, np.nan)
            converged = np.ones(r, dtype=bool)
            base = (np.full(r, np.nan) if baseline_score is None
                    else np.asarray(baseline_score, dtype=np.float64))
        if evaluations is None:
            evaluations = self.gradient_evaluations // max(r, 1)
        if self.method not in _EXPLAIN_NOTHING:
            _warn_all_zero(attr, self.plan, self.method, self.output)
        plan = self.plan
        label = baselines
        if label is None:
            label = (tuple(lb for lb, _ in self._baselines) if self._baselines is not None
                     else ())
        return Result(
            attributions=plan.scatter(attr, 0),
            delta=plan.scatter(delta, np.nan),
            relative_error=plan.scatter(rel, np.nan),
            score=plan.scatter(score, np.nan),
            baseline_score=plan.scatter(base, np.nan),
            target=plan.scatter(plan.pair_target, -1),
            steps=plan.scatter(np.broadcast_to(np.asarray(steps, np.int64), (r,)).copy(), 0),
            method=method or self.method,
            tol=float(tol),
            converged=plan.scatter(converged, False),
            evaluations=plan.scatter(
                np.broadcast_to(np.asarray(evaluations, np.int64), (r,)).copy(), 0
            ),
            baselines=label,
            target_mask=plan.mask,
            output=self.output,
            inputs=np.array(self.x, copy=True),
            channel_axis=self.channel_axis,
            baseline_inputs=baseline_inputs if baseline_inputs is not None else (
                self._baselines[0][1] if self._baselines else None
            ),
            seed=self.seed,
            requested_steps=requested_steps,
            attribution_method=self.method,
            complete=bool(complete and baseline_score is not None),
        )


#: Methods whose maps are not computed from the model: an all-zero map is no news from them.
_EXPLAIN_NOTHING = frozenset({"random", "sobel"})


def _warn_all_zero(attr: np.ndarray, plan: TargetPlan, method: str, output: str) -> None:
    """Warn (``NothingToAttributeWarning``) about explanations whose map is zero everywhere:
    a saturated output (a sigmoid or softmax at 0 or 1 in the compute dtype has a zero
    gradient), a dead region of the network, or a model that ignores the input there."""
    zero = ~attr.reshape(attr.shape[0], -1).any(axis=1)
    if not zero.any():
        return
    pairs = np.flatnonzero(zero)
    named = ", ".join(f"input {int(plan.pair_input[p])} (class {int(plan.pair_target[p])})"
                      for p in pairs[:6]) + (f" and {pairs.size - 6} more" if pairs.size > 6
                                             else "")
    fix = (f"explain output='raw' (the logits) instead of {output!r}, which is saturated there"
           if output in ("softmax", "sigmoid") else "explain another class or output")
    warnings.warn(
        f"method={method!r} gave all-zero attributions for {pairs.size} of {zero.size} "
        f"explanations ({named}): the explained output does not respond to the input there, "
        f"so the map says nothing; {fix}",
        NothingToAttributeWarning,
        stacklevel=4,
    )


#: ``run(context, options)``: what a registered method implements.
MethodRun = Callable[[MethodContext, dict], Result]
