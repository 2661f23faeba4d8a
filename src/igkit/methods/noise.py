"""Noise methods: SmoothGrad, VarGrad, and the ``noise=`` option that wraps any method.

* ``smoothgrad`` (Smilkov et al. 2017): the mean of the gradients at ``samples`` noisy copies
  ``x + N(0, sigma^2)`` of the input; ``magnitude=True`` averages the squared gradients
  (PAIR's ``magnitude``, Captum's ``smoothgrad_sq``).
* ``vargrad`` (Adebayo et al. 2018): their variance, ``mean((g - mean g)^2)``, computed from
  the centred values so it is never negative (Captum's ``E[g^2] - E[g]^2`` can be, by rounding).
* ``igkit.attribute(..., noise={"samples": S, "stdev": s, "kind": K})`` (NoiseTunnel): any
  registered method runs once on all ``N * S`` noisy copies of the ``N`` inputs (so they share
  batches), each copy explained for its input's classes (resolved on the clean inputs) against
  its input's baselines (built from the clean inputs); ``kind`` aggregates the copies:
  "smoothgrad" (mean), "smoothgrad_sq" (mean of squares) or "vargrad" (variance).

``stdev`` is a fraction of the input range, as in Smilkov et al. and PAIR saliency: the noise's
standard deviation is ``stdev * (high - low)`` with ``(low, high)`` the ``input_range`` of the
call (given, or inferred as igkit does: [0, 1], [0, 255], [-1, 1] or the data's span). PAIR
takes the span of each image instead; pass ``input_range`` to fix the scale. Captum's ``stdevs``
is absolute: ``stdev=s`` with ``input_range=(0, 1)`` is Captum's ``stdevs=s``.

Every draw comes from the call's ``seed``: the noise first (input-major, ``(N, S, ...)``), then
whatever the wrapped method draws. The noisy copies of all inputs are held on the host at once
(``N * S`` examples); the device sees ``batch_size`` rows at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from igkit.core.baselines import BaselineContext, make_baselines
from igkit.core.checks import NothingToAttributeWarning
from igkit.core.result import Result
from igkit.core.targets import TargetPlan
from igkit.methods.context import _EXPLAIN_NOTHING, MethodContext, _warn_all_zero
from igkit.methods.options import choice, non_negative_float, positive_int
from igkit.methods.registry import MethodSpec, Option, register_method

__all__ = ["KINDS", "aggregate", "attribute_with_noise", "noisy_copies"]

#: How the attributions of the noisy copies are combined (Captum's ``nt_type`` names).
KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noisy_copies(
    rng: np.random.Generator, x: np.ndarray, samples: int, sigma: float
) -> np.ndarray:
    """``(N, samples, *example_shape)``: ``x + N(0, sigma^2)``, drawn input-major from ``rng``.

    The noise is drawn in the inputs' dtype (float32 noise for float32 inputs: half the host
    memory of float64, and the copies are cast to it anyway).
    """
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    noise = rng.standard_normal((x.shape[0], samples, *x.shape[1:]), dtype=dtype)
    noise *= dtype.type(sigma)
    noise += x[:, None].astype(dtype, copy=False)
    return noise.astype(x.dtype, copy=False)


def aggregate(values: np.ndarray, kind: str, axis: int = 1) -> np.ndarray:
    """The attributions of the noisy copies (``axis`` runs over the copies) combined by
    ``kind``: mean, mean of squares, or variance (centred, so never negative); float64."""
    v = np.asarray(values, dtype=np.float64)
    if kind == "smoothgrad":
        return v.mean(axis=axis)
    if kind == "smoothgrad_sq":
        return (v * v).mean(axis=axis)
    if kind == "vargrad":
        centred = v - v.mean(axis=axis, keepdims=True)
        return (centred * centred).mean(axis=axis)
    raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(KINDS)}")


# -- smoothgrad and vargrad: gradients at noisy copies --------------------------------------


def _noisy_gradients(ctx: MethodContext, samples: int, stdev: float) -> np.ndarray:
    """``(R, samples, ...)``: each explanation's gradients at its input's noisy copies (one
    batched call for all pairs and copies; classes of one input share its copies)."""
    low, high = ctx.input_range
    copies = noisy_copies(ctx.rng, ctx.x, samples, stdev * (high - low))
    r = ctx.n_pairs
    points = copies[ctx.plan.pair_input].reshape(r * samples, *ctx.x.shape[1:])
    grads = ctx.gradients(points, np.repeat(np.arange(r), samples))
    return grads.reshape(r, samples, *ctx.x.shape[1:])


def _smoothgrad(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    grads = _noisy_gradients(ctx, options["samples"], options["stdev"])
    kind = "smoothgrad_sq" if options["magnitude"] else "smoothgrad"
    return ctx.result(aggregate(grads, kind), evaluations=options["samples"])


def _vargrad(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    grads = _noisy_gradients(ctx, options["samples"], options["stdev"])
    return ctx.result(aggregate(grads, "vargrad"), evaluations=options["samples"])


def _flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError("pass True or False")
    return bool(value)


_SAMPLES = Option("samples", 50, "noisy copies per input", positive_int)
_STDEV = Option("stdev", 0.15, "noise standard deviation as a fraction of the input range "
                "(high - low of input_range)", non_negative_float)

register_method(MethodSpec(
    name="smoothgrad",
    answers="which features the score is sensitive to around the input (the gradient "
    "averaged over noisy copies)",
    cost="samples gradients",
    run=_smoothgrad,
    options=(_SAMPLES, _STDEV,
             Option("magnitude", False, "average the squared gradients (PAIR's magnitude, "
                    "Captum's smoothgrad_sq)", _flag)),
    stochastic=True,
))

register_method(MethodSpec(
    name="vargrad",
    answers="how much the gradient of each feature varies around the input (its variance "
    "over noisy copies)",
    cost="samples gradients",
    run=_vargrad,
    options=(_SAMPLES, _STDEV),
    stochastic=True,
))


# -- noise=: any method on noisy copies ------------------------------------------------------

_NOISE_DEFAULTS: dict[str, Any] = {"samples": 50, "stdev": 0.15, "kind": "smoothgrad"}
_NOISE_CHECKS: dict[str, Callable[[Any], Any]] = {
    "samples": positive_int, "stdev": non_negative_float, "kind": choice(KINDS),
}


def noise_options(noise: object) -> tuple[int, float, str]:
    """``noise=`` checked: (samples, stdev, kind), or ValueError / TypeError naming the key."""
    if not isinstance(noise, Mapping):
        raise TypeError(
            f"noise= takes a dict such as {{'samples': 10, 'stdev': 0.1, 'kind': 'smoothgrad'}}"
            f", got {type(noise).__name__}"
        )
    unknown = sorted(set(noise) - set(_NOISE_DEFAULTS))
    if unknown:
        raise TypeError(
            f"noise= takes no key {', '.join(map(repr, unknown))}; its keys are: "
            f"{', '.join(_NOISE_DEFAULTS)}"
        )
    values = dict(_NOISE_DEFAULTS)
    for key, value in noise.items():
        try:
            values[key] = _NOISE_CHECKS[key](value)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"noise={{{key!r}: {value!r}}}: {exc}") from None
    return values["samples"], values["stdev"], values["kind"]


@dataclass
class _NoisyContext(MethodContext):
    """A method's context over the noisy copies: its baselines are the clean inputs', each
    repeated for the input's copies (a blurred baseline is the blur of the input, not of a
    noisy copy, as in Captum's NoiseTunnel)."""

    clean: np.ndarray | None = None
    copies: int = 1

    def baselines(self) -> list[tuple[str, np.ndarray]]:
        if self._baselines is None:
            assert self.clean is not None
            self._baselines = _clean_baselines(
                self.baseline, self.clean, self.channel_axis, self.input_range, self.rng,
                self.copies,
            )
        return self._baselines


