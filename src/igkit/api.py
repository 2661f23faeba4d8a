"""The public entry points: ``integrated_gradients`` and ``gradients``.

Everything a user can get wrong is checked here, before the model is called: shapes, NaN and Inf,
names of methods, baselines and outputs, step counts, and whether the model's backend supports
the method and precision asked for (its declared ``Capabilities``). The backend is found from
the model itself, or from a ``LoadedModel``'s framework. What goes wrong at the first model call
is named from the inputs as given (``igkit.core.diagnosis``); the numbers are checked in the
engine (``igkit.core.checks``).

Why one module: it is the whole public surface of a computation, and the order of its checks
(arguments, backend, layout, session) is the contract that nothing runs before they pass;
split, that order would be spread over files.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np
from numpy.typing import DTypeLike

from igkit.backends.base import (
    OUTPUT_NAMES,
    PRECISIONS,
    Capabilities,
    DisconnectedModelError,
    Session,
    SessionOptions,
)
from igkit.core.baselines import BaselineContext, make_baselines
from igkit.core.checks import (
    check_finite_gradients,
    check_finite_outputs,
    check_output_transform,
)
from igkit.core.diagnosis import TOKEN_IDS, failure_describer, layout_problem, looks_like_token_ids
from igkit.core.engine import AutoSteps, first_forward, run_integrated_gradients
from igkit.core.planner import RowBatch, default_batch_size
from igkit.core.quadrature import Rule, check_steps, get_rule
from igkit.core.result import Result
from igkit.core.targets import resolve_target_plan
from igkit.models.spec import LoadedModel
from igkit.typing import BaselineSpec, Method, OutputSpec, Precision, Steps, TargetSpec

__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_METHOD",
    "DEFAULT_STEPS",
    "DEFAULT_TOL",
    "capabilities",
    "gradients",
    "integrated_gradients",
    "method_supported",
    "resolve_backend",
    "why_unsupported",
]

_BACKENDS = ("torch", "tensorflow", "jax")

#: The defaults of :func:`integrated_gradients`, shared with ``ExplainSettings`` and the
#: command line (a test keeps them equal): the best rule for the model, refined until the
#: attributions are within 1 %, with at most 1024 gradient evaluations per path.
DEFAULT_METHOD: Method = "auto"
DEFAULT_STEPS: Steps = "auto"
DEFAULT_TOL = 0.01
DEFAULT_MAX_STEPS = 1024


def _backend_module(name: str) -> ModuleType:
    if name not in _BACKENDS:
        raise ValueError(f"unknown framework {name!r}; choose one of {', '.join(_BACKENDS)}")
    return importlib.import_module(f"igkit.backends.{name}")


def capabilities(framework: str) -> Capabilities:
    """What the backend of ``framework`` ("torch", "tensorflow" or "jax") declares it can do,
    read without importing the framework or building a session."""
    caps: Capabilities = _backend_module(framework).CAPABILITIES
    return caps


def _titles(ok: Callable[[Capabilities], bool]) -> str:
    """The frameworks (by title) whose backends pass the test ``ok(capabilities)``."""
    names = [m.title for m in map(_backend_module, _BACKENDS) if ok(m.CAPABILITIES)]
    return " or ".join(names) if names else "no"


def _method_problem(backend: ModuleType, rule: Rule, precision: str) -> str | None:
    caps: Capabilities = backend.CAPABILITIES
    strategy = rule.strategy
    if strategy.unsupported(caps):
        where = _titles(lambda c: not strategy.unsupported(c))
        return (
            f"method={rule.name!r} is implemented for {where} models; this is a "
            f"{backend.name} model: use method='gauss_legendre' or 'adaptive'"
        )
    if strategy.unsupported(caps, precision):
        return (
            f"method={rule.name!r} checks completeness to rounding, which reduced precision "
            "breaks; pass precision='float32'"
        )
    return None


def _precision_problem(backend: ModuleType, precision: str) -> str | None:
    if precision in backend.CAPABILITIES.precisions:
        return None
    where = _titles(lambda c: precision in c.precisions)
    return (
        f"precision={precision!r} is supported for {where} models only; this is a "
        f"{backend.name} model, pass precision='float32'"
    )


def why_unsupported(
    framework: str, method: str, *, precision: str = "float32"
) -> str | None:
    """Why models of ``framework`` cannot be explained with ``method`` at ``precision``, or
    None when they can: the question a front end asks before loading or computing anything.

    It reads the backend's declared ``Capabilities`` (``igkit.api.capabilities``) against what
    the method's strategy needs (``get_rule(method).strategy``) and imports no framework. The
    reason is the message ``integrated_gradients`` would raise, e.g. for ``("jax", "secant")``:
    "method='secant' is implemented for PyTorch models; this is a jax model: use
    method='gauss_legendre' or 'adaptive'".

    Args:
        framework: "torch", "tensorflow" or "jax" (``LoadedModel.framework``).
        method: A registered method name (``igkit.available_methods()``).
        precision: A ``precision=`` value.

    Raises:
        ValueError: For an unknown framework, method or precision name (listing the choices).
    """
    backend = _backend_module(framework)
    rule = get_rule(method)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return _precision_problem(backend, precision) or _method_problem(backend, rule, precision)


def method_supported(framework: str, method: str, *, precision: str = "float32") -> bool:
    """Whether models of ``framework`` can be explained with ``method`` at ``precision``.

    ``igkit.api.method_supported("jax", "secant")`` is False; :func:`why_unsupported` gives the
    reason to show. Imports no framework and builds no session.

    Raises:
        ValueError: For an unknown framework, method or precision name (listing the choices).
    """
    return why_unsupported(framework, method, precision=precision) is None


def _adapt(model: object, modules: Sequence[ModuleType]) -> object:
    """The model as a callable: each backend turns the framework-specific forms it knows (e.g.
    a Flax ``(module, params)`` pair) into one, or refuses them with the fix."""
    for mod in modules:
        model = mod.adapt_model(model)
    return model


def _resolve(
    model: object, example: object | None
) -> tuple[ModuleType, object, LoadedModel | None]:
    """The backend, the callable to run, and the ``LoadedModel`` it came from (if any)."""
    if isinstance(model, str):
        raise TypeError(
            f"model is the string {model!r}; load it first, e.g. "
            f"igkit.load_model({model!r}), or pass the model object"
        )
    if isinstance(model, LoadedModel):
        backend = _backend_module(model.framework)
        return backend, _adapt(model.model, [backend]), model
    modules = [_backend_module(n) for n in _BACKENDS]
    model = _adapt(model, modules)
    if not callable(model):
        raise TypeError(f"model must be callable (a network or a function); got {type(model)!r}")
    for mod in modules:
        if mod.matches(model):
            return mod, model, None
    # A bare callable: prefer the framework of the inputs, then any imported one that runs it.
    for mod in modules:
        if example is not None and mod.is_tensor(example):
            return mod, model, None
    if example is not None:
        probe_input = _as_numpy(example, modules)
        probe_input = probe_input.astype(np.float32) if probe_input.dtype.kind in "iub" else (
            probe_input
        )
        for mod in modules:
            if mod.name in sys.modules and mod.probe(model, _batched(probe_input)):
                return mod, model, None
    raise TypeError(
        f"cannot tell which framework runs the callable {model!r}: it is not a torch.nn.Module, "
        "a Keras model, a tf.Module or a JAX function, and it did not run on torch, TensorFlow "
        "or JAX tensors of the input. Import the framework before calling igkit, or pass a model "
        "object"
    )


def resolve_backend(model: object, example: object | None = None) -> ModuleType:
    """The backend module for ``model``, found from the model (and, for bare callables, by trying
    it on ``example`` with each framework that is already imported); for a ``LoadedModel``, its
    framework's."""
    return _resolve(model, example)[0]


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
    model: object  # the callable the backend runs
    x: np.ndarray  # (N, ...) in the compute dtype
    batched: bool
    channel_axis: int | None
    input_range: tuple[float, float]
    options: SessionOptions
    given_shape: tuple[int, ...] = ()  # the inputs' shape as passed
    given_dtype: np.dtype | None = None  # the inputs' dtype as passed
    channels_first: bool | None = None  # a LoadedModel's layout


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
    dtype: DTypeLike | None = None,
    precision: str = "float32",
) -> _Prepared:
    """Validates everything that needs no model call. A ``LoadedModel`` gives its callable,
    its framework's backend and, unless given, its channel axis and the input range [0, 1]."""
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
    backend, model, loaded = _resolve(model, inputs)
    if loaded is not None:
        channel_axis = loaded.channel_axis if channel_axis is None else channel_axis
        input_range = (0.0, 1.0) if input_range is None else input_range
    problem = _precision_problem(backend, precision)
    if problem:
        raise ValueError(problem)
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
    if loaded is not None:
        # The layout is known: a transposed image is refused before the model runs.
        problem = layout_problem(raw.shape, is_batched, loaded.channels_first, backend.title)
        if problem:
            raise ValueError(problem)
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
        precision=precision,  # type: ignore[arg-type]
    )
    low, high = input_range
    return _Prepared(
        backend, model, x, is_batched, channel_axis, (low, high), options,
        given_shape=tuple(int(d) for d in raw.shape), given_dtype=raw.dtype,
        channels_first=None if loaded is None else loaded.channels_first,
    )


