"""JAX backend: Keras-on-JAX models, jitted functions, Flax ``apply`` and plain JAX functions.

The per-batch step ``(sums, base, diff, target, idx, alpha, weight) -> (sums, scores,
mean_abs_grad)`` is written with ``jax.grad`` and ``.at[idx].add`` and jitted. For models whose
trace cannot go stale (``jax.jit`` functions, partials of JAX/Flax functions over JAX arrays)
the jitted step is shared between sessions, so repeated calls on one model reuse it. Every
batch is padded (repeating its last row with weight 0, scores dropped) so shapes are static: to
``batch_size`` rows in a first call, so XLA compiles the step once, and in later calls on a
shared step to a short batch's own power of two once an earlier call asked for it too
(``igkit.backends.base.RowSizes``: repeated calls stop paying full batches for
``steps="auto"``'s small levels).

Dtype: JAX computes in float32 unless 64-bit mode is on (``jax.config.update("jax_enable_x64",
True)``); with it on, a session computes in float64 when the inputs are float64 or the model's
weights (a Keras model's, or the arrays bound into a ``functools.partial``) are float64. Asking
for ``dtype=float64`` without 64-bit mode is an error rather than a silent float32.

JAX never returns "no gradient": a function that ignores its input has gradient zero. To tell
such a model apart from one whose gradient merely vanishes at some points (dead ReLUs), the
session reads the Jacobian-vector-product program of the first batch and checks that the input's
tangent reaches the explained score.

Why one module: a backend is one framework's side of the ``Session`` contract; its session,
the compiled step it shares between sessions and the model probing it relies on change together
when JAX does, so they stay side by side.

Like every backend, this module imports nothing itself: it reads ``sys.modules``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from igkit.backends.base import (
    Capabilities,
    DisconnectedModelError,
    OutOfMemory,
    RowSizes,
    SessionOptions,
    Taken,
    check_output_shape,
    self_placing,
)
from igkit.core.planner import RowBatch

__all__ = [
    "CAPABILITIES",
    "JaxSession",
    "adapt_model",
    "is_tensor",
    "matches",
    "name",
    "open_session",
    "place",
    "predict",
    "probe",
    "title",
    "to_numpy",
]

name = "jax"
title = "JAX"

#: Exact float32 (float64 in 64-bit mode) only, batch by batch through ``accumulate``;
#: ``method="secant"`` pieces through ``accumulate_intervals`` (``igkit.backends.jax_secant``);
#: sessions drop their device arrays and their hold on the jitted step on ``close``; the
#: model's own outputs beside the transformed ones (``outputs_and_raw``).
CAPABILITIES = Capabilities(interval_accumulation=True, closing=True, raw_outputs=True)

_DISCONNECTED = (
    "the model's output does not depend on its input (its gradient is structurally zero); "
    "check that the model does not apply jax.lax.stop_gradient, round or convert the input to "
    "numpy, and that it does not build its output from the input's shape alone"
)

_JAX_PACKAGES = ("jax", "jaxlib", "flax")


def _keras_on_jax_layer() -> type | None:
    """``keras.layers.Layer`` when Keras 3 is imported and runs on JAX, else None."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        if keras.backend.backend() != "jax":
            return None
        return keras.layers.Layer
    except Exception:  # noqa: BLE001 - a half-imported or unusual keras is simply not ours
        return None


def _identity(x: Any) -> Any:
    return x


@functools.lru_cache(maxsize=1)
def _jit_type(jax: Any) -> type:
    """The type ``jax.jit`` returns (private to jaxlib, so found by jitting a function)."""
    return type(jax.jit(_identity))


def _from_jax_package(obj: object) -> bool:
    """True when ``obj`` is defined in JAX or Flax, or is a method of a JAX/Flax object."""
    module = getattr(obj, "__module__", None) or ""
    if module.split(".")[0] in _JAX_PACKAGES:
        return True
    owner = getattr(obj, "__self__", None)
    if owner is None:
        return False
    return any(
        (getattr(c, "__module__", "") or "").split(".")[0] in _JAX_PACKAGES
        for c in type(owner).__mro__
    )


