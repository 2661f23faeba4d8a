"""How a rule integrates along the paths: one strategy object per registered rule.

The engine does the bookkeeping that every rule shares (scores at the ends, paths of every
(input, class, baseline), completeness); the strategy a rule carries (``Rule.strategy``) turns
the paths into attributions:

* ``POINT_RULE``: a fixed set of nodes from the rule's ``build``, or for ``steps="auto"`` the
  rule's nested levels (doubling for rules that do not nest) until the tolerance is met;
* ``ADAPTIVE``: a pilot, then nodes where the integrand is rough (``igkit.core.adaptive``);
* ``SECANT``: pieces integrated by secant backward passes (``igkit.core.pieces``); it needs
  sessions declaring ``Capabilities.interval_accumulation``.

A strategy says what it needs from a session (``needs``, capability names; ``exact_only``) so
that the public API and the command line can refuse a method before any work, and the engine
dispatches on ``rule.strategy.run(job)``, never on the method's name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from igkit.backends.base import (
    Capabilities,
    IntervalSession,
    OutOfMemory,
    RowSession,
    Session,
    Taken,
)
from igkit.core.adaptive import run_adaptive
from igkit.core.checks import refuse_non_finite
from igkit.core.completeness import relative_change
from igkit.core.pieces import SecantRun
from igkit.core.planner import RowBatch, all_rows
from igkit.core.result import PathTrace

if TYPE_CHECKING:
    from igkit.core.quadrature import Rule

__all__ = [
    "ADAPTIVE",
    "POINT_RULE",
    "SECANT",
    "AutoSteps",
    "Integrated",
    "NotConvergedWarning",
    "PathJob",
    "PathRecorder",
    "SecantFallbackWarning",
    "Strategy",
]


class NotConvergedWarning(RuntimeWarning):
    """``steps="auto"`` reached ``max_steps`` before meeting its tolerance for some inputs."""


class SecantFallbackWarning(RuntimeWarning):
    """``method="secant"`` followed operations it has no exact rule for by their gradient at
    each piece's midpoint, and the attributions miss completeness by more than ``tol``."""


@dataclass(frozen=True)
class AutoSteps:
    """How ``steps="auto"`` refines.

    A path is done when its relative completeness error is at most ``tol`` AND its attributions
    moved by at most ``tol`` (relative L2) in the last refinement. Completeness alone is a weak
    stopping rule: on ReLU networks it can pass by luck at a step count whose attributions are
    still far off, so the refinement's own change estimate has to agree.
    """

    tol: float
    max_steps: int = 1024


class Integrated(NamedTuple):
    """What a strategy hands back, per path."""

    attributions: np.ndarray  # (P, *example_shape)
    steps: np.ndarray  # (P,) the step count that produced them
    evaluations: np.ndarray  # (P,) gradient evaluations spent


@dataclass
class PathRecorder:
    """The scores (and mean |gradient|) evaluated along each path, kept for
    ``return_path=True``; every method is a no-op when ``enabled`` is False."""

    n_paths: int
    enabled: bool
    rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = [[] for _ in range(self.n_paths)]

    def level(
        self, paths: np.ndarray, alphas: np.ndarray, taken: Taken, replace: bool = False
    ) -> None:
        """The same ``alphas`` on each of ``paths``; a non-nested refinement replaces the
        coarser level instead of adding to it."""
        if not self.enabled:
            return
        k = alphas.shape[0]
        for j, p in enumerate(paths):
            sl = slice(j * k, (j + 1) * k)
            grads = None if taken.mean_abs_gradient is None else taken.mean_abs_gradient[sl]
            if replace:
                self.rows[p].clear()
            self.rows[p].append((alphas, taken.scores[sl], grads))

    def point(self, p: int, alphas: np.ndarray, scores: np.ndarray,
              grads: np.ndarray | None) -> None:
        """One path's own alphas (the adaptive rule's callback)."""
        if self.enabled:
            self.rows[p].append((alphas, scores, grads))

    def pieces(self, paths: np.ndarray, ends: list, taken: Taken, replace: bool) -> None:
        """A secant pass's scores at each path's own piece ends: replacing the pilot's, or
        (a refinement of some regions) added where no point was evaluated yet."""
        if not self.enabled:
            return
        start = 0
        for p, e in zip(paths, ends, strict=True):
            scores = taken.scores[start : start + e.shape[0]]
            start += e.shape[0]
            if replace:
                self.rows[p].clear()
            else:
                new = ~np.isin(e, np.concatenate([r[0] for r in self.rows[p]]))
                e, scores = e[new], scores[new]
            self.rows[p].append((e, scores, None))

    def trace(self, n_base: int, n_pairs: int) -> PathTrace:
        """Each explanation's first baseline path, its alphas in increasing order."""
        alphas, scores, grads = [], [], []
        for i in range(n_pairs):
            parts = self.rows[i * n_base]
            a = np.concatenate([p[0] for p in parts])
            s = np.concatenate([p[1] for p in parts])
            order = np.argsort(a, kind="stable")
            alphas.append(a[order])
            scores.append(s[order])
            if parts and parts[0][2] is not None:
                grads.append(np.concatenate([p[2] for p in parts])[order])  # type: ignore[misc]
            else:
                grads.append(np.full(a.shape, np.nan))
        return PathTrace(alphas, scores, grads)