@contextlib.contextmanager
def _session(prep: _Prepared) -> Iterator[Session]:
    """A session of the prepared model, closed afterwards when it declares ``closing``.

    A model that turns out not to depend on integer inputs (a Keras embedding casts them back
    to integers) is refused with what to do about token ids."""
    session: Session = prep.backend.open_session(prep.model, prep.options)
    try:
        yield session
    except DisconnectedModelError as exc:
        if looks_like_token_ids(prep.given_dtype):
            raise DisconnectedModelError(f"{exc}. {TOKEN_IDS}") from None
        raise
    finally:
        if session.capabilities.closing:
            session.close()


def _describe(
    prep: _Prepared, session: Session, batch: str = "the inputs and baselines, batched together"
) -> Callable[[BaseException], str | None]:
    """``describe_failure`` for the first forward pass (``igkit.core.diagnosis``), in the
    layout of the LoadedModel, else of the session's framework."""
    first = prep.channels_first
    return failure_describer(
        shape=prep.given_shape, batched=prep.batched, dtype=prep.given_dtype,
        channels_first=session.default_channel_axis == 1 if first is None else first,
        title=prep.backend.title, batch=batch,
    )


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
        check_steps(rule, max_steps, name="max_steps")
        return AutoSteps(tol=tol, max_steps=int(max_steps))
    check_steps(rule, steps)
    return int(steps)  # type: ignore[call-overload]


