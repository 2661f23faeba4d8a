"""The Integrated Gradients loop, written once for every framework.

It plans paths and rows, feeds batches to a backend ``Session`` and turns the per-path gradient
sums into attributions and completeness numbers. How the paths are integrated is the rule's
strategy (``rule.strategy``, see ``igkit.core.strategies``); what the session can do is its
declared ``Capabilities``. It imports NumPy only: the backends do the framework work, and the
same loop is tested on analytic models through a NumPy session.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import numpy as np

from igkit.backends.base import RawOutputSession, Session, capabilities_of
from igkit.core.checks import (
    NothingToAttributeWarning,
    OutputTransformWarning,
    check_finite_outputs,
    check_output_transform,
    unchanged,
)
from igkit.core.completeness import completeness
from igkit.core.quadrature import get_rule
from igkit.core.result import Result
from igkit.core.strategies import AutoSteps, NotConvergedWarning, PathJob, PathRecorder
from igkit.core.targets import TargetPlan, resolve_target_plan, resolve_targets

__all__ = [
    "AutoSteps",
    "NotConvergedWarning",
    "NothingToAttributeWarning",
    "OutputTransformWarning",
    "TargetPlan",
    "first_forward",
    "resolve_target_plan",
    "resolve_targets",
    "run_integrated_gradients",
]

#: How many explanations a warning or error names before "and N more".
_NAMED = 6


def first_forward(
    session: Session,
    x: np.ndarray,
    describe_failure: Callable[[BaseException], str | None] | None = None,
    what: str = "",
) -> tuple[np.ndarray, np.ndarray | None]:
    """The first forward pass of a call: transformed outputs and, where the session declares
    ``raw_outputs``, the model's own.

    When the model fails here, ``describe_failure(exc)`` may name the likely mistake (a layout
    or dtype the model does not take); its message is raised as a ValueError with the
    framework's error chained. Otherwise the framework's error goes up as it is, with a note
    saying what the batch held (``what``), since it was not what the caller passed.
    """
    try:
        if capabilities_of(session).raw_outputs:
            return cast(RawOutputSession, session).outputs_and_raw(x)
        return session.outputs(x), None
    except Exception as exc:
        message = describe_failure(exc) if describe_failure is not None else None
        if message:
            raise ValueError(message) from exc
        if what and hasattr(exc, "add_note"):
            exc.add_note(f"igkit: the model was called on {what}: a batch of shape {x.shape}")
        raise


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
    output: object = None,
    describe_failure: Callable[[BaseException], str | None] | None = None,
    precision: str = "float32",
) -> Result:
    """Computes IG for a batch of inputs (shape ``(N, ...)``) against one or more baselines.

    ``target`` takes every form of :func:`igkit.core.targets.resolve_target_plan`: the inputs'
    (input, class) pairs are the explanations, and pair ``r`` with baseline ``b`` is path
    ``p = r * B + b``, running from baseline ``b`` of the pair's input to that input. All paths
    share the row batches, so several classes of one input cost no extra model calls beyond
    their rows. With several baselines a pair's attribution is the mean of its paths'
    attributions, its baseline score the mean of theirs.

    Before any path is evaluated the outputs are checked (``igkit.core.checks``): NaN outputs
    and infinite explained scores are refused by name, and so is ``output`` "softmax" or
    "sigmoid" (the name the session's transform was built from; None skips the check) over a
    model that already returns probabilities. ``describe_failure`` names the likely mistake
    when the first forward pass fails (see :func:`first_forward`). Afterwards, non-finite
    attributions are refused; explanations with F(x) = F(x') warn
    ``NothingToAttributeWarning`` (relative error NaN, not converged), and with a fixed step
    count those that miss ``tol`` warn ``NotConvergedWarning``, as ``steps="auto"`` does.

    ``precision`` is the call's ``precision=``: ``method="auto"`` runs secant only at
    "float32". ``Result.method`` is the rule that ran (for "auto", the one it chose).
    """
    rule = get_rule(method)
    capabilities = capabilities_of(session)
    missing = rule.strategy.unsupported(capabilities, precision)
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
    what = (
        f"the {n_inputs} input{'s' if n_inputs > 1 else ''} and {n_inputs * n_base} "
        f"baseline{'s' if n_inputs * n_base > 1 else ''} together"
    )
    both, raw = first_forward(
        session, np.concatenate([inputs, base_stack.astype(inputs.dtype, copy=False)]),
        describe_failure, what,
    )
    names = [f"input {i} (F(x))" for i in range(n_inputs)] + [
        f"the {baselines[b][0]!r} baseline of input {i} (F(x'))"
        for i in range(n_inputs) for b in range(n_base)
    ]
    check_finite_outputs(both, names)
    check_output_transform(output, both, raw, session.dtype)
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
    _check_finite_scores(path_score, path_base_score, path_input, path_target, path_base_row,
                         names[n_inputs:])
    if n_pairs != n_inputs or plan.multi:
        base_stack = base_stack[path_base_row]
    session.set_paths(inputs, base_stack, path_input, path_target)
    split = [1]

    def split_paths(k: int) -> None:
        """Path ``p * k + j`` becomes a copy of path ``p`` (``k = 1``: the real paths)."""
        split[0] = k
        session.set_paths(inputs, np.repeat(base_stack, k, axis=0),
                          np.repeat(path_input, k), np.repeat(path_target, k))

    def describe_path(p: int) -> str:
        """The explanation a path (or a virtual copy of one) belongs to, in words."""
        real = p // split[0]
        label = baselines[int(path_base_row[real]) % n_base][0]
        return (f"the path of input {int(path_input[real])} (class {int(path_target[real])}) "
                f"from its {label!r} baseline")

    diff = inputs[path_input].astype(np.float64) - base_stack.astype(np.float64)
    recorder = PathRecorder(path_input.shape[0], return_path)
    job = PathJob(
        session=session, capabilities=capabilities, rule=rule, steps=steps, tol=tol,
        batch_size=batch_size, diff=diff, score=path_score, base_score=path_base_score,
        recorder=recorder, split_paths=split_paths,
        unchanged=unchanged(path_score, path_base_score, session.dtype),
        describe_path=describe_path, precision=precision,
    )
    done = rule.strategy.run(job)
    path_attr, path_steps, path_evals = done.attributions, done.steps, done.evaluations
    bad = ~np.isfinite(path_attr.reshape(path_attr.shape[0], -1)).all(axis=1)
    if bad.any():
        raise ValueError(
            f"the gradients along {describe_path(int(np.flatnonzero(bad)[0]))} are not finite "
            f"(NaN or Inf; method={method!r}), so its attributions would be NaN: the model's "
            "gradient is not finite somewhere on the path (e.g. sqrt, log or a division at 0); "
            "fix the model there, or pass another baseline"
        )

    # Completeness is judged on the attributions handed back, after the cast to the input dtype.
    attr = path_attr.reshape(n_pairs, n_base, *inputs.shape[1:]).mean(axis=1)
    attr = attr.astype(inputs.dtype, copy=False)
    baseline_score = path_base_score.reshape(n_pairs, n_base).mean(axis=1)
    flat = unchanged(pair_score, baseline_score, session.dtype)
    delta, rel = completeness(attr, pair_score, baseline_score, flat)
    pair_steps = path_steps.reshape(n_pairs, n_base).max(axis=1)
    estimate = _pair_estimate(done.error_estimate, path_attr, attr, n_pairs, n_base)
    met = (np.ones(n_pairs, dtype=bool) if done.met is None
           else done.met.reshape(n_pairs, n_base).all(axis=1))
    trace = recorder.trace(n_base, n_pairs) if return_path else None
    if flat.any():
        _warn_nothing_to_attribute(flat, plan, pair_score, baseline_score)
    if not isinstance(steps, AutoSteps):
        _warn_fixed_steps_missed(~flat & (rel > tol), plan, rel, done.method or method,
                                 int(steps), tol)
    return Result(
        attributions=plan.scatter(attr, 0),
        delta=plan.scatter(delta, np.nan),
        relative_error=plan.scatter(rel, np.nan),
        score=plan.scatter(pair_score, np.nan),
        baseline_score=plan.scatter(baseline_score, np.nan),
        target=plan.scatter(plan.pair_target, -1),
        steps=plan.scatter(pair_steps.astype(np.int64), 0),
        method=done.method or method,
        tol=float(tol),
        converged=plan.scatter((rel <= tol) & met, False),
        evaluations=plan.scatter(
            path_evals.reshape(n_pairs, n_base).sum(axis=1).astype(np.int64), 0
        ),
        baselines=tuple(label for label, _ in baselines),
        error_estimate=plan.scatter(estimate, np.nan),
        path=trace,
        target_mask=plan.mask,
    )


def _pair_estimate(
    path_estimate: np.ndarray | None, path_attr: np.ndarray, attr: np.ndarray, n_pairs: int,
    n_base: int,
) -> np.ndarray:
    """Each explanation's relative L2 error estimate from its paths': the paths' absolute
    error norms (estimate times ``||path attributions||``) combined as independent errors of
    the mean over baselines, relative to ``||attributions||``. NaN where a path has none."""
    if path_estimate is None:
        return np.full(n_pairs, np.nan)
    path_norm = np.linalg.norm(path_attr.reshape(path_attr.shape[0], -1), axis=1)
    with np.errstate(invalid="ignore"):
        absolute = (np.asarray(path_estimate, dtype=np.float64) * path_norm).reshape(
            n_pairs, n_base)
    combined = np.sqrt(np.sum(absolute**2, axis=1)) / n_base
    norm = np.linalg.norm(attr.reshape(n_pairs, -1).astype(np.float64), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = combined / norm
    if n_base == 1:
        # One path: its own estimate, exactly (0 * inf stays as the estimate said).
        return np.asarray(path_estimate, dtype=np.float64).reshape(n_pairs)
    return np.where(norm > 0, rel, np.where(combined == 0, 0.0, np.inf))


def _check_finite_scores(
    score: np.ndarray, base_score: np.ndarray, path_input: np.ndarray, path_target: np.ndarray,
    path_base_row: np.ndarray, base_names: list[str],
) -> None:
    """Refuses an infinite explained score (NaN was refused on the whole outputs before)."""
    for values, which in ((score, "x"), (base_score, "x'")):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            p = int(bad[0])
            where = (f"input {int(path_input[p])}" if which == "x"
                     else base_names[int(path_base_row[p])].removesuffix(" (F(x'))"))
            raise ValueError(
                f"the explained output F({which}) of class {int(path_target[p])} is "
                f"{values[p]:g} at {where}: an infinite score has no finite attributions; check "
                "the model (an overflow, a log of 0) or explain another output"
            )


def _pair_names(plan: TargetPlan, pairs: np.ndarray) -> tuple[list[int], str]:
    """The inputs of ``pairs`` (explanation indices) and ``input 0 (class 3)``-style names."""
    inputs = [int(plan.pair_input[r]) for r in pairs]
    shown = [f"input {int(plan.pair_input[r])} (class {int(plan.pair_target[r])})"
             for r in pairs[:_NAMED]]
    more = f" and {len(pairs) - _NAMED} more" if len(pairs) > _NAMED else ""
    return inputs, ", ".join(shown) + more


def _warn_nothing_to_attribute(
    flat: np.ndarray, plan: TargetPlan, score: np.ndarray, baseline_score: np.ndarray
) -> None:
    pairs = np.flatnonzero(flat)
    r = int(pairs[0])
    _, named = _pair_names(plan, pairs)
    warnings.warn(
        f"nothing to attribute for {len(pairs)} of {len(flat)} explanations ({named}): the "
        f"explained output does not change from the baseline to the input (F(x) = "
        f"{score[r]:.6g}, F(x') = {baseline_score[r]:.6g}), so the attributions must add up to "
        "0 and completeness cannot be checked (their relative_error is NaN, converged False). "
        "A constant or saturated output, or an input equal to its baseline: explain another "
        "class, another output (e.g. output='raw' for logits) or against another baseline",
        NothingToAttributeWarning,
        stacklevel=4,
    )


def _warn_fixed_steps_missed(
    missed: np.ndarray, plan: TargetPlan, rel: np.ndarray, method: str, steps: int, tol: float
) -> None:
    """A fixed step count whose attributions miss completeness by more than ``tol``: the same
    warning class as ``steps="auto"`` reaching ``max_steps``, since the numbers are as unsure."""
    pairs = np.flatnonzero(missed)
    if not pairs.size:
        return
    shown = [f"input {int(plan.pair_input[r])} (class {int(plan.pair_target[r])}) "
             f"{rel[r]:.1%}" for r in pairs[:_NAMED]]
    more = f" and {len(pairs) - _NAMED} more" if len(pairs) > _NAMED else ""
    warnings.warn(
        f"completeness missed tol={tol:g} at a fixed {steps} steps ({method}) for "
        f"{len(pairs)} of {len(missed)} explanations: relative error {', '.join(shown)}{more}; "
        "their attributions are that far from what the model's change says. Pass more steps, "
        "or steps='auto' to refine until tol is met",
        NotConvergedWarning,
        stacklevel=4,
    )
