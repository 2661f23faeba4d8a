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

Why one module: the strategies share the refinement's bookkeeping (``PathJob``, the level
loop of ``PointRefinement``, the not-converged warning and its stack level), and "auto" runs
the point rule and secant strategies step by step on the same job; apart, each would reach
into the others' internals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    "AUTO",
    "POINT_RULE",
    "SECANT",
    "AutoStrategy",
    "AutoSteps",
    "Integrated",
    "NotConvergedWarning",
    "PathJob",
    "PathRecorder",
    "PointRefinement",
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

    ``max_steps`` bounds the gradient evaluations per path over everything the strategy
    spends: every level, pilot and probe.
    """

    tol: float
    max_steps: int = 1024


class Integrated(NamedTuple):
    """What a strategy hands back, per path."""

    attributions: np.ndarray  # (P, *example_shape)
    steps: np.ndarray  # (P,) the step count that produced them
    evaluations: np.ndarray  # (P,) gradient evaluations spent
    # (P,) the rule's own estimate of ||attribution error|| / ||attributions|| (L2); NaN where
    # the rule has none (a single fixed level of a point rule).
    error_estimate: np.ndarray | None = None
    # (P,) whether ``steps="auto"`` met its tolerance (True for fixed steps).
    met: np.ndarray | None = None
    # The rule that produced them, when it is not the one asked for ("auto").
    method: str | None = None


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
        precision: The ``precision=`` of the call ("auto" runs secant only at "float32").
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
    precision: str = "float32"

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
            return Integrated(job.diff * taken.sums, used, used,
                              np.full(job.n_paths, np.nan), np.ones(job.n_paths, dtype=bool))
        refined = PointRefinement(job, auto)
        refined.run()
        return refined.finish_at(depth=1)


def _nested_levels(rule: Rule, max_steps: int) -> list[int]:
    assert rule.nested is not None
    # A rule keeping its nodes (Fejer's: 3, 7, 15, ...) starts small: every node is reused.
    n = FIRST_KEPT_LEVEL if rule.keeps_nodes else (
        max(rule.min_steps, 8) + (1 if rule.includes_endpoints else 0))
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


#: A point rule's error estimate is this times the extrapolated change (below). On seeded
#: float64 ReLU nets with exact references (benchmarks/secant_calibration.py, Gauss-Legendre
#: doubling from 8 nodes) the true error was 0.27-0.80 of the unscaled estimate: the rate
#: measured between two noisy levels is too slow, so the change over-estimates; 0.6 keeps the
#: estimate near the true error there and still far above it on smooth nets (where the first
#: estimate is the change from 8 to 16 nodes, itself the 8-node error).
POINT_ERROR_SCALE = 0.6

#: The largest level-to-level ratio of the changes that a point rule's error estimate
#: extrapolates with (see :meth:`PointRefinement.estimate`): beyond it the levels are not yet
#: converging geometrically and the last change itself is the estimate.
_MAX_RATE = 0.75

#: The smallest ratio it extrapolates with. A ratio measured on the first, coarse levels can be
#: far better than the next one: on all-MiniLM-L6-v2 Fejer's changes fell 0.10x from 3 to 7
#: nodes and then 0.28x, so extrapolating with 0.10 called 15 nodes 0.3 % off when they were
#: 1.6 % off; with 0.4 the estimate (0.6 times two thirds of the last change) stays above the
#: true error on every smooth zoo net (ConvNeXt-, ViT-style, MiniLM).
_MIN_RATE = 0.4

#: The first level of a rule that keeps its nodes (``Rule.keeps_nodes``).
FIRST_KEPT_LEVEL = 3


class PointRefinement:
    """``steps="auto"`` for a point rule: levels of nodes until each path meets ``auto.tol``.

    A path is done when its completeness error is within ``tol`` and the estimated attribution
    error of the last level is too (:meth:`estimate`). ``auto.max_steps`` bounds the
    evaluations per path over all levels (and whatever was spent before, ``evals``): a level
    that would pass it is not started, and the path stops unmet on the finest level computed.

    Nested rules evaluate only the new nodes of each level: their weights are ``c(n) * r_k``
    with ``r_k`` fixed per node (1 inside, 1/2 at the trapezoid's ends), so the device
    accumulates ``sum r_k g_k`` across levels and the level's integral is ``c(n)`` times that.
    """

    def __init__(self, job: PathJob, auto: AutoSteps, rule: Rule | None = None) -> None:
        # Rules keeping their nodes: (paths, alphas, gradients (paths, alphas, ...)) per level.
        self._kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.job, self.auto = job, auto
        self.rule = job.rule if rule is None else rule
        n_paths = job.n_paths
        self.attr = np.zeros_like(job.diff)
        self.steps = np.zeros(n_paths, dtype=np.int64)
        self.evals = np.zeros(n_paths, dtype=np.int64)
        self.change = np.full((n_paths, 2), np.nan)  # the last two levels' relative changes
        self.completeness = np.full(n_paths, np.inf)
        self.met = np.zeros(n_paths, dtype=bool)
        self.active = np.arange(n_paths)
        self._raw = np.zeros_like(job.diff)
        self._old_alphas = np.empty(0)
        self._done_levels = 0
        rule = self.rule
        self.levels = (_nested_levels(rule, auto.max_steps) if rule.nested
                       else _doubling_levels(rule, auto.max_steps))
        if self.levels[0] > auto.max_steps:
            # A budget below the first level: one level of the budget itself.
            self.levels = [max(rule.min_steps, auto.max_steps)]

    def estimate(self) -> np.ndarray:
        """Per path, the relative L2 error of the last level: ``POINT_ERROR_SCALE`` times the
        last change ``c1`` (the previous level's error, about), times ``r / (1 - r)`` with
        ``r = c1 / c0`` the rate between the last two changes (at least ``_MIN_RATE``) when
        it is below ``_MAX_RATE``
        (the error of a level falling geometrically); the last change itself before there
        are two changes, or when the rate says the levels are not converging yet. NaN before
        any change."""
        c0, c1 = self.change[:, 0], self.change[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = c1 / c0
        geometric = np.isfinite(rate) & (rate < _MAX_RATE)
        rate = np.where(geometric, np.maximum(rate, _MIN_RATE), 0.0)
        factor = np.where(geometric, rate / (1.0 - rate), 1.0)
        return POINT_ERROR_SCALE * np.where(np.isnan(c0), c1, c1 * np.maximum(factor, 0.0))

    def step(self) -> bool:
        """Runs the next level on the active paths that can afford it; False when no level is
        left to run (every path met, or out of levels or budget)."""
        job, rule, auto = self.job, self.rule, self.auto
        if self.active.size == 0 or self._done_levels >= len(self.levels):
            return False
        n = self.levels[self._done_levels]
        alphas, weights = rule.nodes(n)
        if rule.nested:
            is_new = ~np.isclose(alphas[:, None], self._old_alphas[None, :], rtol=0,
                                 atol=1e-12).any(axis=1) if self._old_alphas.size else (
                np.ones(alphas.shape[0], dtype=bool))
            cost = int(is_new.sum())
        else:
            cost = n
        # The first level always runs (a budget below it still gets an answer).
        afford = self.active if self._done_levels == 0 else self.active[
            self.evals[self.active] + cost <= auto.max_steps]
        self.active = afford
        if afford.size == 0:
            return False
        active = afford
        if rule.keeps_nodes:
            integral = self._kept_level(active, alphas, weights, alphas[is_new])
            self._old_alphas = alphas
        elif rule.nested:
            c = weights.max()
            relw = weights / c
            taken = job.level(active, alphas[is_new], relw[is_new])
            job.recorder.level(active, alphas[is_new], taken)
            self._raw[active] += taken.sums[active]
            integral = c * self._raw[active]
            self._old_alphas = alphas
        else:
            taken = job.level(active, alphas, weights)
            job.recorder.level(active, alphas, taken, replace=True)
            integral = taken.sums[active]
        self.evals[active] += cost
        self._done_levels += 1
        self.accept(active, job.diff[active] * integral, n)
        return True

    def _kept_level(self, active: np.ndarray, alphas: np.ndarray, weights: np.ndarray,
                    new: np.ndarray) -> np.ndarray:
        """A level of a rule that keeps its nodes: each new node's gradient on its own (a
        virtual path per node), then the level's weights on every node kept so far. Returns
        the level's integrals of the ``active`` paths."""
        job, m = self.job, new.shape[0]
        ids = (active[:, None] * m + np.arange(m)[None, :]).ravel()
        job.split_paths(m)
        try:
            taken = job.evaluate(ids, [new[i % m : i % m + 1] for i in range(ids.shape[0])],
                                 [np.ones(1)] * ids.shape[0])
        finally:
            job.split_paths(1)
        job.recorder.level(active, new, taken)
        grads = taken.sums.reshape(-1, m, *job.diff.shape[1:])[active]
        self._kept.append((active, new, grads))
        integral = np.zeros((active.shape[0], *job.diff.shape[1:]))
        for paths, kept_alphas, kept in self._kept:
            at = np.abs(kept_alphas[:, None] - alphas[None, :]).argmin(axis=1)
            rows = np.searchsorted(paths, active)
            # einsum, not tensordot: no BLAS threads left spinning beside the model (l2_norm).
            integral += np.einsum("k,pk...->p...", weights[at], kept[rows])
        return integral

    def accept(self, active: np.ndarray, level_attr: np.ndarray, n: int) -> None:
        """Takes a level's attributions of ``active`` paths and stops those that meet tol."""
        job, tol = self.job, self.auto.tol
        gap = job.score - job.base_score
        flat = level_attr.reshape(active.shape[0], -1).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(flat - gap[active]) / np.abs(gap[active])
        rel = np.where(gap[active] == 0, np.where(flat == 0, 0.0, np.inf), rel)
        if job.unchanged is not None:
            # F(x) = F(x'): completeness says nothing here; the error estimate decides.
            rel = np.where(job.unchanged[active], 0.0, rel)
        if self.steps[active].max(initial=0) > 0:
            change = np.array([relative_change(level_attr[j], self.attr[p])
                               for j, p in enumerate(active)])
            self.change[active, 0] = self.change[active, 1]
            self.change[active, 1] = change
        self.attr[active] = level_attr
        self.steps[active] = n
        self.completeness[active] = rel
        finished = (rel <= tol) & (self.estimate()[active] <= tol)
        self.met[active[finished]] = True
        self.active = active[~finished]

    def run(self) -> None:
        while self.step():
            pass

    def finish_at(self, depth: int) -> Integrated:
        """The finest level of every path; warns for the paths that missed tol (``depth``:
        calls between this and the strategy's ``run``)."""
        missed = int((~self.met).sum())
        if missed:
            _warn_not_converged(missed, self.job.n_paths, int(self.evals.max()), self.auto.tol,
                                depth + 1)
        return Integrated(self.attr, self.steps, self.evals, self.estimate(), self.met.copy(),
                          self.rule.name)


class AdaptiveStrategy(Strategy):
    """``method="adaptive"``: a pilot, then nodes where the integrand is rough
    (``igkit.core.adaptive``); for ``steps="auto"`` cell by cell until the tolerance is met."""

    name = "adaptive"

    def run(self, job: PathJob) -> Integrated:
        auto = job.auto
        attr, used, evals, met, estimate = run_adaptive(
            job.session, job.diff, job.score - job.base_score,
            steps=None if auto else int(cast(int, job.steps)),
            tol=auto.tol if auto else job.tol,
            max_steps=auto.max_steps if auto else 0, batch_size=job.batch_size,
            accumulate=job.evaluate, record=job.recorder.point, split_paths=job.split_paths,
            unchanged=job.unchanged,
        )
        if auto is not None and not met.all():
            _warn_not_converged(int((~met).sum()), job.n_paths, int(evals.max()), auto.tol)
        return Integrated(attr, used, evals, estimate, met)


class SecantStrategy(Strategy):
    """``method="secant"``: pieces of the path, each integrated by one secant backward pass
    (``igkit.core.pieces``), on sessions declaring ``interval_accumulation``. Each piece is
    complete to rounding where the session has an exact rule for every operation of the model,
    which reduced precision would break. Operations without one run on their midpoint gradient
    (``IntervalSession.unhandled_ops``): completeness then measures a real error, which
    ``steps="auto"`` refines until it is within ``tol``, and a ``SecantFallbackWarning`` names
    those operations when the attributions miss ``tol``. Its error estimate (the only accuracy
    signal where completeness is exact) is the pieces' own (``igkit.core.pieces``)."""

    name = "secant"
    needs = ("interval_accumulation",)
    exact_only = True

    def run(self, job: PathJob) -> Integrated:
        return self.integrate(job, self.start(job), None, depth=1)

    @staticmethod
    def start(job: PathJob) -> SecantRun:
        """A ``SecantRun`` over the job's session."""
        session = cast(IntervalSession, job.session)

        def accumulate(rows: RowBatch) -> tuple[Taken, np.ndarray, float]:
            before = session.piece_residual
            counts = session.accumulate_intervals(rows, job.batch_size)
            return session.take(), counts, session.piece_residual - before

        return SecantRun(accumulate, job.split_paths, job.diff, job.score - job.base_score,
                         job.unchanged)

    def integrate(self, job: PathJob, run: SecantRun, pilot: tuple | None, depth: int,
                  method: str | None = None) -> Integrated:
        """Runs ``run`` (its pilot already taken when ``pilot`` is given); ``depth``: calls
        between this and the strategy's ``run``, for the warnings' stack level."""
        session = cast(IntervalSession, job.session)
        auto = job.auto
        steps = None if auto else int(cast(int, job.steps))
        attr, used, met, estimate = run.run(
            np.arange(job.n_paths), steps, auto.tol if auto else job.tol,
            auto.max_steps if auto else cast(int, steps), job.recorder.pieces, pilot=pilot,
        )
        if auto is not None and not met.all():
            _warn_not_converged(int((~met).sum()), job.n_paths, int(run.evaluations.max()),
                                auto.tol, depth)
        ops = sorted(session.unhandled_ops)
        if ops:
            misses = np.array([run.completeness_miss(p, attr[p]) for p in range(job.n_paths)])
            if misses.max() > job.tol:
                gaps = float(np.abs(job.score - job.base_score).sum())
                _warn_secant_fallback(ops, float(misses.max()), run.residual / max(gaps, 1e-300),
                                      job.tol, depth)
        return Integrated(attr, used, run.evaluations, estimate, met, method)


class AutoStrategy(Strategy):
    """``method="auto"``: for ``steps="auto"`` Fejer's nested rule on smooth networks and secant
    on the others, told apart by how fast Fejer converges on the call's own paths; Gauss-Legendre
    where secant cannot run, and for a fixed step count.

    * Secant needs a session declaring ``interval_accumulation`` and exact ``float32``
      precision. Without either, "auto" is Gauss-Legendre (``steps="auto"`` doubling its nodes
      from 8 until ``tol``).
    * A fixed step count runs Gauss-Legendre, on every backend: ``steps`` is then exactly the
      gradient evaluations per path (a secant count is pieces, plus a pilot), the same call
      gives the same numbers in every framework, and nothing is measured to choose from.
      Pass ``method="secant"`` for a fixed number of secant pieces.
    * ``steps="auto"`` with secant available probes first (:meth:`probe`): Fejer's second rule
      at 3, 7 and 15 nodes, nested (the 15 contain the 7 and the 3, so the probe costs 15
      evaluations and a smooth network keeps all of them). Where a unit switches (ReLU,
      max-pooling, hard-swish) the integrand jumps and a point rule's error only halves as its
      nodes double; on smooth networks (GELU, LayerNorm, attention) it falls geometrically, and
      a point rule beats secant's second order. So the call continues with Fejer (31, 63, ...
      nodes) while its changes fall by ``SMOOTH_RATE`` or more from level to level (median over
      the call's paths), and hands over to secant otherwise, or once ``MAX_KEPT_NODES`` would
      be passed. The probe's evaluations count towards ``max_steps`` and
      ``Result.evaluations``.

    ``Result.method`` records the rule that ran ("secant", "fejer" or "gauss_legendre").
    """

    name = "auto"
    #: Fejer continues while the ratio of its last two changes is at most this: 0.05-0.17 on
    #: the smooth nets of the model zoo (ConvNeXt-, ViT-style, all-MiniLM-L6-v2), 0.45-0.55 on
    #: the ReLU-type ones (EfficientNet-Lite0, ResNet-, MobileNetV3-style, a ReLU Sequential),
    #: where the error halves per doubling (benchmarks/RESULTS.md, "Model zoo").
    SMOOTH_RATE = 0.3
    #: Fejer keeps each node's gradient (a copy of the input per node and path); past this many
    #: nodes the network is not smooth enough for it to pay, and secant takes over.
    MAX_KEPT_NODES = 127
    #: Below this many evaluations per path there is no room for a probe and a secant run.
    MIN_PROBE_BUDGET = 96

    def pick(self, capabilities: Capabilities, precision: str = "float32") -> str:
        """The rule ``steps="auto"`` starts from: "secant" where the session can run it, else
        "gauss_legendre"."""
        return "secant" if not SECANT.unsupported(capabilities, precision) else "gauss_legendre"

    def run(self, job: PathJob) -> Integrated:
        from igkit.core.quadrature import get_rule

        gauss = replace(job, rule=get_rule("gauss_legendre"))
        auto = job.auto
        if auto is None:
            return POINT_RULE.run(gauss)._replace(method="gauss_legendre")
        if self.pick(job.capabilities, job.precision) == "gauss_legendre":
            gl = PointRefinement(gauss, auto)
            gl.run()
            return gl.finish_at(depth=2)
        if auto.max_steps < self.MIN_PROBE_BUDGET:
            return SECANT.integrate(replace(job, rule=get_rule("secant")), SECANT.start(job),
                                    None, depth=2, method="secant")
        return self.probe(job)

    def probe(self, job: PathJob) -> Integrated:
        """Fejer at 3, 7 and 15 nodes, then more Fejer levels while they converge
        geometrically, else secant (see the class)."""
        from igkit.core.quadrature import get_rule

        fejer = PointRefinement(replace(job, rule=get_rule("fejer")), cast(AutoSteps, job.auto))
        for _ in range(3):
            fejer.step()
        while fejer.active.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                rates = fejer.change[fejer.active, 1] / fejer.change[fejer.active, 0]
            level = fejer._done_levels
            if (np.median(np.nan_to_num(rates, nan=1.0)) > self.SMOOTH_RATE
                    or level >= len(fejer.levels)
                    or fejer.levels[level] > self.MAX_KEPT_NODES):
                run = SECANT.start(job)
                run.evaluations += fejer.evals
                return SECANT.integrate(job, run, None, depth=3, method="secant")
            if not fejer.step():
                break
        return fejer.finish_at(depth=3)


POINT_RULE = PointRuleStrategy()
ADAPTIVE = AdaptiveStrategy()
SECANT = SecantStrategy()
AUTO = AutoStrategy()


def _warn_secant_fallback(ops: list[str], miss: float, residual: float, tol: float,
                          depth: int = 0) -> None:
    # Called from a strategy's run: the warning points at the caller of the public function.
    warnings.warn(
        f"method='secant' has no exact rule for {', '.join(ops)}: it followed "
        f"{'them' if len(ops) > 1 else 'it'} by the gradient at each piece's midpoint, so "
        f"completeness measures a real error, {miss:.2%} of F(x) - F(x') (tol={tol:g}; the "
        f"pieces' |residuals| sum to {residual:.2%} of |F(x) - F(x')|). Pass more steps or "
        "steps='auto' (which refines until both errors are within tol), or "
        "method='gauss_legendre'",
        SecantFallbackWarning,
        stacklevel=5 + depth,
    )


def _warn_not_converged(missed: int, n_paths: int, evaluations: int, tol: float,
                        depth: int = 0) -> None:
    # Called from a strategy's run (``depth`` calls below it): the warning points at the
    # caller of the public function.
    warnings.warn(
        f"steps='auto' spent {evaluations} gradient evaluations without meeting tol={tol} on "
        f"{missed} of {n_paths} paths; their results are the finest level computed and "
        "converged is False for them (raise max_steps or tol)",
        NotConvergedWarning,
        stacklevel=5 + depth,
    )