def integrated_gradients(
    model: object,
    inputs: object,
    *,
    target: TargetSpec = None,
    baseline: BaselineSpec = "black",
    steps: Steps = DEFAULT_STEPS,
    method: Method = DEFAULT_METHOD,
    output: OutputSpec = "raw",
    batch_size: int | None = None,
    tol: float = DEFAULT_TOL,
    seed: int = 0,
    max_steps: int = DEFAULT_MAX_STEPS,
    channel_axis: int | None = None,
    input_range: tuple[float, float] | None = None,
    batched: bool | None = None,
    return_path: bool = False,
    dtype: DTypeLike | None = None,
    precision: Precision = "float32",
) -> Result:
    """Integrated Gradients of ``model`` at ``inputs``, with the completeness check.

    Args:
        model: A torch module or callable on torch tensors; a Keras model, ``tf.Module`` or
            callable on TensorFlow tensors; or a JAX function (``jax.jit``,
            ``functools.partial(module.apply, params)``, a bound Flax module or the pair
            ``(flax_module, params)``). The framework is found from it. A ``LoadedModel``
            (``igkit.load_model``) gives its model and framework, and its channel axis and the
            input range [0, 1] unless ``channel_axis`` / ``input_range`` are given.
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
        steps: "auto" (the default) to refine until the attributions are within ``tol``
            (completeness and the rule's own error estimate, ``Result.error_estimate``), or
            gradient evaluations per path. For "secant" a count is the number of pieces of
            the path (``steps`` gradient evaluations after the baseline, whose activations
            take one forward pass; plus a 16-piece pilot from 32 pieces up).
        method: "auto" (the default): with ``steps="auto"``, Fejer's nested rule at 3, 7
            and 15 nodes first, continued while its error falls geometrically (smooth
            networks: GELU, LayerNorm, attention), else "secant" (ReLU-type networks), where
            the model's backend supports it (``Capabilities.interval_accumulation``) at
            ``precision="float32"``; else "gauss_legendre". A fixed count runs
            Gauss-Legendre on every backend (``steps`` is then exactly the evaluations per
            path, and every framework gives the same numbers). ``Result.method`` says which
            rule ran. Or one rule: "gauss_legendre", "fejer" (Fejer's second rule: nested,
            so ``steps="auto"`` keeps every gradient), "riemann_left", "riemann_right",
            "riemann_middle", "riemann_trapezoid",
            "adaptive" (nodes placed where the integrand is rough) or "secant" (each piece
            of the path integrated by one backward pass with secant slopes, so completeness
            is exact and the attributions converge faster than any point rule on ReLU-type
            networks; see ``igkit.backends.torch_secant``).
        output: "raw", "softmax", "sigmoid" or a callable from model output to class scores.
        batch_size: Path points per model call; None picks one from the input size.
        tol: Relative tolerance: of completeness, and for ``steps="auto"`` of the estimated
            attribution error (relative L2), which it aims to meet without going far below
            (true errors between about ``tol / 4`` and ``tol``).
        seed: Seed of the random baselines.
        max_steps: For ``steps="auto"``, the most gradient evaluations per path, over all
            refinement levels, pilots and probes (``Result.evaluations`` never exceeds it per
            baseline); a path that has not met ``tol`` by then warns ``NotConvergedWarning``
            and is not ``converged``.
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
        ``Result`` for ragged targets, ``Result.pairs`` and ``Result.per_target``. It also
        holds what redoes or draws it: ``inputs`` and ``baseline_inputs`` (the first
        baseline) as numpy, ``output``, ``channel_axis``, ``seed``, ``requested_steps`` and
        ``max_steps``.

    Raises:
        ValueError: A bad argument, or a method or precision the model's backend does not
            support (:func:`why_unsupported` says so without a model).
        TypeError: A model that is not one igkit can run (a bare Flax module: with the fix).
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    method_steps = _resolve_steps(steps, method, float(tol), max_steps)
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=channel_axis,
        input_range=input_range, batched=batched, trace=return_path, dtype=dtype,
        precision=precision,
    )
    problem = _method_problem(prep.backend, get_rule(method), precision)
    if problem:
        raise ValueError(problem)
    with _session(prep) as session:
        x = prep.x.astype(session.dtype, copy=False)
        ctx = BaselineContext(
            inputs=x,
            channel_axis=_channel_axis(x, prep.channel_axis, session.default_channel_axis),
            input_range=prep.input_range,
            rng=np.random.default_rng(seed),
        )
        baselines = make_baselines(baseline, ctx)
        result = run_integrated_gradients(
            session, x, baselines, target=target, method=method, steps=method_steps,
            tol=float(tol), batch_size=prep.options.batch_size, return_path=return_path,
            output=output, describe_failure=_describe(prep, session), precision=precision,
        )
    result = replace(
        result,
        output=output if isinstance(output, str) else "callable",
        # A copy: ``x`` may share memory with the caller's array or tensor.
        inputs=np.array(x, copy=True),
        channel_axis=ctx.channel_axis,
        baseline_inputs=np.asarray(baselines[0][1]),
        seed=seed,
        requested_steps="auto" if isinstance(method_steps, AutoSteps) else int(method_steps),
        max_steps=int(max_steps),
    )
    if not prep.batched and not result.multi_target:
        result = _unbatch(result)
    return result


def _unbatch(result: Result) -> Result:
    """One example's result: the batch axis dropped from the arrays shaped like the inputs."""
    return replace(
        result,
        attributions=result.attributions[0],
        inputs=None if result.inputs is None else result.inputs[0],
        baseline_inputs=None if result.baseline_inputs is None else result.baseline_inputs[0],
    )