def _clean_baselines(
    baseline: object, clean: np.ndarray, channel_axis: int | None,
    input_range: tuple[float, float], rng: np.random.Generator, copies: int,
) -> list[tuple[str, np.ndarray]]:
    ctx = BaselineContext(inputs=clean, channel_axis=channel_axis, input_range=input_range,
                          rng=rng)
    return [(label, np.repeat(np.asarray(b, dtype=clean.dtype), copies, axis=0))
            for label, b in make_baselines(baseline, ctx)]


def _copies_plan(plan: TargetPlan, n: int, copies: int) -> TargetPlan:
    """The plan of the noisy copies: copy ``i * copies + s`` explains input ``i``'s classes."""
    pair_input, pair_target = [], []
    for i in range(n):
        classes = plan.pair_target[plan.pair_input == i]
        for s in range(copies):
            pair_input.append(np.full(classes.shape[0], i * copies + s, dtype=np.int64))
            pair_target.append(classes)
    mask = None if plan.mask is None else np.repeat(plan.mask, copies, axis=0)
    return TargetPlan(np.concatenate(pair_input), np.concatenate(pair_target).astype(np.int64),
                      mask)


def _copies_target(plan: TargetPlan, n: int, copies: int) -> object:
    """A ``target=`` for the noisy copies that gives :func:`_copies_plan` again."""
    inner = _copies_plan(plan, n, copies)
    if inner.mask is None:
        return inner.pair_target.copy()
    rows: list[list[int]] = [[] for _ in range(inner.mask.shape[0])]
    for i, c in zip(inner.pair_input, inner.pair_target, strict=True):
        rows[int(i)].append(int(c))
    return rows


