"""TensorFlow / Keras backend: interpolation, forward, gradient and weighted reduction on device.

It serves Keras models and layers when Keras runs on TensorFlow (Keras 3, and ``tf_keras`` when
that module is already imported), ``tf.Module`` objects, ``tf.function`` callables, concrete
functions and SavedModel signatures. Like every backend it imports nothing itself: a TensorFlow
model can only exist once TensorFlow is imported, so ``sys.modules`` is enough.

The per-batch step (interpolate, forward, ``tf.GradientTape`` gradient, weighted scatter-add into
the per-path sums) runs as one ``tf.function``: on a small CNN on 2 CPU cores a batch takes 3-7 ms
instead of 30-35 ms eagerly, and on MobileNetV2 (224 px, batch 16) 1.1 s instead of 2.0 s. Every
batch is padded by repeating its last row with weight 0: to ``batch_size`` rows in a first
call, so a short batch does not retrace the step, and in later calls to a short batch's own
power of two once an earlier call asked for it too (``igkit.backends.base.RowSizes``). The
per-path tensors are traced with any number of paths, so neither a new number of inputs nor a
nested rule's levels (Fejér's ``steps="auto"`` keeps each node as a path) retrace it (Keras
EfficientNet-Lite0's first default call 12.3 -> 9.6 s). The traced step is shared by all
sessions of one model (per output name), so a loop of calls traces once per batch size; the
graph reads the model's variables when it runs, so weight updates between calls are seen. A
model that cannot be traced (say it calls ``.numpy()`` on its input) is run eagerly instead,
without padding.

Why one module: a backend is one framework's side of the ``Session`` contract; its session,
the compiled step it shares between sessions and the model probing it relies on change together
when TensorFlow does, so they stay side by side.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable
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
    "TensorFlowSession",
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

name = "tensorflow"
title = "TensorFlow"

#: Exact float32 only, batch by batch through ``accumulate``; secant pieces
#: (``accumulate_intervals``, ``igkit.backends.tf_secant``); sessions drop their device tensors
#: and their hold on the traced step on ``close``; the model's own outputs beside the
#: transformed ones (``outputs_and_raw``).
CAPABILITIES = Capabilities(interval_accumulation=True, closing=True, raw_outputs=True)

_DISCONNECTED = (
    "the model's output does not depend on its input (no gradient reaches the input); "
    "check that the model does not detach (tf.stop_gradient), round or convert the input to "
    "numpy, and that it does not build its output from the input's shape alone"
)


def _keras_layer_types() -> tuple[type, ...]:
    """Keras layer base classes whose models this backend runs (only modules already imported)."""
    types: list[type] = []
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            on_tf = keras.backend.backend() == "tensorflow"
            layer = keras.layers.Layer
        except Exception:  # noqa: BLE001 - a half-imported or unusual keras is simply not ours
            on_tf = False
        if on_tf:
            types.append(layer)
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        try:
            types.append(tf_keras.layers.Layer)
        except AttributeError:
            pass
    return tuple(types)


def matches(model: object) -> bool:
    """True for Keras-on-TensorFlow models, ``tf.Module``s, tf.functions and concrete functions.

    A restored SavedModel object (whose ``__call__`` is a restored tf.function) matches too.
    """
    keras_types = _keras_layer_types()
    if keras_types and isinstance(model, keras_types):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    function_types = (
        tf.types.experimental.ConcreteFunction,
        tf.types.experimental.PolymorphicFunction,
    )
    if isinstance(model, (tf.Module, *function_types)):
        return True
    # A restored SavedModel object keeps its restored tf.function as an instance attribute.
    call = inspect.getattr_static(model, "__call__", None)
    return isinstance(call, tf.types.experimental.PolymorphicFunction)


def is_tensor(x: object) -> bool:
    """True for TensorFlow tensors and variables."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, (tf.Tensor, tf.Variable))


def to_numpy(x: object) -> np.ndarray:
    """The value of a TensorFlow tensor or variable as a NumPy array."""
    return np.asarray(x.numpy())  # type: ignore[attr-defined]


