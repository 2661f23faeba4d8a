"""The Integrated Gradients loop, written once for every framework.

It plans paths and rows, feeds batches to a backend ``Session`` and turns the per-path gradient
sums into attributions and completeness numbers. It imports NumPy only: the backends do the
framework work, and the same loop is tested on analytic models through a NumPy session.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from igkit.backends.base import OutOfMemory, Session, Taken
from igkit.core.adaptive import run_adaptive
from igkit.core.completeness import completeness, relative_change
from igkit.core.planner import RowBatch, all_rows
from igkit.core.quadrature import Rule, get_rule, nodes_and_weights
from igkit.core.result import PathTrace, Result
from igkit.core.targets import TargetPlan, resolve_target_plan, resolve_targets

__all__ = [
    "AutoSteps",
    "NotConvergedWarning",
    "TargetPlan",
    "resolve_target_plan",
    "resolve_targets",
    "run_integrated_gradients",
]


class NotConvergedWarning(RuntimeWarning):
    """``steps="auto"`` reached ``max_steps`` before meeting its tolerance for some inputs."""


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


def _accumulate_all(session: Session, rows: RowBatch, batch_size: int) -> None:
    """Feeds all rows to the session in batches, halving a batch that runs out of memory.

    A session with ``accumulate_rows`` takes the whole level at once, so it can move the plan
    to the device in one copy instead of one blocking copy per batch.
    """
    whole = getattr(session, "accumulate_rows", None)
    if whole is not None:
        whole(rows, batch_size)
        return
    for start in range(0, len(rows), batch_size):
        pending = [rows.slice(start, start + batch_size)]
        while pending:
            b = pending.pop()
            try:
                session.accumulate(b)
            except OutOfMemory:
                if len(b) == 1:
                    raise
                half = len(b) // 2
                pending.append(b.slice(half, len(b)))
                pending.append(b.slice(0, half))


def _level(
    session: Session,
    paths: np.ndarray,
    alphas: np.ndarray,
    weights: np.ndarray,
    batch_size: int,
) -> Taken:
    plist = [int(p) for p in paths]
    _accumulate_all(
        session, all_rows(plist, [alphas] * len(plist), [weights] * len(plist)), batch_size
    )
    return session.take()


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


def run_integrated_gradients(
    session: Session,
    inputs: np.ndarray,
    baselines: list[tuple[str, np.ndarray]],
    *,
    target: object,
    method: str,
    steps: int | AutoSteps,
    tol: float,
    batch_size: int,
    return_path: bool = False,
) -> Result:
    """Computes IG for a batch of inputs (shape ``(N, ...)``) against one or more baselines.

    ``target`` takes every form of :func:`igkit.core.targets.resolve_target_plan`: the inputs'
    (input, class) pairs are the explanations, and pair ``r`` with baseline ``b`` is path
    ``p = r * B + b``, running from baseline ``b`` of the pair's input to that input. All paths
    share the row batches, so several classes of one input cost no extra model calls beyond
    their rows. With several baselines a pair's attribution is the mean of its paths'
    attributions, its baseline score the mean of theirs.
    """
    rule = get_rule(method)
    n_inputs = inputs.shape[0]
    n_base = len(baselines)
    base_stack = np.stack([baselines[b][1][i] for i in range(n_inputs) for b in range(n_base)])
    # F(x) and F(x') in one forward pass: one model call instead of two.
    both = session.outputs(np.concatenate([inputs, base_stack.astype(inputs.dtype, copy=False)]))
    outputs, base_out = both[:n_inputs], both[n_inputs:]
    plan = resolve_target_plan(target, outputs)
    n_pairs = len(plan)
    pair_score = outputs[plan.pair_input, plan.pair_target]

    path_pair = np.repeat(np.arange(n_pairs), n_base)
    path_input = plan.pair_input[path_pair]
    path_target = plan.pair_target[path_pair]
    # Baseline b of input i is row i * B + b of base_stack.
    path_base_row = path_input * n_base + np.tile(np.arange(n_base), n_pairs)
    path_base_score = base_out[path_base_row, path_target]
    path_score = pair_score[path_pair]
    if n_pairs != n_inputs or plan.multi:
        base_stack = base_stack[path_base_row]
    session.set_paths(inputs, base_stack, path_input, path_target)

    diff = inputs[path_input].astype(np.float64) - base_stack.astype(np.float64)
    n_paths = path_input.shape[0]
    all_paths = np.arange(n_paths)
    trace_rows: list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = [
        [] for _ in range(n_paths)
    ]

    def record(paths: np.ndarray, alphas: np.ndarray, taken: Taken, replace: bool = False) -> None:
        """Keeps each path's scores (and mean |gradient|) when a trace was asked for; a
        non-nested refinement replaces the coarser level instead of adding to it."""
        if not return_path:
            return
        k = alphas.shape[0]
        for j, p in enumerate(paths):
            sl = slice(j * k, (j + 1) * k)
            grads = None if taken.mean_abs_gradient is None else taken.mean_abs_gradient[sl]
            if replace:
                trace_rows[p].clear()
            trace_rows[p].append((alphas, taken.scores[sl], grads))

    def split_paths(k: int) -> None:
        """Path ``p * k + j`` becomes a copy of path ``p`` (``k = 1``: the real paths)."""
        session.set_paths(inputs, np.repeat(base_stack, k, axis=0),
                          np.repeat(path_input, k), np.repeat(path_target, k))

    def record_pieces(paths: np.ndarray, ends: list, taken: Taken, replace: bool) -> None:
        """A secant pass's scores at each path's own piece ends: replacing the pilot's, or
        (a refinement of some regions) added where no point was evaluated yet."""
        if not return_path:
            return
        start = 0
        for p, e in zip(paths, ends, strict=True):
            scores = taken.scores[start : start + e.shape[0]]
            start += e.shape[0]
            if replace:
                trace_rows[p].clear()
            else:
                new = ~np.isin(e, np.concatenate([r[0] for r in trace_rows[p]]))
                e, scores = e[new], scores[new]
            trace_rows[p].append((e, scores, None))

    if rule.adaptive:

        def record_one(p: int, a: np.ndarray, sc: np.ndarray, g: np.ndarray | None) -> None:
            if return_path:
                trace_rows[p].append((a, sc, g))

        def run_rows(paths: np.ndarray, alphas: list, weights: list) -> Taken:
            _accumulate_all(session, all_rows([int(p) for p in paths], alphas, weights),
                            batch_size)
            return session.take()

        auto = steps if isinstance(steps, AutoSteps) else None
        path_attr, path_steps, path_evals, met = run_adaptive(
            session, diff, path_score - path_base_score,
            steps=None if auto else int(steps), tol=auto.tol if auto else tol,
            max_steps=auto.max_steps if auto else 0, batch_size=batch_size,
            accumulate=run_rows, record=record_one, split_paths=split_paths,
        )
        if auto is not None and not met.all():
            _warn_not_converged(int((~met).sum()), n_paths, int(path_steps.max()), auto.tol)
    elif rule.secant:
        path_attr, path_steps, path_evals = _secant(
            session, diff, path_score - path_base_score, steps, tol, batch_size, split_paths,
            record_pieces,
        )
    elif isinstance(steps, AutoSteps):
        path_attr, path_steps, path_evals = _auto(
            session, rule, all_paths, diff, path_base_score, path_score, steps,
            batch_size, record,
        )
    else:
        alphas, weights = nodes_and_weights(method, steps)
        taken = _level(session, all_paths, alphas, weights, batch_size)
        record(all_paths, alphas, taken)
        path_attr = diff * taken.sums
        path_steps = np.full(n_paths, int(steps), dtype=np.int64)
        path_evals = path_steps

    # Completeness is judged on the attributions handed back, after the cast to the input dtype.
    attr = path_attr.reshape(n_pairs, n_base, *inputs.shape[1:]).mean(axis=1)
    attr = attr.astype(inputs.dtype, copy=False)
    baseline_score = path_base_score.reshape(n_pairs, n_base).mean(axis=1)
    delta, rel = completeness(attr, pair_score, baseline_score)
    pair_steps = path_steps.reshape(n_pairs, n_base).max(axis=1)
    trace = _make_trace(trace_rows, n_base, n_pairs) if return_path else None
    return Result(
        attributions=plan.scatter(attr, 0),
        delta=plan.scatter(delta, np.nan),
        relative_error=plan.scatter(rel, np.nan),
        score=plan.scatter(pair_score, np.nan),
        baseline_score=plan.scatter(baseline_score, np.nan),
        target=plan.scatter(plan.pair_target, -1),
        steps=plan.scatter(pair_steps.astype(np.int64), 0),
        method=method,
        tol=float(tol),
        converged=plan.scatter(rel <= tol, False),
        evaluations=plan.scatter(
            path_evals.reshape(n_pairs, n_base).sum(axis=1).astype(np.int64), 0
        ),
        baselines=tuple(label for label, _ in baselines),
        path=trace,
        target_mask=plan.mask,
    )


def _auto(
    session: Session,
    rule: Rule,
    paths: np.ndarray,
    diff: np.ndarray,
    base_score: np.ndarray,
    score: np.ndarray,
    auto: AutoSteps,
    batch_size: int,
    record,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refines each path until it meets ``auto.tol`` (see AutoSteps) or ``auto.max_steps``.

    Nested rules evaluate only the new nodes of each level: their weights are ``c(n) * r_k`` with
    ``r_k`` fixed per node (1 inside, 1/2 at the trapezoid's ends), so the device accumulates
    ``sum r_k g_k`` across levels and the level's integral is ``c(n)`` times that.
    """
    n_paths = paths.shape[0]
    attr = np.zeros_like(diff)
    steps_used = np.zeros(n_paths, dtype=np.int64)
    evals = np.zeros(n_paths, dtype=np.int64)
    raw = np.zeros_like(diff)
    prev = np.zeros_like(diff)
    active = paths.copy()
    levels = _nested_levels(rule, auto.max_steps) if rule.nested else _doubling_levels(
        rule, auto.max_steps
    )
    old_alphas = np.empty(0)
    gap = score - base_score
    for li, n in enumerate(levels):
        alphas, weights = nodes_and_weights(rule.name, n)
        if rule.nested:
            c = weights.max()
            relw = weights / c
            is_new = ~np.isclose(alphas[:, None], old_alphas[None, :], rtol=0, atol=1e-12).any(
                axis=1
            ) if old_alphas.size else np.ones(alphas.shape[0], dtype=bool)
            taken = _level(session, active, alphas[is_new], relw[is_new], batch_size)
            record(active, alphas[is_new], taken)
            evals[active] += int(is_new.sum())
            raw[active] += taken.sums[active]
            integral = c * raw[active]
            old_alphas = alphas
        else:
            taken = _level(session, active, alphas, weights, batch_size)
            record(active, alphas, taken, replace=True)
            evals[active] += n
            integral = taken.sums[active]
        level_attr = diff[active] * integral
        steps_used[active] = n
        flat = level_attr.reshape(active.shape[0], -1).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(flat - gap[active]) / np.abs(gap[active])
        rel = np.where(gap[active] == 0, np.where(flat == 0, 0.0, np.inf), rel)
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
    if active.size:
        _warn_not_converged(active.size, n_paths, int(steps_used.max()), auto.tol)
    return attr, steps_used, evals