@dataclass
class PathJob:
    """The paths of one call, ready for a strategy.

    Attributes:
        session: The backend session; its paths are already set.
        capabilities: What the session declares (``igkit.backends.base.capabilities_of``).
        rule: The quadrature rule of the call.
        steps: The step count, or how ``steps="auto"`` refines.
        tol: The completeness tolerance.
        batch_size: The most rows per model call.
        diff: ``(P, ...)`` float64 input minus baseline per path.
        score: ``(P,)`` F(x) of each path's input and class.
        base_score: ``(P,)`` F(x') of each path's baseline and class.
        recorder: Where evaluated scores go for ``return_path``.
        split_paths: ``k -> None``: path ``p * k + j`` becomes a copy of path ``p`` on the
            session (``k = 1``: the real paths), for strategies that keep parts of a path apart.
        unchanged: ``(P,)`` True where F(x) = F(x') to rounding: completeness cannot tell
            whether such a path is integrated well, so ``steps="auto"`` stops it on the
            refinement's change alone. None: every path changes.
        describe_path: ``path -> words`` (a virtual copy's index too), for the error that
            names where the gradients are not finite.
    """

    session: Session
    capabilities: Capabilities
    rule: Rule
    steps: int | AutoSteps
    tol: float
    batch_size: int
    diff: np.ndarray
    score: np.ndarray
    base_score: np.ndarray
    recorder: PathRecorder
    split_paths: Callable[[int], None]
    unchanged: np.ndarray | None = None
    describe_path: Callable[[int], str] | None = None

    @property
    def n_paths(self) -> int:
        return int(self.diff.shape[0])

    @property
    def auto(self) -> AutoSteps | None:
        return self.steps if isinstance(self.steps, AutoSteps) else None

    def feed(self, rows: RowBatch) -> None:
        """Feeds all rows to the session in batches, halving a batch that runs out of memory.

        A session declaring ``row_accumulation`` takes the whole level at once, so it can move
        the plan to the device in one copy instead of one blocking copy per batch.
        """
        if self.capabilities.row_accumulation:
            cast(RowSession, self.session).accumulate_rows(rows, self.batch_size)
            return
        for start in range(0, len(rows), self.batch_size):
            pending = [rows.slice(start, start + self.batch_size)]
            while pending:
                b = pending.pop()
                try:
                    self.session.accumulate(b)
                except OutOfMemory:
                    if len(b) == 1:
                        raise
                    half = len(b) // 2
                    pending.append(b.slice(half, len(b)))
                    pending.append(b.slice(0, half))

    def evaluate(self, paths: np.ndarray, alphas: list, weights: list) -> Taken:
        """Evaluates each path's own alphas with their weights and takes the sums.

        Raises:
            ValueError: A score or gradient sum that is not finite, naming the path and the
                first alpha where the model's score or gradient is NaN or Inf
                (``igkit.core.checks.refuse_non_finite``).
        """
        ids = [int(p) for p in paths]
        self.feed(all_rows(ids, alphas, weights))
        taken = self.session.take()
        sums = taken.sums[ids].reshape(len(ids), -1) if ids else taken.sums[:0]
        if not (np.isfinite(sums).all() and np.isfinite(taken.scores).all()):
            refuse_non_finite(ids, alphas, taken, self._sums_at, self.describe_path)
        return taken

    def _sums_at(self, path: int, alphas: np.ndarray) -> np.ndarray:
        """The gradient sum of ``path`` over ``alphas``, each weighted 1."""
        self.feed(all_rows([path], [alphas], [np.ones_like(alphas)]))
        return self.session.take().sums[path]

    def level(self, paths: np.ndarray, alphas: np.ndarray, weights: np.ndarray) -> Taken:
        """The same alphas and weights on every path of ``paths``."""
        return self.evaluate(paths, [alphas] * len(paths), [weights] * len(paths))