def adapt_model(model: object) -> object:
    """TensorFlow models need no adapting: they are run as they are."""
    return model


#: Thread counts and devices are TensorFlow's own to choose (dataset runs place PyTorch models).
place = self_placing("TensorFlow")


def predict(model: object, x: np.ndarray) -> np.ndarray:
    """The raw outputs of ``model`` at the batch ``x``, forward only, as float64 numpy. A
    SavedModel signature's one-entry dict gives its one tensor."""
    import tensorflow as tf

    out = model(tf.constant(x))  # type: ignore[operator]
    if isinstance(out, dict) and len(out) == 1:
        out = next(iter(out.values()))
    return np.asarray(out, dtype=np.float64)


def _is_tf_output(out: object, tf: Any) -> bool:
    """A tensor, or a dict/list/tuple of tensors (which the session then explains or rejects)."""
    if isinstance(out, tf.Tensor):
        return True
    if isinstance(out, dict):
        return bool(out) and all(isinstance(v, tf.Tensor) for v in out.values())
    if isinstance(out, (list, tuple)):
        return bool(out) and all(isinstance(v, tf.Tensor) for v in out)
    return False


def probe(model: object, example: np.ndarray) -> bool:
    """True when ``model`` accepts a TensorFlow tensor and returns TensorFlow tensors."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    dtype = example.dtype if example.dtype.kind == "f" else np.float32
    try:
        out = cast(Callable[..., Any], model)(tf.constant(example[:1], dtype=tf.as_dtype(dtype)))
    except Exception:  # noqa: BLE001 - a failed probe only means "not a TensorFlow callable"
        return False
    return _is_tf_output(out, tf)


def _accepts_training(fn: object) -> bool:
    """Whether ``fn`` takes a ``training`` keyword (so dropout and batch-norm run in inference)."""
    tf = sys.modules["tensorflow"]
    if isinstance(fn, tf.types.experimental.PolymorphicFunction) and fn.input_signature:
        # A fixed input signature rejects arguments outside it.
        return False
    try:
        params = inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    p = params.get("training")
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


Invoke = Callable[[Any, Any], Any]


def _make_caller(model: object) -> tuple[Invoke, bool]:
    """How to call ``model``: ``invoke(model, x) -> raw output``, and whether the output is a
    SavedModel signature's dict.

    Keras models and callables with a ``training`` parameter run with ``training=False``;
    SavedModel signatures take their single input by keyword. ``invoke`` takes the model as an
    argument so that a shared program can hold the model by a weak reference.
    """
    tf = sys.modules["tensorflow"]
    keras_types = _keras_layer_types()
    if keras_types and isinstance(model, keras_types):
        return (lambda m, x: m(x, training=False)), False
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        args, kwargs = model.structured_input_signature
        if len(args) == 1 and not kwargs:
            return (lambda m, x: m(x)), False
        if not args and len(kwargs) == 1:
            (key,) = kwargs
            return (lambda m, x: m(**{key: x})), True
        raise TypeError(
            f"the concrete function takes {len(args)} positional and {len(kwargs)} keyword "
            "inputs; igkit explains a function of one image batch. Wrap it in a function of "
            "one tensor"
        )
    if _accepts_training(model):
        return (lambda m, x: m(x, training=False)), False
    return (lambda m, x: m(x)), False


def _float_dtype_of(values: object, tf: Any) -> str | None:
    """The first floating dtype among ``values`` (variables or tensor specs), or None."""
    try:
        items = list(values)  # type: ignore[call-overload]
    except TypeError:
        return None
    for v in items:
        try:
            dt = tf.as_dtype(v.dtype)
        except (AttributeError, TypeError):
            continue
        if dt.is_floating:
            return dt.name
    return None


def _model_dtype(model: object) -> str | None:
    """The dtype the model computes in: its input signature's, else its first float weight's."""
    tf = sys.modules["tensorflow"]
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        args, kwargs = model.structured_input_signature
        found = _float_dtype_of(tf.nest.flatten((args, kwargs)), tf)
        if found:
            return found
    if isinstance(model, tf.types.experimental.PolymorphicFunction) and model.input_signature:
        found = _float_dtype_of(tf.nest.flatten(model.input_signature), tf)
        if found:
            return found
    for attr in ("weights", "variables"):
        try:
            values = getattr(model, attr, None)
        except Exception:  # noqa: BLE001 - e.g. an unbuilt Keras model raises on .weights
            values = None
        found = _float_dtype_of(values, tf) if values is not None else None
        if found:
            return found
    return None


def _output_transform(output: object) -> Callable[[Any], Any] | None:
    """The named output transform, or None for a user callable (applied to the raw output)."""
    tf = sys.modules["tensorflow"]
    if callable(output):
        return None
    return {
        "raw": lambda y: y,
        "softmax": lambda y: tf.nn.softmax(y, axis=-1),
        "sigmoid": tf.sigmoid,
    }[output]  # type: ignore[index]


class _Program:
    """The traced computations of a session: forward, explained scores and the step.

    It holds the model only through ``call`` (a weak reference for shared programs) and never the
    session, so a program cached for later sessions keeps no device tensors alive.
    """

    def __init__(
        self, tf: Any, model: object, output: object, trace: bool, *, weak: bool = False
    ) -> None:
        self._tf = tf
        invoke, self._signature = _make_caller(model)
        if weak:
            ref = weakref.ref(model)  # a cached program must not keep its key (the model) alive
            self._call: Callable[[Any], Any] = lambda x: invoke(ref(), x)
        else:
            self._call = lambda x: invoke(model, x)
        self._named = _output_transform(output)
        self._user_output = output if self._named is None else None
        self._trace = trace
        self.graph: Callable[..., Any] | None = self._graph_step
        self._graphs: dict[tuple, Any] = {}
        self.graph_ok = False  # the graph step has run once: later failures are real errors
        self._secant: dict[tuple, Any] = {}
        #: The batch sizes the traced steps run with (``RowSizes``: padded to ``batch_size`` in
        #: a first call, traced at a batch's own size once calls repeat it).
        self.row_sizes = RowSizes()

    def model_output(self, x: Any) -> Any:
        """The tensor ``method="secant"`` follows: the model's output (a signature's one
        entry), through the user's output callable if any."""
        out = self._call(x)
        if self._user_output is not None:
            return self._user_output(out)  # type: ignore[operator]
        if self._signature and isinstance(out, dict) and len(out) == 1:
            (out,) = out.values()
        return out

    def secant(self, example_shape: tuple[int, ...], dtype: Any) -> Any:
        """The secant step for examples of this shape and dtype (``tf_secant.SecantStep``),
        traced once and kept with the program."""
        key = (tuple(example_shape), str(dtype))
        if key not in self._secant:
            from igkit.backends.tf_secant import SecantStep, trace_model

            concrete = trace_model(self.model_output, example_shape, dtype)
            named = self._named if self._named is not None else (lambda y: y)
            self._secant[key] = SecantStep(concrete, named)
        return self._secant[key]

    def scores_of(self, x: Any) -> Any:
        """The transformed ``(n, classes)`` output of the model at ``x``."""
        return self.raw_and_scores(x)[1]

    def raw_and_scores(self, x: Any) -> tuple[Any, Any]:
        """The model's output before a named transform (None for an output callable) and the
        transformed ``(n, classes)`` scores, from one call of the model."""
        tf = self._tf
        out = self._call(x)
        if self._user_output is not None:
            out = self._user_output(out)  # type: ignore[operator]
        elif self._signature and isinstance(out, dict) and len(out) == 1:
            # A SavedModel signature always returns a dict; one entry is unambiguous.
            (out,) = out.values()
        if not isinstance(out, tf.Tensor):
            raise TypeError(
                f"the model returned {type(out).__name__}, not a tensor; pass output= a callable "
                "that picks the class scores from it (e.g. output=lambda y: y['logits'])"
            )
        if self._named is None:
            return None, check_output_shape(out, int(x.shape[0]))
        raw = check_output_shape(out, int(x.shape[0]))
        return raw, check_output_shape(self._named(out), int(x.shape[0]))

    def _graph_step(self, *args: Any) -> tuple[Any, Any, Any]:
        """``step`` as a ``tf.function``, traced once per batch shape: the per-path arguments
        (sums, baselines, differences, targets) are traced with any number of paths, so a call
        with a new number of paths, or ``steps="auto"`` on a nested rule (whose levels keep each
        node as a path of its own: 3, 4, 8, ... of them), does not trace the model again. The
        rows (``idx``, ``alpha``, ``weight``) keep their static size, so the model sees a batch
        of known size."""
        tf = self._tf
        per_path, rows = args[:4], args[4:]
        key = tuple((tuple(t.shape[1:]), t.dtype) for t in per_path) + tuple(
            (tuple(t.shape), t.dtype) for t in rows)
        fn = self._graphs.get(key)
        if fn is None:
            spec = [tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in per_path]
            spec += [tf.TensorSpec(t.shape, t.dtype) for t in rows]
            fn = self._graphs[key] = tf.function(self.step, input_signature=spec)
        return fn(*args)

    def step(
        self, sums: Any, base: Any, diff: Any, target: Any, idx: Any, alpha: Any, weight: Any
    ) -> tuple[Any, Any, Any]:
        """One batch: ``sums[idx] += weight * grad``; returns the new sums, scores, mean |grad|."""
        tf = self._tf
        shape = [-1] + [1] * (len(base.shape) - 1)
        xb = tf.gather(base, idx) + tf.reshape(alpha, shape) * tf.gather(diff, idx)
        with tf.GradientTape() as tape:
            tape.watch(xb)
            out = self.scores_of(xb)
            s = tf.gather(out, tf.gather(target, idx), axis=1, batch_dims=1)
            total = tf.reduce_sum(s)
        g = tape.gradient(total, xb)
        if g is None:
            raise DisconnectedModelError(_DISCONNECTED)
        g = tf.convert_to_tensor(g)  # a gather inside the model can yield IndexedSlices
        w = tf.cast(tf.reshape(weight, shape), g.dtype)
        sums = tf.tensor_scatter_nd_add(sums, idx[:, None], g * w)
        if self._trace:
            mag = tf.reduce_mean(tf.reshape(tf.abs(g), [tf.shape(g)[0], -1]), axis=1)
        else:
            mag = tf.zeros([0], dtype=g.dtype)
        return sums, s, mag