def matches(model: object) -> bool:
    """True for Keras-on-JAX models, ``jax.jit`` functions, Flax NNX modules, and
    ``functools.partial`` objects wrapping a JAX/Flax function (e.g. ``partial(m.apply, params)``).

    A plain Python function that uses ``jax.numpy`` is found by ``probe`` instead.
    """
    layer = _keras_on_jax_layer()
    if layer is not None and isinstance(model, layer):
        return True
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    jit_type = _jit_type(jax)
    if isinstance(model, jit_type):
        return True
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return True
    func = model
    while isinstance(func, functools.partial):
        func = func.func
        if isinstance(func, jit_type) or _from_jax_package(func):
            return True
    return False


def _flax_module_type() -> type | None:
    """``flax.linen.Module`` when Flax's linen API is imported, else None."""
    linen = sys.modules.get("flax.linen")
    return getattr(linen, "Module", None) if linen is not None else None


def adapt_model(model: object) -> object:
    """Flax linen forms made callable on arrays; anything else is returned as it is.

    A pair ``(module, variables)`` becomes ``functools.partial(module.apply, variables)``, and a
    bound module (``module.bind(variables)``) the same partial of its unbound module, so both
    take the path of a Flax ``apply`` (recognised by type, traced once per session). A bare
    module has no parameters to differentiate with and is refused with the fix.

    Raises:
        TypeError: For an unbound linen module.
    """
    module_type = _flax_module_type()
    if module_type is None:
        return model
    if (
        isinstance(model, tuple)
        and len(model) == 2
        and isinstance(model[0], module_type)
        and not isinstance(model[1], module_type)
    ):
        module, variables = model
        return functools.partial(module.apply, variables)
    if isinstance(model, module_type):
        if model.scope is None:  # type: ignore[attr-defined]
            raise TypeError(
                f"the Flax module {type(model).__name__} has no parameters: a Flax module "
                "needs its parameters: pass functools.partial(module.apply, params) or "
                "module.bind(params), or the pair (module, params)"
            )
        unbound, variables = model.unbind()  # type: ignore[attr-defined]
        return functools.partial(unbound.apply, variables)
    return model


#: Thread counts and devices are JAX's own to choose (dataset runs place PyTorch models).
place = self_placing("JAX")


def predict(model: object, x: np.ndarray) -> np.ndarray:
    """The raw outputs of ``model`` at the batch ``x``, forward only, as float64 numpy."""
    import jax.numpy as jnp

    return np.asarray(model(jnp.asarray(x)), dtype=np.float64)  # type: ignore[operator]


def is_tensor(x: object) -> bool:
    """True for JAX arrays."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def to_numpy(x: object) -> np.ndarray:
    """A JAX array as a NumPy array (copied to the host)."""
    return np.asarray(x)


def _is_jax_output(out: object, jax: Any) -> bool:
    """An array, or a container of arrays (which the session then rejects with a clear error)."""
    leaves = jax.tree_util.tree_leaves(out)
    return bool(leaves) and all(isinstance(v, jax.Array) for v in leaves)


def probe(model: object, example: np.ndarray) -> bool:
    """True when ``model`` accepts a JAX array and returns JAX arrays."""
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    wanted = example.dtype if example.dtype.kind == "f" else np.dtype(np.float32)
    dtype = jax.dtypes.canonicalize_dtype(wanted)
    try:
        out = cast(Callable[..., Any], model)(jax.numpy.asarray(example[:1], dtype=dtype))
    except Exception:  # noqa: BLE001 - a failed probe only means "not a JAX callable"
        return False
    return _is_jax_output(out, jax)


def _weight_dtype(model: object, jax: Any) -> np.dtype | None:
    """The first floating dtype among a Keras model's weights or a partial's bound arrays."""
    layer = _keras_on_jax_layer()
    if layer is not None and isinstance(model, layer):
        leaves: list[Any] = list(cast(Any, model).weights)
    elif isinstance(model, functools.partial):
        leaves = jax.tree_util.tree_leaves((model.args, model.keywords))
    else:
        return None
    for leaf in leaves:
        try:
            dt = np.dtype(leaf.dtype)
        except (AttributeError, TypeError):
            continue
        if dt.kind == "f":
            return dt
    return None


def _session_dtype(model: object, options: SessionOptions, jax: Any) -> np.dtype:
    x64 = jax.dtypes.canonicalize_dtype(np.float64) == np.float64
    if options.dtype is not None:
        dt = np.dtype(options.dtype)
        if dt == np.float64 and not x64:
            raise ValueError(
                "dtype=float64 needs JAX's 64-bit mode: call "
                'jax.config.update("jax_enable_x64", True) before creating the model'
            )
        return dt
    if not x64:
        return np.dtype(np.float32)
    if options.fallback_dtype() == "float64" or _weight_dtype(model, jax) == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _sub_jaxpr(eqn: Any, core: Any) -> Any | None:
    """The inner program of a call-like equation (e.g. a nested ``jit``) whose inputs and outputs
    line up with the equation's, or None."""
    for key in ("jaxpr", "call_jaxpr"):
        inner = eqn.params.get(key)
        if isinstance(inner, core.ClosedJaxpr):
            inner = inner.jaxpr
        if (
            isinstance(inner, core.Jaxpr)
            and len(inner.invars) == len(eqn.invars)
            and len(inner.outvars) == len(eqn.outvars)
        ):
            return inner
    return None


