"""The public entry points: ``integrated_gradients`` and ``gradients``.

Everything a user can get wrong is checked here, before the model is called: shapes, NaN and Inf,
names of methods, baselines and outputs, step counts. The backend is found from the model itself.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from igkit.backends.base import OUTPUT_NAMES, PRECISIONS, SessionOptions
from igkit.core.baselines import BaselineContext, make_baselines
from igkit.core.engine import AutoSteps, run_integrated_gradients
from igkit.core.planner import RowBatch, default_batch_size
from igkit.core.quadrature import check_steps, get_rule
from igkit.core.result import Result
from igkit.core.targets import resolve_target_plan

__all__ = ["gradients", "integrated_gradients", "resolve_backend"]

_BACKENDS = ("torch", "tensorflow", "jax")


def _backend_module(name: str) -> ModuleType:
    return importlib.import_module(f"igkit.backends.{name}")


def resolve_backend(model: object, example: object | None = None) -> ModuleType:
    """The backend module for ``model``, found from the model (and, for bare callables, by trying
    it on ``example`` with each framework that is already imported)."""
    if isinstance(model, str):
        raise TypeError(
            f"model is the string {model!r}; load it first, e.g. "
            f"igkit.load_model({model!r}), or pass the model object"
        )
    if not callable(model):
        raise TypeError(f"model must be callable (a network or a function); got {type(model)!r}")
    modules = [_backend_module(n) for n in _BACKENDS]
    for mod in modules:
        if mod.matches(model):
            return mod
    # A bare callable: prefer the framework of the inputs, then any imported one that runs it.
    for mod in modules:
        if example is not None and mod.is_tensor(example):
            return mod
    if example is not None:
        probe_input = _as_numpy(example, modules)
        probe_input = probe_input.astype(np.float32) if probe_input.dtype.kind in "iub" else (
            probe_input
        )
        for mod in modules:
            if mod.name in sys.modules and mod.probe(model, _batched(probe_input)):
                return mod
            if mod.name == "tensorflow" and "tensorflow" in sys.modules and mod.probe(
                model, _batched(probe_input)
            ):
                return mod
    raise TypeError(
        f"cannot tell which framework runs the callable {model!r}: it is not a torch.nn.Module, "
        "a Keras model, a tf.Module or a JAX function, and it did not run on torch, TensorFlow "
        "or JAX tensors of the input. Import the framework before calling igkit, or pass a model "
        "object"
    )


def _batched(x: np.ndarray) -> np.ndarray:
    return x if x.ndim in (2, 4, 5) else x[None]


def _as_numpy(x: object, modules: Sequence[ModuleType]) -> np.ndarray:
    for mod in modules:
        if mod.is_tensor(x):
            return mod.to_numpy(x)
    try:
        return np.asarray(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"inputs of type {type(x).__name__} cannot be read as an array") from exc


@dataclass(frozen=True)
class _Prepared:
    backend: ModuleType
    x: np.ndarray  # (N, ...) in the compute dtype
    batched: bool
    channel_axis: int | None
    input_range: tuple[float, float]
    options: SessionOptions


def _prepare(
    model: object,
    inputs: object,
    *,
    output: object,
    batch_size: int | None,
    channel_axis: int | None,
    input_range: tuple[float, float] | None,
    batched: bool | None,
    trace: bool = False,
    dtype: object = None,
    precision: str = "float32",
) -> _Prepared:
    if not (callable(output) or output in OUTPUT_NAMES):
        raise ValueError(
            f"unknown output {output!r}; choose one of {', '.join(OUTPUT_NAMES)} or pass a "
            "callable from model output to per-class scores"
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    backend = resolve_backend(model, inputs)
    if precision != "float32" and backend.name != "torch":
        raise ValueError(
            f"precision={precision!r} is supported for PyTorch models only; this is a "
            f"{backend.name} model, pass precision='float32'"
        )
    modules = [_backend_module(n) for n in _BACKENDS]
    raw = _as_numpy(inputs, modules)
    if raw.dtype == object or raw.dtype.kind not in "iufb":
        raise TypeError(f"inputs must be numeric; got dtype {raw.dtype}")
    if raw.ndim == 0:
        raise ValueError("inputs is a scalar; pass one example or a batch of examples")
    is_batched = raw.ndim in (2, 4, 5) if batched is None else bool(batched)
    x = raw if is_batched else raw[None]
    if x.shape[0] == 0:
        raise ValueError("inputs is an empty batch; pass at least one example")
    if input_range is None:
        input_range = _infer_range(x)
    if x.dtype.kind in "iub":
        # Keep the numbers the model would see; only the type changes (no implicit /255).
        x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"inputs contain {bad} NaN or Inf values; replace them before explaining")
    options = SessionOptions(
        output=output,
        batch_size=int(batch_size) if batch_size else default_batch_size(int(np.prod(x.shape[1:]))),
        dtype=np.dtype(dtype) if dtype is not None else None,
        input_dtype=x.dtype,
        trace=trace,
        precision=precision,
    )
    return _Prepared(backend, x, is_batched, channel_axis, tuple(input_range), options)


def _infer_range(x: np.ndarray) -> tuple[float, float]:
    if x.dtype.kind == "b":
        return (0.0, 1.0)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return (0.0 if x.dtype.kind == "u" else float(info.min), float(info.max))
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    for low, high in ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)):
        if lo >= low and hi <= high:
            return (low, high)
    return (lo, hi)


def _channel_axis(x: np.ndarray, given: int | None, default: int) -> int | None:
    if given is not None:
        if not -x.ndim < given < x.ndim or given % x.ndim == 0:
            raise ValueError(
                f"channel_axis={given} is not an axis of the batch shape {x.shape} "
                "(axis 0 is the batch)"
            )
        return given % x.ndim
    if x.ndim != 4:
        return None
    first, last = x.shape[1], x.shape[-1]
    if first <= 4 < last:
        return 1
    if last <= 4 < first:
        return 3
    return default % 4


def _resolve_steps(steps: object, method: str, tol: float, max_steps: int) -> int | AutoSteps:
    rule = get_rule(method)
    if isinstance(steps, str):
        if steps != "auto":
            raise ValueError(f"steps must be a positive integer or 'auto', got {steps!r}")
        if not (isinstance(max_steps, (int, np.integer)) and max_steps >= rule.min_steps):
            raise ValueError(f"max_steps must be an integer >= {rule.min_steps}, got {max_steps!r}")
        return AutoSteps(tol=tol, max_steps=int(max_steps))
    check_steps(rule, steps)
    return int(steps)  # type: ignore[arg-type]


def integrated_gradients(
    model: object,
    inputs: object,
    *,
    target: object = None,
    baseline: object = "black",
    steps: int | str = 50,
    method: str = "gauss_legendre",
    output: object = "raw",
    batch_size: int | None = None,
    tol: float = 0.01,
    seed: int = 0,
    max_steps: int = 1024,
    channel_axis: int | None = None,
    input_range: tuple[float, float] | None = None,
    batched: bool | None = None,
    return_path: bool = False,
    dtype: object = None,
    precision: str = "float32",
) -> Result:
    """Integrated Gradients of ``model`` at ``inputs``, with the completeness check.

    Args:
        model: A torch module or callable on torch tensors; a Keras model, ``tf.Module`` or
            callable on TensorFlow tensors; or a JAX function. The framework is found from it.
        inputs: One example or a batch (numpy or framework tensor) in the model's own layout.
            Ranks 1 and 3 are read as one example, 2, 4 and 5 as a batch (``batched=`` decides
            otherwise). Integer images become floats with the same values.
        target: None (the top-1 class of each input), an int, or one int per input; or, for
            several classes per input, a 2-D int array ``(N, T)``, a list of per-input lists
            of classes (ragged), ``"all"``, or a callable from the explained outputs to any of
            these (e.g. ``igkit.labels_above(0.4)``: every predicted label). All (input, class)
            pairs share the model calls' batches.
        baseline: "black", "white", "uniform", "gaussian", "blur", a number, an array of one
            example's or the batch's shape, or a list of these (attributions are averaged).
        steps: Gradient evaluations per path, or "auto" to refine until ``tol`` is met. For
            "secant" it is the number of pieces of the path (``steps`` gradient evaluations
            after the baseline, whose activations take one forward pass; plus a 16-piece
            pilot from 32 pieces up).
        method: "gauss_legendre", "riemann_left", "riemann_right", "riemann_middle",
            "riemann_trapezoid", "adaptive" (nodes placed where the integrand is rough) or
            "secant" (PyTorch models whose nonlinearities are elementwise activations: each
            piece of the path is integrated by one backward pass with secant slopes, so
            completeness is exact and the attributions converge faster than any point rule;
            see ``igkit.backends.torch_secant``).
        output: "raw", "softmax", "sigmoid" or a callable from model output to class scores.
        batch_size: Path points per model call; None picks one from the input size.
        tol: Relative completeness tolerance (and, for "auto", the refinement's tolerance).
        seed: Seed of the random baselines.
        max_steps: Ceiling of ``steps="auto"``.
        channel_axis: Axis of the batch holding channels, when the default guess is wrong.
        input_range: ``(low, high)`` of valid inputs, for "white" and random baselines; inferred
            from the dtype and values when None.
        batched: Whether ``inputs`` is a batch, overriding the guess from its rank.
        return_path: Keep the scores and mean |gradient| along each path (``Result.path``).
        dtype: Compute dtype; None uses the model's own (float64 models run in float64).
        precision: "float32" (exact, the default), "tf32", "bf16" or "fp16" (torch only):
            faster on GPUs at the cost of completeness; see benchmarks/RESULTS.md.

    Returns:
        A ``Result``; ``attributions`` has the shape of ``inputs``. With several classes per
        input it is multi-target: ``attributions`` is ``(N, T, *example_shape)`` (the batch axis
        kept even for one unbatched example) and the per-input fields are ``(N, T)``; see
        ``Result`` for ragged targets, ``Result.pairs`` and ``Result.per_target``.
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    method_steps = _resolve_steps(steps, method, float(tol), max_steps)
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=channel_axis,
        input_range=input_range, batched=batched, trace=return_path, dtype=dtype,
        precision=precision,
    )
    if get_rule(method).secant:
        _check_secant(prep)
    session = prep.backend.open_session(model, prep.options)
    try:
        x = prep.x.astype(session.dtype, copy=False)
        ctx = BaselineContext(
            inputs=x,
            channel_axis=_channel_axis(x, channel_axis, session.default_channel_axis),
            input_range=prep.input_range,
            rng=np.random.default_rng(seed),
        )
        baselines = make_baselines(baseline, ctx)
        result = run_integrated_gradients(
            session, x, baselines, target=target, method=method, steps=method_steps,
            tol=float(tol), batch_size=prep.options.batch_size, return_path=return_path,
        )
    finally:
        session.close()
    if not prep.batched and not result.multi_target:
        result = _unbatch(result)
    return result