def gradients(
    model: object,
    inputs: object,
    *,
    target: TargetSpec = None,
    output: OutputSpec = "raw",
    batch_size: int | None = None,
    batched: bool | None = None,
    dtype: DTypeLike | None = None,
) -> np.ndarray:
    """Plain gradient saliency: dF_target/dx at the inputs, shaped like ``inputs``.

    ``model`` takes the same forms as in :func:`integrated_gradients` (a ``LoadedModel`` too),
    and so does ``target``; with several classes per input the gradients are
    ``(N, T, *example_shape)`` (zeros in the empty slots of ragged targets).
    """
    prep = _prepare(
        model, inputs, output=output, batch_size=batch_size, channel_axis=None,
        input_range=(0.0, 1.0), batched=batched, dtype=dtype,
    )
    with _session(prep) as session:
        x = prep.x.astype(session.dtype, copy=False)
        n = x.shape[0]
        outputs, raw = first_forward(session, x, _describe(prep, session, "the inputs"),
                                     f"the {n} input{'s' if n > 1 else ''}")
        check_finite_outputs(outputs, [f"input {i}" for i in range(n)])
        check_output_transform(output, outputs, raw, session.dtype, where="the inputs",
                               stacklevel=3)
        plan = resolve_target_plan(target, outputs)
        n = len(plan)
        # A path from 0 to x evaluated at alpha = 1 with weight 1 is the gradient at x itself.
        session.set_paths(x, np.zeros_like(x[plan.pair_input]), plan.pair_input, plan.pair_target)
        bs = prep.options.batch_size
        for start in range(0, n, bs):
            rows = np.arange(start, min(n, start + bs))
            session.accumulate(RowBatch(rows, np.ones(rows.shape[0]), np.ones(rows.shape[0])))
        sums = check_finite_gradients(session.take().sums, plan.pair_input, plan.pair_target)
        grads = plan.scatter(sums.astype(x.dtype), 0)
    return grads if prep.batched or plan.multi else grads[0]