def _combine(inner: Result, plan: TargetPlan, copies: int, kind: str, clean: np.ndarray,
             pair_score: np.ndarray, labels: tuple[str, ...],
             baseline_inputs: np.ndarray | None, seed: int, name: str) -> Result:
    """The result over the clean inputs from the result over their noisy copies."""
    n = clean.shape[0]

    def per_input(a: np.ndarray) -> np.ndarray:
        return a.reshape(n, copies, *a.shape[1:])

    attr = aggregate(per_input(inner.attributions), kind).astype(clean.dtype)
    r = len(plan)
    nan = plan.scatter(np.full(r, np.nan), np.nan)
    base = per_input(np.asarray(inner.baseline_score, dtype=np.float64)).mean(axis=1)
    return replace(
        inner,
        attributions=attr,
        delta=nan,
        relative_error=nan.copy(),
        score=plan.scatter(pair_score, np.nan),
        baseline_score=base,
        target=plan.scatter(plan.pair_target, -1),
        steps=per_input(inner.steps).max(axis=1),
        converged=plan.scatter(np.ones(r, dtype=bool), False),
        evaluations=per_input(inner.evaluations).sum(axis=1),
        baselines=labels,
        path=None,
        target_mask=plan.mask,
        inputs=np.array(clean, copy=True),
        baseline_inputs=baseline_inputs,
        seed=seed,
        attribution_method=name,
    )


def _on_copies(run: Callable[[], Result]) -> tuple[Result, list[warnings.WarningMessage]]:
    """``run()`` with the warnings it raises kept, to be said of the noisy copies afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, list(caught)


def _reissue(caught: list[warnings.WarningMessage], n: int, samples: int) -> None:
    """The inner run's warnings again, saying that they are about noisy copies. Its all-zero
    maps are not: a copy's empty map is one sample; the aggregate is checked instead."""
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, NothingToAttributeWarning) and "all-zero" in text:
            continue
        warnings.warn(
            f"noise=: on the {n * samples} noisy copies (copy j is input j // {samples}): {text}",
            w.category, stacklevel=4,
        )