class Strategy:
    """How a rule integrates along the paths (see the module docstring).

    Attributes:
        name: A short name for messages.
        needs: Boolean ``Capabilities`` fields a session must declare to run it.
        exact_only: Refuses reduced precision (its own checks rely on exact arithmetic).
    """

    name: str = "strategy"
    needs: tuple[str, ...] = ()
    exact_only: bool = False

    def unsupported(self, capabilities: Capabilities, precision: str = "float32") -> list[str]:
        """What keeps it from running on sessions with ``capabilities`` at ``precision``: the
        capability names it lacks, and "exact precision" when reduced precision was asked for
        a strategy that needs exact arithmetic. Empty when it can run."""
        missing = capabilities.lacks(self.needs)
        if self.exact_only and precision != "float32":
            missing.append("exact precision")
        return missing

    def run(self, job: PathJob) -> Integrated:
        """Integrates every path of ``job``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"


class PointRuleStrategy(Strategy):
    """Fixed nodes from the rule's ``build``; for ``steps="auto"``, refinement level by level:
    nested rules evaluate only each level's new nodes, the others double their count."""

    name = "point rule"

    def run(self, job: PathJob) -> Integrated:
        auto = job.auto
        if auto is None:
            steps = cast(int, job.steps)
            paths = np.arange(job.n_paths)
            alphas, weights = job.rule.nodes(steps)
            taken = job.level(paths, alphas, weights)
            job.recorder.level(paths, alphas, taken)
            used = np.full(job.n_paths, int(steps), dtype=np.int64)
            return Integrated(job.diff * taken.sums, used, used)
        attr, used, evals, missed = _refine(job, auto)
        if missed:
            _warn_not_converged(missed, job.n_paths, int(used.max()), auto.tol)
        return Integrated(attr, used, evals)


def _nested_levels(rule: Rule, max_steps: int) -> list[int]:
    assert rule.nested is not None
    n = max(rule.min_steps, 8) + (1 if rule.includes_endpoints else 0)
    levels = [n]
    while n < max_steps:
        n = rule.nested(n)
        levels.append(n)
    return levels


def _doubling_levels(rule: Rule, max_steps: int) -> list[int]:
    n = max(rule.min_steps, 8)
    levels = [n]
    while n < max_steps:
        n *= 2
        levels.append(n)
    return levels