def _secant(session, diff, gap, steps, tol, batch_size, split_paths, record):
    """``method="secant"`` (see ``igkit.core.pieces``)."""
    from igkit.core.pieces import SecantRun, _NotSecantModel

    if not hasattr(session, "accumulate_intervals"):
        raise ValueError("method='secant' needs a PyTorch model; use method='gauss_legendre'")

    def accumulate(rows: RowBatch):
        before = session.piece_residual
        counts = session.accumulate_intervals(rows, batch_size)
        return session.take(), counts, session.piece_residual - before

    run = SecantRun(accumulate, split_paths, diff, gap)
    auto = steps if isinstance(steps, AutoSteps) else None
    try:
        attr, used, met = run.run(
            np.arange(diff.shape[0]), None if auto else int(steps),
            auto.tol if auto else tol, auto.max_steps if auto else int(steps), record,
        )
    except _NotSecantModel as exc:
        ops = sorted(getattr(session, "unhandled_ops", set()))
        named = f" (operations it could not follow: {', '.join(ops)})" if ops else ""
        raise ValueError(
            "method='secant' needs a model whose only nonlinearities are elementwise "
            f"activations such as ReLU, ReLU6, SiLU or GELU; this one has others{named}: "
            f"pieces of the path miss completeness by {exc.miss:.2%} of F(x) - F(x'). Use "
            "method='gauss_legendre' or 'adaptive' for this model"
        ) from None
    if auto is not None and not met.all():
        _warn_not_converged(int((~met).sum()), diff.shape[0], int(used.max()), auto.tol)
    return attr, used, run.evaluations


def _warn_not_converged(missed: int, n_paths: int, steps: int, tol: float) -> None:
    warnings.warn(
        f"steps='auto' reached {steps} steps without meeting tol={tol} on {missed} of "
        f"{n_paths} paths; their results are the finest level computed (raise max_steps or tol)",
        NotConvergedWarning,
        stacklevel=5,
    )


def _make_trace(rows, n_base: int, n_inputs: int) -> PathTrace:
    alphas, scores, grads = [], [], []
    for i in range(n_inputs):
        parts = rows[i * n_base]
        a = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts])
        order = np.argsort(a, kind="stable")
        alphas.append(a[order])
        scores.append(s[order])
        if parts and parts[0][2] is not None:
            grads.append(np.concatenate([p[2] for p in parts])[order])
        else:
            grads.append(np.full(a.shape, np.nan))
    return PathTrace(alphas, scores, grads)