def attribute_with_noise(
    model: object, inputs: object, method: str, noise: object, *, target: object,
    baseline: object, output: object, batch_size: int | None, seed: int,
    channel_axis: int | None, input_range: tuple[float, float] | None, batched: bool | None,
    dtype: Any, method_options: Mapping[str, Any],
) -> Result:
    """``igkit.attribute(..., noise=...)``: the method on noisy copies, aggregated (NoiseTunnel).

    The noisy copies of all inputs go through ONE run of the method (all copies share its
    batches). ``delta`` and ``relative_error`` are NaN (the copies' scores are not F(x));
    ``score`` is F(x) at the clean inputs, ``evaluations`` sums over the copies.
    """
    from igkit.api import _channel_axis, _prepare, _session, _unbatch
    from igkit.core.targets import resolve_target_plan
    from igkit.methods.attribute import checked_outputs
    from igkit.methods.registry import resolve_method

    spec, given = resolve_method(method, method_options)
    options = spec.bind(given, fill=spec.entry is None)
    samples, stdev, kind = noise_options(noise)
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=channel_axis,
        input_range=input_range, batched=batched, dtype=dtype,
    )
    problem = spec.unsupported(prep.backend.name) or spec.input_problem(prep.x.shape)
    if problem:
        raise ValueError(problem)
    rng = np.random.default_rng(seed)
    low, high = prep.input_range
    out_name = output if isinstance(output, str) else "callable"
    with _session(prep) as session:
        x, outputs = checked_outputs(prep, session, output, stacklevel=5)
        n = x.shape[0]
        plan = resolve_target_plan(target, np.asarray(outputs))
        pair_score = np.asarray(outputs, dtype=np.float64)[plan.pair_input, plan.pair_target]
        axis = _channel_axis(x, prep.channel_axis, session.default_channel_axis)
        noisy = noisy_copies(rng, x, samples, stdev * (high - low))
        noisy = noisy.reshape(n * samples, *x.shape[1:])
        if spec.entry is None:
            ctx = _NoisyContext(
                session=session, backend=prep.backend, model=prep.model, x=noisy,
                outputs=np.asarray(session.outputs(noisy), dtype=np.float64),
                plan=_copies_plan(plan, n, samples), baseline=baseline, channel_axis=axis,
                input_range=prep.input_range, rng=rng, batch_size=prep.options.batch_size,
                method=spec.name, output=out_name, seed=seed, clean=x, copies=samples,
            )
            inner, caught = _on_copies(lambda: spec.run(ctx, options))
    if spec.entry is not None:
        given_base = (_clean_baselines(baseline, x, axis, prep.input_range, rng, samples)
                      if spec.uses_baseline else None)
        entry = spec.entry
        inner, caught = _on_copies(lambda: entry(
            model, noisy,
            target=_copies_target(plan, n, samples),
            baseline=[b for _, b in given_base] if given_base else baseline,
            output=output, batch_size=prep.options.batch_size,
            seed=int(rng.integers(2**31 - 1)), channel_axis=axis,
            input_range=prep.input_range, batched=True, dtype=dtype, **options,
        ))
        labels = tuple(lb for lb, _ in given_base) if given_base else inner.baselines
    else:
        labels = inner.baselines
    base_inputs = inner.baseline_inputs
    if base_inputs is not None and base_inputs.shape[0] == n * samples:
        base_inputs = base_inputs[::samples]
    result = _combine(inner, plan, samples, kind, x, pair_score, labels, base_inputs, seed,
                      spec.name)
    _reissue(caught, n, samples)
    if spec.name not in _EXPLAIN_NOTHING:
        attr = result.attributions
        _warn_all_zero(attr if plan.mask is None else attr[plan.mask], plan, spec.name, out_name)
    if not prep.batched and not result.multi_target:
        result = _unbatch(result)
    return result