def _refine(job: PathJob, auto: AutoSteps) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Refines each path until it meets ``auto.tol`` (see AutoSteps) or ``auto.max_steps``;
    returns the attributions, steps, evaluations and the number of paths that missed.

    Nested rules evaluate only the new nodes of each level: their weights are ``c(n) * r_k`` with
    ``r_k`` fixed per node (1 inside, 1/2 at the trapezoid's ends), so the device accumulates
    ``sum r_k g_k`` across levels and the level's integral is ``c(n)`` times that.
    """
    rule, diff = job.rule, job.diff
    n_paths = job.n_paths
    attr = np.zeros_like(diff)
    steps_used = np.zeros(n_paths, dtype=np.int64)
    evals = np.zeros(n_paths, dtype=np.int64)
    raw = np.zeros_like(diff)
    prev = np.zeros_like(diff)
    active = np.arange(n_paths)
    levels = _nested_levels(rule, auto.max_steps) if rule.nested else _doubling_levels(
        rule, auto.max_steps
    )
    old_alphas = np.empty(0)
    gap = job.score - job.base_score
    for li, n in enumerate(levels):
        alphas, weights = rule.nodes(n)
        if rule.nested:
            c = weights.max()
            relw = weights / c
            is_new = ~np.isclose(alphas[:, None], old_alphas[None, :], rtol=0, atol=1e-12).any(
                axis=1
            ) if old_alphas.size else np.ones(alphas.shape[0], dtype=bool)
            taken = job.level(active, alphas[is_new], relw[is_new])
            job.recorder.level(active, alphas[is_new], taken)
            evals[active] += int(is_new.sum())
            raw[active] += taken.sums[active]
            integral = c * raw[active]
            old_alphas = alphas
        else:
            taken = job.level(active, alphas, weights)
            job.recorder.level(active, alphas, taken, replace=True)
            evals[active] += n
            integral = taken.sums[active]
        level_attr = diff[active] * integral
        steps_used[active] = n
        flat = level_attr.reshape(active.shape[0], -1).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(flat - gap[active]) / np.abs(gap[active])
        rel = np.where(gap[active] == 0, np.where(flat == 0, 0.0, np.inf), rel)
        if job.unchanged is not None:
            # F(x) = F(x'): completeness says nothing here; the change criterion decides.
            rel = np.where(job.unchanged[active], 0.0, rel)
        finished = np.zeros(active.shape[0], dtype=bool)
        if li > 0:
            change = np.array(
                [relative_change(level_attr[j], prev[p]) for j, p in enumerate(active)]
            )
            finished = (rel <= auto.tol) & (change <= auto.tol)
        attr[active] = level_attr
        prev[active] = level_attr
        active = active[~finished]
        if active.size == 0:
            break
    return attr, steps_used, evals, int(active.size)


class AdaptiveStrategy(Strategy):
    """``method="adaptive"``: a pilot, then nodes where the integrand is rough
    (``igkit.core.adaptive``); for ``steps="auto"`` cell by cell until the tolerance is met."""

    name = "adaptive"

    def run(self, job: PathJob) -> Integrated:
        auto = job.auto
        attr, used, evals, met = run_adaptive(
            job.session, job.diff, job.score - job.base_score,
            steps=None if auto else int(cast(int, job.steps)),
            tol=auto.tol if auto else job.tol,
            max_steps=auto.max_steps if auto else 0, batch_size=job.batch_size,
            accumulate=job.evaluate, record=job.recorder.point, split_paths=job.split_paths,
            unchanged=job.unchanged,
        )
        if auto is not None and not met.all():
            _warn_not_converged(int((~met).sum()), job.n_paths, int(used.max()), auto.tol)
        return Integrated(attr, used, evals)


class SecantStrategy(Strategy):
    """``method="secant"``: pieces of the path, each integrated by one secant backward pass
    (``igkit.core.pieces``), on sessions declaring ``interval_accumulation``. Each piece is
    complete to rounding where the session has an exact rule for every operation of the model,
    which reduced precision would break. Operations without one run on their midpoint gradient
    (``IntervalSession.unhandled_ops``): completeness then measures a real error, which
    ``steps="auto"`` refines until it is within ``tol``, and a ``SecantFallbackWarning`` names
    those operations when the attributions miss ``tol``."""

    name = "secant"
    needs = ("interval_accumulation",)
    exact_only = True

    def run(self, job: PathJob) -> Integrated:
        session = cast(IntervalSession, job.session)

        def accumulate(rows: RowBatch) -> tuple[Taken, np.ndarray, float]:
            before = session.piece_residual
            counts = session.accumulate_intervals(rows, job.batch_size)
            return session.take(), counts, session.piece_residual - before

        run = SecantRun(accumulate, job.split_paths, job.diff, job.score - job.base_score,
                        job.unchanged)
        auto = job.auto
        steps = None if auto else int(cast(int, job.steps))
        attr, used, met = run.run(
            np.arange(job.n_paths), steps, auto.tol if auto else job.tol,
            auto.max_steps if auto else cast(int, steps), job.recorder.pieces,
        )
        if auto is not None and not met.all():
            _warn_not_converged(int((~met).sum()), job.n_paths, int(used.max()), auto.tol)
        ops = sorted(session.unhandled_ops)
        if ops:
            misses = np.array([run.completeness_miss(p, attr[p]) for p in range(job.n_paths)])
            if misses.max() > job.tol:
                gaps = float(np.abs(job.score - job.base_score).sum())
                _warn_secant_fallback(ops, float(misses.max()), run.residual / max(gaps, 1e-300),
                                      job.tol)
        return Integrated(attr, used, run.evaluations)


POINT_RULE = PointRuleStrategy()
ADAPTIVE = AdaptiveStrategy()
SECANT = SecantStrategy()


def _warn_secant_fallback(ops: list[str], miss: float, residual: float, tol: float) -> None:
    # Called from a strategy's run: the warning points at the caller of the public function.
    warnings.warn(
        f"method='secant' has no exact rule for {', '.join(ops)}: it followed "
        f"{'them' if len(ops) > 1 else 'it'} by the gradient at each piece's midpoint, so "
        f"completeness measures a real error, {miss:.2%} of F(x) - F(x') (tol={tol:g}; the "
        f"pieces' |residuals| sum to {residual:.2%} of |F(x) - F(x')|). Pass more steps or "
        "steps='auto' (which refines until both errors are within tol), or "
        "method='gauss_legendre'",
        SecantFallbackWarning,
        stacklevel=5,
    )


def _warn_not_converged(missed: int, n_paths: int, steps: int, tol: float) -> None:
    # Called from a strategy's run: the warning points at the caller of the public function.
    warnings.warn(
        f"steps='auto' reached {steps} steps without meeting tol={tol} on {missed} of "
        f"{n_paths} paths; their results are the finest level computed (raise max_steps or tol)",
        NotConvergedWarning,
        stacklevel=5,
    )