def _check_secant(prep: _Prepared) -> None:
    if prep.backend.name != "torch":
        raise ValueError(
            f"method='secant' is implemented for PyTorch models; this is a {prep.backend.name} "
            "model: use method='gauss_legendre' or 'adaptive'"
        )
    if prep.options.precision != "float32":
        raise ValueError(
            "method='secant' checks completeness to rounding, which reduced precision breaks; "
            "pass precision='float32'"
        )


def _unbatch(result: Result) -> Result:
    from dataclasses import replace

    return replace(result, attributions=result.attributions[0])


def gradients(
    model: object,
    inputs: object,
    *,
    target: object = None,
    output: object = "raw",
    batch_size: int | None = None,
    batched: bool | None = None,
    dtype: object = None,
) -> np.ndarray:
    """Plain gradient saliency: dF_target/dx at the inputs, shaped like ``inputs``.

    ``target`` takes the same forms as in :func:`integrated_gradients`; with several classes per
    input the gradients are ``(N, T, *example_shape)`` (zeros in the empty slots of ragged
    targets).
    """
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=None,
        input_range=(0.0, 1.0), batched=batched, dtype=dtype,
    )
    session = prep.backend.open_session(model, prep.options)
    try:
        x = prep.x.astype(session.dtype, copy=False)
        plan = resolve_target_plan(target, session.outputs(x))
        n = len(plan)
        # A path from 0 to x evaluated at alpha = 1 with weight 1 is the gradient at x itself.
        session.set_paths(x, np.zeros_like(x[plan.pair_input]), plan.pair_input, plan.pair_target)
        bs = prep.options.batch_size
        for start in range(0, n, bs):
            rows = np.arange(start, min(n, start + bs))
            session.accumulate(RowBatch(rows, np.ones(rows.shape[0]), np.ones(rows.shape[0])))
        grads = plan.scatter(session.take().sums.astype(x.dtype), 0)
    finally:
        session.close()
    return grads if prep.batched or plan.multi else grads[0]