# Programs shared by every session of one model (per output name and trace flag), so repeated
# calls trace the step once instead of once per call. Traced graphs read the model's variables
# at run time, so weight updates are seen; weak keys let the model be collected.
_SHARED: weakref.WeakKeyDictionary[Any, dict[tuple[str, bool], _Program]] = (
    weakref.WeakKeyDictionary()
)


def _program_for(model: object, options: SessionOptions, tf: Any) -> _Program:
    """A shared program for named outputs, a new one for output callables (keyed by identity,
    they would only fill the cache) and for models that cannot be weakly referenced."""
    if callable(options.output):
        return _Program(tf, model, options.output, options.trace)
    try:
        programs = _SHARED.setdefault(model, {})
    except TypeError:
        return _Program(tf, model, options.output, options.trace)
    key = (str(options.output), bool(options.trace))
    if key not in programs:
        programs[key] = _Program(tf, model, options.output, options.trace, weak=True)
    return programs[key]


class TensorFlowSession:
    """A ``Session`` (see ``igkit.backends.base``) for TensorFlow and Keras models.

    Inputs, baselines, differences and targets stay on TensorFlow's default device; only the
    per-path gradient sums and the scores come back, in ``take``.
    """

    capabilities = CAPABILITIES
    default_channel_axis = -1

    def __init__(self, model: object, options: SessionOptions, *, graph: bool = True) -> None:
        """Binds ``model``.

        Args:
            model: A model ``matches`` accepted, or a callable on TensorFlow tensors.
            options: How to compute (see ``SessionOptions``).
            graph: Run the step as a ``tf.function`` (False: eagerly; for measurements).
        """
        tf = sys.modules["tensorflow"]
        self._tf = tf
        self._opts = options
        if options.dtype is not None:
            dtype_name = np.dtype(options.dtype).name
        else:
            dtype_name = _model_dtype(model) or options.fallback_dtype()
        self._tdtype = tf.as_dtype(dtype_name)
        self.dtype = np.dtype(dtype_name)
        self._program: _Program | None = (
            _program_for(model, options, tf)
            if graph
            else _Program(tf, model, options.output, options.trace)
        )
        self._graph = graph
        self._pad_to = options.batch_size
        self._program.row_sizes.new_call()
        self._sums: Any = None
        self._scores: list[Any] = []
        self._grads: list[Any] = []
        # method="secant": the operations followed by their midpoint gradient, and the summed
        # |completeness residual| of the pieces (rounding only when every rule is exact).
        self.unhandled_ops: set[str] = set()
        self.piece_residual = 0.0

    def close(self) -> None:
        """Drops the device tensors and the session's hold on the program."""
        self._sums = self._base = self._diff = self._target = None
        self._program = None

    def _prog(self) -> _Program:
        if self._program is None:
            raise RuntimeError("the session is closed")
        return self._program

    def _t(self, x: np.ndarray, dtype: Any = None) -> Any:
        return self._tf.constant(np.asarray(x), dtype=dtype or self._tdtype)

    def _oom_guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._tf.errors.ResourceExhaustedError as exc:
            raise OutOfMemory(str(exc)) from exc

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Forward only: the transformed outputs ``(N, classes)`` as float64, in batches."""
        return self.outputs_and_raw(x)[0]

    def outputs_and_raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Forward only, in batches: the transformed outputs and the model's own (see
        ``igkit.backends.base.RawOutputSession``), float64 numpy."""
        prog = self._prog()
        chunks, raws = [], []
        bs = self._opts.batch_size
        for start in range(0, x.shape[0], bs):
            chunk = x[start : start + bs]
            # Called at once, so the closure sees this iteration's chunk.
            raw, out = self._oom_guard(lambda: prog.raw_and_scores(self._t(chunk)))  # noqa: B023
            chunks.append(np.asarray(out.numpy(), dtype=np.float64))
            if raw is not None:
                raws.append(np.asarray(raw.numpy(), dtype=np.float64))
        return np.concatenate(chunks, axis=0), (np.concatenate(raws, axis=0) if raws else None)

    def set_paths(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        path_input: np.ndarray,
        path_target: np.ndarray,
    ) -> None:
        """Moves the paths to the device and zeroes the sums (see ``Session.set_paths``)."""
        tf = self._tf
        self._base = self._t(baselines)
        x = self._t(inputs)
        self._diff = tf.gather(x, self._t(path_input, tf.int64)) - self._base
        self._target = self._t(path_target, tf.int64)
        self._sums = tf.zeros_like(self._base)
        self._scores, self._grads = [], []

    def accumulate(self, batch: RowBatch) -> None:
        """Evaluates one batch of rows and adds ``weight * grad`` into each row's path sum."""
        try:
            self._oom_guard(lambda: self._accumulate(batch))
        except OutOfMemory:
            # The engine retries with halves; pad those to no more than that (one more trace).
            self._pad_to = max(1, len(batch) // 2)
            raise

    def _accumulate(self, batch: RowBatch) -> None:
        tf = self._tf
        prog = self._prog()
        n = len(batch)
        graph = prog.graph if self._graph else None
        rows = (batch.padded(prog.row_sizes.rows("point", n, self._pad_to)) if graph is not None
                else batch)
        path, alpha, weight = rows.path, rows.alpha, rows.weight
        args = (
            self._sums, self._base, self._diff, self._target,
            self._t(path, tf.int64), self._t(alpha), self._t(weight),
        )
        if graph is None:
            sums, s, mag = prog.step(*args)
        else:
            try:
                sums, s, mag = graph(*args)
            except (DisconnectedModelError, tf.errors.ResourceExhaustedError):
                raise
            except Exception:
                if prog.graph_ok:
                    raise
                # The model does not trace (e.g. it calls .numpy() on its input): run it eagerly
                # from now on, where it either works or fails with its own error.
                prog.graph = None
                self._accumulate(batch)
                return
            prog.graph_ok = True
        self._sums = sums
        self._scores.append(s[:n])
        if self._opts.trace:
            self._grads.append(mag[:n])

    def accumulate_intervals(self, rows: RowBatch, batch_size: int) -> np.ndarray:
        """``method="secant"``: integrates each piece between consecutive rows of a path (see
        ``igkit.backends.base.IntervalSession``) by ``igkit.backends.tf_secant``.

        Row ``k`` carries the piece it ends, so a batch starts with the previous batch's last
        row (evaluated again; it ends no piece there) and is padded with rows of width 0 to
        ``batch_size + 1`` rows, so that one trace serves every batch (``RowSizes``: a short
        batch gets a trace of its own size once calls repeat it); a call's first batch has no
        row to repeat and takes ``batch_size + 1`` rows of its own (a call of ``batch_size + 1``
        rows, a pilot's pieces and their baseline, is one batch, not a second one of two rows
        padded to ``batch_size + 1``). A batch that runs out of memory is retried in halves.

        Returns:
            The points evaluated per path index, counted as the PyTorch session counts them
            (a run's baseline point and the repeated rows are not counted).
        """
        tf = self._tf
        base: Any = self._base
        prog = self._prog()
        step = prog.secant(tuple(base.shape[1:]), self._tdtype)
        n = len(rows)
        width = np.zeros(n)
        width[1:] = rows.weight[:-1]
        owner = rows.path.copy()
        owner[1:] = rows.path[:-1]
        counts = np.zeros(int(rows.path.max()) + 1 if n else 0, dtype=np.int64)
        # Counted as PyTorch counts them: every point of the path once, but a run's first point
        # at its baseline (a forward pass PyTorch keeps per baseline; here it is a row) and not
        # a batch's repeated first row.
        counted = ~((width == 0) & (rows.alpha == 0) & (rows.weight > 0))
        start, size = 0, max(1, batch_size)
        while start < n:
            stop = min(n, start + size + (1 if start == 0 else 0))
            at = np.arange(max(0, start - 1), stop)
            w = width[at].copy()
            if start > 0:
                w[0] = 0.0  # integrated by the previous batch
            pad = prog.row_sizes.rows("secant", at.shape[0], size + 1) - at.shape[0]
            at_p = np.concatenate([at, np.full(pad, at[-1])])
            w = np.concatenate([w, np.zeros(pad)])
            idx = self._t(rows.path[at_p], tf.int64)
            try:
                g, s, residual = step.run(
                    tf.gather(self._base, idx), tf.gather(self._diff, idx),
                    self._t(rows.alpha[at_p]), self._t(w), tf.gather(self._target, idx))
            except tf.errors.ResourceExhaustedError:
                if size == 1:
                    raise OutOfMemory("out of memory with a single point of the path") from None
                size = max(1, size // 2)
                continue
            self._sums = tf.tensor_scatter_nd_add(
                self._sums, self._t(owner[at_p], tf.int64)[:, None], tf.cast(g, self._tdtype))
            self._scores.append(s[(1 if start > 0 else 0) : at.shape[0]])
            self.piece_residual += float(residual)
            fresh = at[1:] if start > 0 else at
            np.add.at(counts, rows.path[fresh[counted[fresh]]], 1)
            start = stop
        self.unhandled_ops |= step.graph.unhandled
        return counts

    def take(self) -> Taken:
        """Returns the sums and scores gathered since the last take and zeroes the sums."""
        tf = self._tf
        sums = np.asarray(self._sums.numpy(), dtype=np.float64)
        scores = (
            np.asarray(tf.concat(self._scores, 0).numpy(), dtype=np.float64)
            if self._scores
            else np.empty(0)
        )
        grads = (
            np.asarray(tf.concat(self._grads, 0).numpy(), dtype=np.float64)
            if self._opts.trace and self._grads
            else None
        )
        self._sums = tf.zeros_like(self._sums)
        self._scores, self._grads = [], []
        return Taken(sums, scores, grads)


def open_session(model: object, options: SessionOptions) -> TensorFlowSession:
    """Binds ``model`` for one Integrated Gradients computation."""
    return TensorFlowSession(model, options)
