"""The Integrated Gradients loop, written once for every framework.

It plans paths and rows, feeds batches to a backend ``Session`` and turns the per-path gradient
sums into attributions and completeness numbers. How the paths are integrated is the rule's
strategy (``rule.strategy``, see ``igkit.core.strategies``); what the session can do is its
declared ``Capabilities``. It imports NumPy only: the backends do the framework work, and the
same loop is tested on analytic models through a NumPy session.
"""

from __future__ import annotations

import numpy as np

from igkit.backends.base import Session, capabilities_of
from igkit.core.completeness import completeness
from igkit.core.quadrature import get_rule
from igkit.core.result import Result
from igkit.core.strategies import AutoSteps, NotConvergedWarning, PathJob, PathRecorder
from igkit.core.targets import TargetPlan, resolve_target_plan, resolve_targets

__all__ = [
    "AutoSteps",
    "NotConvergedWarning",
    "TargetPlan",
    "resolve_target_plan",
    "resolve_targets",
    "run_integrated_gradients",
]


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
    capabilities = capabilities_of(session)
    missing = rule.strategy.unsupported(capabilities)
    if missing:
        raise ValueError(
            f"method={method!r} needs a session declaring {', '.join(missing)} (see "
            "igkit.backends.base.Capabilities), which this one does not; use "
            "method='gauss_legendre' or 'adaptive'"
        )
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

    def split_paths(k: int) -> None:
        """Path ``p * k + j`` becomes a copy of path ``p`` (``k = 1``: the real paths)."""
        session.set_paths(inputs, np.repeat(base_stack, k, axis=0),
                          np.repeat(path_input, k), np.repeat(path_target, k))

    diff = inputs[path_input].astype(np.float64) - base_stack.astype(np.float64)
    recorder = PathRecorder(path_input.shape[0], return_path)
    job = PathJob(
        session=session, capabilities=capabilities, rule=rule, steps=steps, tol=tol,
        batch_size=batch_size, diff=diff, score=path_score, base_score=path_base_score,
        recorder=recorder, split_paths=split_paths,
    )
    path_attr, path_steps, path_evals = rule.strategy.run(job)

    # Completeness is judged on the attributions handed back, after the cast to the input dtype.
    attr = path_attr.reshape(n_pairs, n_base, *inputs.shape[1:]).mean(axis=1)
    attr = attr.astype(inputs.dtype, copy=False)
    baseline_score = path_base_score.reshape(n_pairs, n_base).mean(axis=1)
    delta, rel = completeness(attr, pair_score, baseline_score)
    pair_steps = path_steps.reshape(n_pairs, n_base).max(axis=1)
    trace = recorder.trace(n_base, n_pairs) if return_path else None
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