def _reaches(jaxpr: Any, flags: Sequence[bool], core: Any) -> list[bool]:
    """For each output of ``jaxpr``: does it depend on an input flagged True?

    A forward pass over the equations; nested call programs are followed, any other equation
    with a flagged input flags all its outputs (so the answer errs towards "depends").
    """
    dep = {v for v, f in zip(jaxpr.invars, flags, strict=True) if f}

    def hit(v: Any) -> bool:
        return not isinstance(v, core.Literal) and v in dep

    for eqn in jaxpr.eqns:
        ins = [hit(v) for v in eqn.invars]
        if not any(ins):
            continue
        inner = _sub_jaxpr(eqn, core)
        outs = _reaches(inner, ins, core) if inner is not None else [True] * len(eqn.outvars)
        dep.update(v for v, o in zip(eqn.outvars, outs, strict=True) if o)
    return [hit(v) for v in jaxpr.outvars]


class _Program:
    """The traced computations of a session: forward, explained scores and the jitted step.

    It holds the model only through ``call`` (a weak reference for shared programs) and never the
    session, so a program cached for later sessions keeps no device arrays alive.
    """

    def __init__(self, jax: Any, call: Callable[[Any], Any], output: object) -> None:
        self._jax = jax
        self._call = call
        self._user_output = output if callable(output) else None
        self._named = _output_transform(output, jax)
        self.step = jax.jit(self._step)
        self._secant: Any = None
        #: The batch sizes each jitted step runs with (``RowSizes``: padded to ``batch_size``
        #: in a first call, compiled at a batch's own size once calls repeat it).
        self.row_sizes = RowSizes()
        #: The operations the secant step's flags name, in order (set when it is traced).
        self.secant_names: list[str] = []

    def scores_of(self, x: Any) -> Any:
        """The transformed ``(n, classes)`` output of the model at ``x``."""
        return self.raw_and_scores(x)[1]

    def raw_and_scores(self, x: Any) -> tuple[Any, Any]:
        """The model's output before a named transform (None for an output callable) and the
        transformed ``(n, classes)`` scores, from one call of the model."""
        out = self._call(x)
        if self._user_output is not None:
            out = self._user_output(out)  # type: ignore[operator]
        if not isinstance(out, self._jax.Array):
            raise TypeError(
                f"the model returned {type(out).__name__}, not an array; pass output= a callable "
                "that picks the class scores from it (e.g. output=lambda y: y['logits'])"
            )
        if self._named is None:
            return None, check_output_shape(out, int(x.shape[0]))
        raw = check_output_shape(out, int(x.shape[0]))
        return raw, check_output_shape(self._named(out), int(x.shape[0]))

    def target_scores(self, x: Any, rows: Any) -> tuple[Any, Any]:
        """``(sum of the explained scores, the scores)`` at the points ``x``."""
        out = self.scores_of(x)
        s = self._jax.numpy.take_along_axis(out, rows[:, None], axis=1)[:, 0]
        return s.sum(), s

    @staticmethod
    def points(base: Any, diff: Any, idx: Any, alpha: Any) -> Any:
        """The path points ``base[idx] + alpha * diff[idx]``."""
        return base[idx] + alpha.reshape((-1,) + (1,) * (base.ndim - 1)) * diff[idx]

    def _step(
        self, sums: Any, base: Any, diff: Any, target: Any, idx: Any, alpha: Any, weight: Any
    ) -> tuple[Any, Any, Any]:
        """One batch: ``sums[idx] += weight * grad``; returns the new sums, scores, mean |grad|."""
        x = self.points(base, diff, idx, alpha)
        g, s = self._jax.grad(self.target_scores, has_aux=True)(x, target[idx])
        w = weight.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)
        sums = sums.at[idx].add(g * w)
        mag = self._jax.numpy.abs(g).reshape(g.shape[0], -1).mean(axis=1)
        return sums, s, mag

    def secant_step(self) -> Any:
        """The jitted ``method="secant"`` step (see ``_secant_step``), built on first use."""
        if self._secant is None:
            self._secant = self._jax.jit(self._secant_step)
        return self._secant

    def _model_out(self, x: Any) -> Any:
        """The model's output before a named transform, as ``(n, classes)``."""
        out = self._call(x)
        if self._user_output is not None:
            out = self._user_output(out)  # type: ignore[operator]
        if not isinstance(out, self._jax.Array):
            raise TypeError(
                f"the model returned {type(out).__name__}, not an array; pass output= a callable "
                "that picks the class scores from it (e.g. output=lambda y: y['logits'])"
            )
        return check_output_shape(out, int(x.shape[0]))

    def _secant_step(
        self, sums: Any, base: Any, diff: Any, target: Any, start: Any, end: Any, owner: Any,
        width: Any,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """One batch of pieces: piece ``i`` runs from ``start = (path, alpha)`` to ``end`` and
        adds ``width * secant gradient`` into ``sums[owner]``. Returns the new sums, the
        scores at both ends, the summed |completeness residual| and the unhandled flags."""
        from igkit.backends.jax_secant import secant_outputs, secant_seeds

        jax = self._jax
        xa = jax.lax.stop_gradient(self.points(base, diff, start[0], start[1]))
        xb = self.points(base, diff, end[0], end[1])

        def ends(x: Any) -> tuple[Any, Any]:
            out_b, out_a, flags = secant_outputs(self._model_out, x, xa)
            return out_b, (out_a, flags)

        out_b, vjp, (out_a, flags) = jax.vjp(ends, xb, has_aux=True)
        transform = self._named if self._named is not None else _identity
        seeds, change, s_b, s_a = secant_seeds(out_b, out_a, transform, target[owner])
        (g,) = vjp((seeds * width[:, None]).astype(out_b.dtype))
        sums = sums.at[owner].add(g)
        n = g.shape[0]
        moved = (g.reshape(n, -1) * diff[owner].reshape(n, -1)).sum(1)
        residual = self._jax.numpy.abs(moved - change * (width > 0)).sum()
        self.secant_names = [name for name, _ in flags]
        flagged = (self._jax.numpy.stack([f for _, f in flags]) if flags
                   else self._jax.numpy.zeros(0, bool))
        return sums, s_a, s_b, residual, flagged

    def check_connected(self, x: Any, rows: Any) -> None:
        """Raises DisconnectedModelError when the input's tangent cannot reach the score."""
        jax = self._jax

        def tangent_out(xb: Any, t: Any) -> Any:
            return jax.jvp(lambda v: self.target_scores(v, rows)[0], (xb,), (t,))[1]

        # jax is loaded (a session exists); its jax.extend.core submodule may not be yet.
        core = importlib.import_module("jax.extend.core")
        closed = jax.make_jaxpr(tangent_out)(x, x)
        (reached,) = _reaches(closed.jaxpr, [False, True], core)
        if not reached:
            raise DisconnectedModelError(_DISCONNECTED)


# Programs shared by every session of an immutable model (see ``_shareable``), so a loop of calls
# on one model compiles the step once, not once per call. Weak keys: the model can be collected.
_SHARED: weakref.WeakKeyDictionary[Any, dict[str, _Program]] = weakref.WeakKeyDictionary()
_IMMUTABLE_SCALARS = (bool, int, float, complex, str, type(None))


def _shareable(model: object, jax: Any) -> bool:
    """True when a program traced from ``model`` cannot go stale: a ``jax.jit`` function (JAX
    caches its traces the same way), or a partial of a JAX/Flax function whose bound values are
    all JAX arrays or scalars. Keras and NNX models hold mutable weights and are never shared."""
    if isinstance(model, _jit_type(jax)):
        return True
    if not (isinstance(model, functools.partial) and matches(model)):
        return False
    leaves = jax.tree_util.tree_leaves((model.args, model.keywords))
    return all(isinstance(v, (jax.Array, *_IMMUTABLE_SCALARS)) for v in leaves)


def _program_for(model: object, output: object, jax: Any) -> _Program:
    """The session's program: a shared one for shareable models and named outputs, else new."""
    layer = _keras_on_jax_layer()
    if layer is not None and isinstance(model, layer):
        keras_model: Any = model
        return _Program(jax, lambda x: keras_model(x, training=False), output)
    if callable(output) or not _shareable(model, jax):
        return _Program(jax, model, output)  # type: ignore[arg-type]
    try:
        programs = _SHARED.setdefault(model, {})
    except TypeError:  # not weakly referenceable
        return _Program(jax, model, output)  # type: ignore[arg-type]
    key = str(output)
    if key not in programs:
        ref = weakref.ref(model)
        programs[key] = _Program(jax, lambda x: cast(Any, ref())(x), output)
    return programs[key]


class JaxSession:
    """A ``Session`` (see ``igkit.backends.base``) for JAX functions and Keras-on-JAX models."""

    capabilities = CAPABILITIES
    default_channel_axis = -1

    def __init__(self, model: object, options: SessionOptions) -> None:
        """Binds ``model`` (a model ``matches`` accepted, or a callable on JAX arrays)."""
        jax = sys.modules["jax"]
        self._jax = jax
        self._jnp = jax.numpy
        self._opts = options
        self.dtype = _session_dtype(model, options, jax)
        self._program: _Program | None = _program_for(model, options.output, jax)
        self._program.row_sizes.new_call()
        self._pad_to = options.batch_size
        self._checked = False
        self._sums: Any = None
        self._base: Any = None
        self._diff: Any = None
        self._target: Any = None
        self._n_paths = 0
        self._scores: list[tuple[Any, int]] = []
        self._grads: list[tuple[Any, int]] = []
        # method="secant": the operations followed by their midpoint gradient (or a condition
        # that flipped inside a piece), and the summed |completeness residual| of the pieces.
        self.unhandled_ops: set[str] = set()
        self.piece_residual = 0.0

    def close(self) -> None:
        """Drops the device arrays and the session's hold on the program."""
        self._sums = self._base = self._diff = self._target = None
        self._n_paths = 0
        self._program = None

    def _prog(self) -> _Program:
        if self._program is None:
            raise RuntimeError("the session is closed")
        return self._program

    def _a(self, x: np.ndarray, dtype: Any = None) -> Any:
        return self._jnp.asarray(np.asarray(x), dtype=dtype or self.dtype)

    def _oom_guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._jax.errors.JaxRuntimeError as exc:
            if "RESOURCE_EXHAUSTED" not in str(exc):
                raise
            raise OutOfMemory(str(exc)) from exc

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Forward only: the transformed outputs ``(N, classes)`` as float64, in batches.

        Not jitted: it runs twice per call (inputs, baselines), where compiling a second program
        costs more than it saves.
        """
        return self.outputs_and_raw(x)[0]

    def outputs_and_raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Forward only, in batches: the transformed outputs and the model's own (see
        ``igkit.backends.base.RawOutputSession``), float64 numpy. Not jitted (see
        ``outputs``)."""
        prog = self._prog()
        chunks, raws = [], []
        bs = self._opts.batch_size
        for start in range(0, x.shape[0], bs):
            chunk = x[start : start + bs]
            # Called at once, so the closure sees this iteration's chunk.
            raw, out = self._oom_guard(lambda: prog.raw_and_scores(self._a(chunk)))  # noqa: B023
            chunks.append(np.asarray(out, dtype=np.float64))
            if raw is not None:
                raws.append(np.asarray(raw, dtype=np.float64))
        return np.concatenate(chunks, axis=0), (np.concatenate(raws, axis=0) if raws else None)

    def set_paths(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        path_input: np.ndarray,
        path_target: np.ndarray,
    ) -> None:
        """Moves the paths to the device and zeroes the sums (see ``Session.set_paths``).

        The per-path arrays are padded with unused paths to ``_path_bucket`` of them: the
        jitted steps compile once per shape, and ``steps="auto"`` on a nested rule keeps each
        level's new nodes as paths of their own (3, 4, 8, ... per input), which without the
        padding compiled the step again at every level."""
        jnp = self._jnp
        n = baselines.shape[0]
        self._n_paths = n
        path_bytes = int(np.prod(baselines.shape[1:])) * self.dtype.itemsize
        extra = _path_bucket(n, path_bytes) - n
        pad = [(0, extra)] + [(0, 0)] * (baselines.ndim - 1)
        base = self._a(baselines)
        self._diff = jnp.pad(self._a(inputs)[self._a(path_input, jnp.int32)] - base, pad)
        self._base = jnp.pad(base, pad)
        self._target = self._a(np.pad(path_target, (0, extra)), jnp.int32)
        self._sums = jnp.zeros_like(self._base)
        self._scores, self._grads = [], []

    def accumulate(self, batch: RowBatch) -> None:
        """Evaluates one batch of rows and adds ``weight * grad`` into each row's path sum."""
        try:
            self._oom_guard(lambda: self._accumulate(batch))
        except OutOfMemory:
            # The engine retries with halves; pad those to no more than that (one more compile).
            self._pad_to = max(1, len(batch) // 2)
            raise

    def _accumulate(self, batch: RowBatch) -> None:
        prog = self._prog()
        n = len(batch)
        padded = batch.padded(prog.row_sizes.rows("point", n, self._pad_to))
        path, alpha, weight = padded.path, padded.alpha, padded.weight
        idx, alpha_a = self._a(path, self._jnp.int32), self._a(alpha)
        if not self._checked:
            prog.check_connected(
                prog.points(self._base, self._diff, idx, alpha_a), self._target[idx]
            )
            self._checked = True
        self._sums, s, mag = prog.step(
            self._sums, self._base, self._diff, self._target, idx, alpha_a, self._a(weight)
        )
        self._scores.append((s, n))
        if self._opts.trace:
            self._grads.append((mag, n))

    def accumulate_intervals(self, rows: RowBatch, batch_size: int) -> np.ndarray:
        """``method="secant"``: integrates each piece between consecutive rows of a path.

        ``rows`` holds every path's points in increasing alpha; a row's weight is the width of
        the piece it starts (0 on a path's last point), whose integral goes to that row's path.
        Each piece is one row of a batch: the model's jaxpr is evaluated at both of its ends by
        ``igkit.backends.jax_secant`` and its VJP at the end is the piece's secant gradient. A
        batch that runs out of memory is retried in halves.

        Returns:
            The rows evaluated per path index (a run's first row at its baseline is counted
            as PyTorch counts it: not at all, its values are the baseline's).
        """
        prog = self._prog()
        n = len(rows)
        pieces = np.flatnonzero(rows.weight[:-1] > 0) if n > 1 else np.empty(0, np.int64)
        scores = np.full(n, np.nan)
        size, at = max(1, batch_size), 0
        while at < pieces.shape[0]:
            k = pieces[at : at + size]
            try:
                s_a, s_b = self._oom_guard(lambda: self._pieces(prog, rows, k))  # noqa: B023
            except OutOfMemory:
                if size == 1:
                    raise
                size = max(1, size // 2)
                self._pad_to = min(self._pad_to, size)
                continue
            scores[k], scores[k + 1] = s_a, s_b
            at += k.shape[0]
        lone = np.flatnonzero(np.isnan(scores))
        if lone.size:
            x = prog.points(self._base, self._diff, self._a(rows.path[lone], self._jnp.int32),
                            self._a(rows.alpha[lone]))
            _, s = prog.target_scores(x, self._target[self._a(rows.path[lone], self._jnp.int32)])
            scores[lone] = np.asarray(s, dtype=np.float64)
        self._scores.append((scores, n))
        width = np.zeros(n)
        width[1:] = rows.weight[:-1]
        skip = (width == 0) & (rows.alpha == 0) & (rows.weight > 0)
        return np.bincount(rows.path[~skip], minlength=int(rows.path.max()) + 1 if n else 0)

    def _pieces(self, prog: _Program, rows: RowBatch, k: np.ndarray) -> tuple[np.ndarray, ...]:
        """One batch of pieces ``rows[k] -> rows[k + 1]``, padded (``RowSizes``, at most to
        ``_pad_to``) with pieces of width 0; returns the scores at their starts and ends."""
        jnp = self._jnp
        m = k.shape[0]
        size = prog.row_sizes.rows("secant", m, self._pad_to)
        pad = np.concatenate([k, np.full(size - m, k[-1])])
        width = np.zeros(pad.shape[0])
        width[:m] = rows.weight[k]
        i32 = jnp.int32
        start = (self._a(rows.path[pad], i32), self._a(rows.alpha[pad]))
        end = (self._a(rows.path[pad + 1], i32), self._a(rows.alpha[pad + 1]))
        owner = self._a(rows.path[pad], i32)
        if not self._checked:
            prog.check_connected(prog.points(self._base, self._diff, *end), self._target[owner])
            self._checked = True
        self._sums, s_a, s_b, residual, flags = prog.secant_step()(
            self._sums, self._base, self._diff, self._target, start, end, owner, self._a(width))
        self.piece_residual += float(residual)
        flags = np.asarray(flags)
        self.unhandled_ops |= {name for name, f in zip(prog.secant_names, flags, strict=True)
                               if f}
        return (np.asarray(s_a, dtype=np.float64)[:m], np.asarray(s_b, dtype=np.float64)[:m])

    def take(self) -> Taken:
        """Returns the sums and scores gathered since the last take and zeroes the sums."""
        sums = np.asarray(self._sums, dtype=np.float64)[: self._n_paths]
        scores = (
            np.concatenate([np.asarray(s, dtype=np.float64)[:n] for s, n in self._scores])
            if self._scores
            else np.empty(0)
        )
        grads = (
            np.concatenate([np.asarray(g, dtype=np.float64)[:n] for g, n in self._grads])
            if self._opts.trace and self._grads
            else None
        )
        self._sums = self._jnp.zeros_like(self._sums)
        self._scores, self._grads = [], []
        return Taken(sums, scores, grads)


#: What padding the path arrays to 16 paths may add to each of them (bytes): a few small
#: images' worth, never a large microscopy image copied 15 more times.
_PATH_PAD_BYTES = 32 << 20


def _path_bucket(n: int, path_bytes: int) -> int:
    """The number of paths the device arrays hold for ``n`` paths of ``path_bytes`` each: 16
    while that adds at most ``_PATH_PAD_BYTES`` per array, else ``n`` rounded up to an eighth
    of its power of two (at most 1/8 more memory), so that calls and levels with nearby path
    counts share one compiled step."""
    if n <= 16 and (16 - n) * path_bytes <= _PATH_PAD_BYTES:
        return 16
    unit = 1 << max(0, (n - 1).bit_length() - 3)
    return -(-n // unit) * unit


def _output_transform(output: object, jax: Any) -> Callable[[Any], Any] | None:
    """The named output transform, or None for a user callable (applied to the raw output)."""
    if callable(output):
        return None
    return {
        "raw": _identity,
        "softmax": lambda y: jax.nn.softmax(y, axis=-1),
        "sigmoid": jax.nn.sigmoid,
    }[output]  # type: ignore[index]


def open_session(model: object, options: SessionOptions) -> JaxSession:
    """Binds ``model`` for one Integrated Gradients computation."""
    return JaxSession(model, options)
