"""Secant gradients for TensorFlow and Keras models: the machinery behind ``method="secant"``.

The rules are those of ``igkit.backends.torch_secant`` (see its docstring for why each piece is
exact for completeness): every operation passes back a *secant relation* of the piece, a linear
map ``J`` with ``J (input_b - input_a) = output_b - output_a``. TensorFlow offers no hook on every
operation a model calls, so this module works on the model's graph instead:

1. The model is traced once to a concrete function (``tf.function(...).get_concrete_function``
   on a batch of unknown size): Keras 3 functional and Sequential models, ``tf.keras``,
   ``tf.Module``s and ``tf.function``s all become one graph of TensorFlow operations. Calls of
   nested functions (``PartitionedCall``) are followed into their graphs.
2. Inside the secant step (itself a ``tf.function``) the graph's operations are created again in
   topological order on the batch of path points, each by its own operation type and attributes,
   so the result is the model's own computation. Operations whose input depends on the path and
   whose gradient is not already their secant relation get a ``tf.custom_gradient`` whose backward
   pass is the relation of the piece each row ends.

Rows are consecutive points of the path: row ``k``'s piece starts at row ``k - 1``, so the start
of any tensor is the tensor rolled by one row along its row axis (the axis of unknown size in
the traced graph; a dense layer on image features flattens rows with positions, so one row is
``size // rows`` entries there; an activation's slopes pair row slices instead, which copies
less). The first row of a batch ends no piece (its seed is zero).

The operation classes (``RULES``, by TensorFlow operation type, into the one table of
``igkit.core.secant_rules``):

* ``linear``: their own gradient (convolutions and matmuls with one path-dependent operand,
  bias adds, sums, means, reshapes, average pooling, inference-mode batch norm, ...);
* ``unit`` and ``piecewise``: ReLU, ReLU6, leaky ReLU, abs: the exact secant slope where the
  input moved, the derivative where it did not; ``smooth``: sigmoid, tanh, exp, log, erf, rsqrt,
  reciprocal, softplus, ``x ** c``, ...: the secant slope, the midpoint derivative for a move
  below rounding;
* ``multilinear``: a product, matmul, einsum or convolution of two path-dependent operands:
  the gradient at the ends' means, exact for any bilinear map; ``quotient``: ``u / v`` as
  ``u * (1 / v)``; ``square``: ``SquaredDifference`` as the square of a difference;
* ``select``: ``Maximum``/``Minimum`` of two tensors and ``MaxPool``/``Max``/``Min``: the
  winners at both ends and the point ``t*`` where their lines cross (``t*`` of the gradient to
  the start's winner, ``1 - t*`` to the end's); a nondecreasing activation right before a
  max-pool is fused into it (``max f(z) = f(max z)``);
* ``softmax``: ``Softmax`` and ``LogSoftmax`` as exp, sum and reciprocal (or log) at both ends,
  with one shift shared by the ends; attention (einsums and a softmax) is a composition;
* ``normalization``: a product with a factor holding ``Rsqrt`` that is a function of one tensor
  (LayerNorm as Keras writes it: ``x * inv - mean * inv`` with ``inv = rsqrt(var + eps) *
  gamma``) gets PyTorch's rule for normalisations: the map's gradient averaged over the piece
  by four Gauss-Legendre nodes plus a rank-one term that makes it exact;
* ``stop_gradient``: ``StopGradient`` (its values still move with the path: Keras's variance
  is taken around a stopped mean, exact since the centred values sum to zero);
* ``condition``: ``SelectV2`` is linear in its branches; a condition that depends on the path
  flips inside pieces, so the operation is named;
* anything else: its gradient at the midpoint of the piece's ends, named in ``unhandled``.
  Control flow (``If``, ``While``) is refused with the fix.

Why one module: the interpreter, the rules and the step share the row bookkeeping (row axes,
starts as rolled rows) and the way an operation is created again; split, every rule would reach
into the interpreter's state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from igkit.backends.base import DisconnectedModelError
from igkit.core.secant_rules import small_move

__all__ = ["RULES", "SecantGraph", "SecantUnsupported", "trace_model"]


def _classes(**groups: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for kind, names in groups.items():
        table.update(dict.fromkeys(names.split(), kind))
    return table


#: Operation type -> operation class (see the module docstring).
RULES: dict[str, str] = _classes(
    linear="Identity IdentityN Snapshot AddV2 Add Sub Neg BiasAdd AddN Mean Sum Reshape "
    "Transpose Squeeze ExpandDims ConcatV2 Concat Pack Unpack Split SplitV Slice StridedSlice "
    "GatherV2 Gather GatherNd Pad PadV2 MirrorPad Tile BroadcastTo AvgPool AvgPool3D Cast Cumsum "
    "ResizeBilinear ResizeNearestNeighbor DepthToSpace SpaceToDepth ReverseV2 Roll MatrixBandPart "
    "ZerosLike OnesLike EnsureShape CheckNumerics",
    condition="SelectV2 Select",
    multilinear="Mul MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum Conv2D Conv3D "
    "DepthwiseConv2dNative Conv2DBackpropInput Conv3DBackpropInputV2 Conv1D",
    quotient="RealDiv Div DivNoNan",
    unit="Relu Relu6",
    piecewise="LeakyRelu Abs",
    smooth="Elu Selu Sigmoid Tanh Exp Log Sqrt Rsqrt Reciprocal Inv Softplus Softsign Erf Erfc "
    "Square Sin Cos Atan Sinh Cosh Asinh Log1p Expm1 Pow",
    square="SquaredDifference",
    select="Maximum Minimum MaxPool Max Min",
    softmax="Softmax LogSoftmax",
    stop_gradient="StopGradient PreventGradient",
    no_gradient="Shape ShapeN Size Rank ArgMax ArgMin Equal NotEqual Greater GreaterEqual Less "
    "LessEqual Sign Floor Ceil Round",
    batch_norm="FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3",
    call="PartitionedCall StatefulPartitionedCall",
    control_flow="If StatelessIf While StatelessWhile Case StatelessCase For",
)
# Where a multilinear operation's factors are (the other inputs are sizes or settings).
_FACTORS = {"Conv2DBackpropInput": (1, 2), "Conv3DBackpropInputV2": (1, 2)}
# Nondecreasing activations a max-pool may take the input of instead.
_MONOTONE = frozenset("Relu Relu6 Elu Selu Sigmoid Tanh Softplus LeakyRelu".split())
# Outputs that never depend on the values of their input.
_SHAPES = frozenset("Shape ShapeN Size Rank".split())
_SKIP = frozenset(["NoOp"])


_DISCONNECTED = (
    "the model's output does not depend on its input (no gradient reaches the input); check "
    "that the model does not detach (tf.stop_gradient) or round the input"
)


class SecantUnsupported(ValueError):
    """The model's graph holds something the secant interpreter cannot run."""


def trace_model(call: Callable[[Any], Any], example_shape: Sequence[int], dtype: Any) -> Any:
    """``call`` traced on a batch of unknown size: a concrete function of one tensor."""
    spec = tf.TensorSpec([None, *example_shape], dtype)
    try:
        return tf.function(call, autograph=False).get_concrete_function(spec)
    except Exception as exc:  # noqa: BLE001 - any tracing failure has one fix
        raise SecantUnsupported(
            f"method='secant' on TensorFlow follows the model's graph, but the model could not "
            f"be traced to one ({type(exc).__name__}: {exc}); make it traceable by tf.function "
            "(no .numpy() on tensors), or pass method='gauss_legendre'"
        ) from exc


def _create(op: Any, inputs: Sequence[Any]) -> list[Any]:
    """The operation ``op`` created again in the current graph on ``inputs``."""
    graph = tf.compat.v1.get_default_graph()
    names = {a.name for a in op.op_def.attr}
    attrs = {k: v for k, v in op.node_def.attr.items() if k in names}
    new = graph._create_op_internal(  # noqa: SLF001 - the generic op constructor of TF graphs
        op.type, list(inputs), dtypes=[o.dtype for o in op.outputs], attrs=attrs,
        op_def=op.op_def)
    return list(new.outputs)


def _with_slope(z: Any, y: Any, slope: Any) -> Any:
    """``y`` forward, ``grad * slope`` backward (to ``z``)."""

    @tf.custom_gradient
    def f(x: Any) -> Any:
        del x
        return tf.identity(y), lambda g: g * slope

    return f(z)


def _with_relation(xs: Sequence[Any], values: Sequence[Any],
                   surrogate: Callable[..., Sequence[Any]]) -> list[Any]:
    """``values`` forward; backward the vector-Jacobian product of ``surrogate`` (a map linear
    in ``xs``, or evaluated at fixed points inside) with respect to ``xs``."""

    @tf.custom_gradient
    def f(*ins: Any) -> Any:
        del ins

        def grad(*gs: Any) -> Any:
            points = [tf.stop_gradient(x) for x in xs]
            got = tf.gradients(list(surrogate(*points)), points, grad_ys=list(gs))
            return [tf.zeros_like(p) if g is None else g for p, g in zip(points, got,
                                                                        strict=True)]

        return [tf.identity(v) for v in values], grad

    out = f(*xs)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _small_move(dtype: Any) -> float:
    """``igkit.core.secant_rules.small_move`` for a TensorFlow dtype."""
    return small_move("float64" if dtype == tf.float64 else "float32")


def _derivative(f: Callable[[Any], Any], z: Any) -> Any:
    (d,) = tf.gradients(f(z), [z])
    return tf.zeros_like(z) if d is None else d


def _slopes(za: Any, ya: Any, zb: Any, yb: Any, f: Callable[[Any], Any], kind: str) -> Any:
    """Secant slopes of ``f`` from ``za`` to ``zb`` (the midpoint derivative where the input did
    not move, or for a smooth ``f`` moved below rounding)."""
    dz = zb - za
    if kind == "smooth":
        still = tf.abs(dz) <= _small_move(dz.dtype) * tf.abs(za) + 1e-12
    else:
        still = tf.equal(dz, 0)
    # x / 0 is 0 here and replaced below: one pass fewer than dividing by where(still, 1, dz).
    quotient = tf.math.divide_no_nan(yb - ya, dz)
    if kind == "unit":
        # ReLU and ReLU6 (clamps): slope 1 where f(z) == z and 0 elsewhere, at the end.
        derivative = tf.cast(tf.equal(yb, zb), zb.dtype)
    else:
        derivative = _derivative(f, 0.5 * (za + zb))
    return tf.where(still, derivative, quotient)


class SecantGraph:
    """A traced model, run on a batch of consecutive path points with secant relations.

    Args:
        concrete: The model traced by ``trace_model``: one input, one output tensor.
    """

    def __init__(self, concrete: Any) -> None:
        self._cf = concrete
        outs = tf.nest.flatten(concrete.structured_outputs)
        if len(outs) != 1 or not isinstance(outs[0], tf.Tensor):
            raise SecantUnsupported(
                f"the model returns {len(outs)} tensors; method='secant' explains one output "
                "tensor. Pass output= a callable that picks the class scores")
        self._out = outs[0]
        self.unhandled: set[str] = set()
        self._rows = 1
        self._env: dict[Any, Any] = {}
        self._moving: set = set()
        self._graph_ops: list[Any] = []

    # -- rows --

    @staticmethod
    def _axis(orig: Any) -> int | None:
        """The row axis of a tensor of the traced graph: its first axis of unknown size."""
        if orig.shape.rank is None:
            return None
        for i, d in enumerate(orig.shape):
            if d is None:
                return i
        return None

    def _start(self, new: Any, axis: int | None, what: str) -> Any:
        """``new`` at each row's piece start (the row before), without gradient."""
        v = tf.stop_gradient(new)
        k = self._row_step(new, axis)
        if k is None:
            self.unhandled.add(f"{what} (rows not found)")
            return v
        return tf.roll(v, shift=k, axis=axis)

    # -- running the graph --

    def run(self, x: Any) -> Any:
        """The model's output at the points ``x`` (rows along axis 0, a static number of
        them), computed so that its gradient is the chain of secant relations."""
        self._rows = int(x.shape[0])
        graph = self._cf.graph
        env: dict[Any, Any] = {}
        for external, internal in self._cf.graph.captures:
            env[internal.ref()] = external
        inputs = [t for t in self._cf.inputs if t.ref() not in env]
        if len(inputs) != 1:
            raise SecantUnsupported(f"the traced model takes {len(inputs)} inputs, not one")
        env[inputs[0].ref()] = x
        moving = {inputs[0].ref()}
        self._graph_run(graph, env, moving)
        return env[self._out.ref()]

    def _graph_run(self, graph: Any, env: dict, moving: set) -> None:
        ops = graph.get_operations()
        for op in ops:
            self._env, self._moving, self._graph_ops = env, moving, ops
            if op.type in _SKIP or (op.type == "Placeholder" and op.outputs[0].ref() in env):
                continue
            if op.type == "Placeholder":
                raise SecantUnsupported(f"the traced model has an unbound input {op.name!r}")
            ins = [env[t.ref()] for t in op.inputs]
            moved = [i for i, t in enumerate(op.inputs) if t.ref() in moving]
            kind = RULES.get(op.type)
            if kind == "call":
                outs = self._call(op, ins, moving)
            elif not moved or op.type in _SHAPES:
                outs = _create(op, ins)
            else:
                if kind == "control_flow":
                    raise SecantUnsupported(
                        f"method='secant' cannot follow control flow ({op.type} {op.name!r}) "
                        "that depends on the input; pass method='gauss_legendre'")
                outs = self._rule(op, kind, ins, moved, moving)
                for o in op.outputs:
                    moving.add(o.ref())
            for o, n in zip(op.outputs, outs, strict=True):
                env[o.ref()] = n

    def _call(self, op: Any, ins: list, moving: set) -> list:
        """A nested function's call, followed into its graph."""
        fn = op.graph._get_function(op.get_attr("f").name)  # noqa: SLF001
        inner = getattr(fn, "graph", None)
        if inner is None:
            from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

            inner = function_def_to_graph(fn.definition,
                                          input_shapes=[t.shape for t in op.inputs])
        env: dict[Any, Any] = {}
        inner_moving: set = set()
        for outer_t, inner_t, value in zip(op.inputs, inner.inputs, ins, strict=True):
            env[inner_t.ref()] = value
            if outer_t.ref() in moving:
                inner_moving.add(inner_t.ref())
        self._graph_run(inner, env, inner_moving)
        outs = [env[t.ref()] for t in inner.outputs]
        if any(t.ref() in inner_moving for t in inner.outputs):
            for o in op.outputs:
                moving.add(o.ref())
        return outs

    # -- the rules --

    def _rule(self, op: Any, kind: str | None, ins: list, moved: list[int], moving: set
              ) -> list:
        floats = [i for i in moved if op.inputs[i].dtype.is_floating]
        if len(floats) < len(moved) and any(o.dtype.is_floating for o in op.outputs):
            # A float chosen by a path-dependent index or condition jumps: no secant relation.
            self.unhandled.add(f"{op.type} (path-dependent selection)")
        if not floats:
            return _create(op, ins)
        if kind in ("linear", "condition", "stop_gradient", "no_gradient"):
            # A path-dependent condition was named above; the branches are linear.
            return _create(op, ins)
        if kind == "batch_norm" and not op.get_attr("is_training"):
            return _create(op, ins)
        if kind == "multilinear":
            factors = _FACTORS.get(op.type)
            count = sum(1 for i in floats if factors is None or i in factors)
            if count <= 1:
                return _create(op, ins)
            if op.type == "Mul":
                found = self._normalisation(op)
                if found is not None:
                    return [found]
            return self._at_means(op, ins, floats, exact=True)
        if kind in ("unit", "piecewise", "smooth"):
            return self._unary_op(op, ins, floats, kind)
        if kind == "quotient":
            return self._quotient(op, ins, floats)
        if kind == "square":
            return self._squared_difference(op, ins, floats)
        if kind == "select":
            return self._select(op, ins, floats)
        if kind == "softmax" and len(floats) == 1:
            return [self._softmax(ins[0], self._axis(op.inputs[0]), op.type == "LogSoftmax")]
        return self._at_means(op, ins, floats, exact=False)

    def _normalisation(self, op: Any) -> Any | None:
        """A product in a normalisation (a factor holding ``Rsqrt``) as a function of the one
        tensor it is computed from, by PyTorch's normalisation rule; None for other products.

        Keras writes LayerNorm as ``x * inv + (beta - mean * inv)`` with ``inv = rsqrt(var +
        eps) * gamma``: both products are functions of ``x`` alone. Each gets the normalising
        map's gradient averaged over the piece by Gauss-Legendre nodes plus a rank-one term
        along ``x``'s change that makes it exact (``torch_secant._Nodes``); the two terms add
        up to that rule for the whole map, since both see the same gradient and the same
        change. The product rule at the means would weigh ``rsqrt(var)`` at the ends, far off
        where the variance passes near zero inside the piece.
        """
        ops = list(self._graph_ops)
        position = {o.name: k for k, o in enumerate(ops)}
        # The path-dependent ops the product is computed from, nearest first (at most 40).
        ancestors: dict[str, Any] = {}
        frontier = [op]
        while frontier and len(ancestors) < 40:
            nxt = []
            for o in frontier:
                for t in o.inputs:
                    src = t.op
                    if t.ref() in self._moving and src.name not in ancestors and src.type not in (
                            "Placeholder", *RULES_CALLS):
                        ancestors[src.name] = src
                        nxt.append(src)
            frontier = nxt
        if not any(o.type == "Rsqrt" for o in ancestors.values()):
            return None
        chain = sorted(ancestors.values(), key=lambda o: position.get(o.name, -1))
        roots = [t for o in chain for t in o.outputs if t.ref() in self._moving]
        for root in reversed(roots):
            inside: list[Any] = []
            made = {root.ref()}
            for o in chain + [op]:
                if o is root.op:
                    continue
                if any(t.ref() in made for t in o.inputs):
                    inside.append(o)
                    made.update(t.ref() for t in o.outputs)
            closed = all(t.ref() in made or t.ref() not in self._moving
                         for o in inside for t in o.inputs)
            if closed and inside and inside[-1] is op:
                # The nearest tensor the product is a function of: a normalisation if the
                # map holds an rsqrt (a GELU after a LayerNorm is a function of the LayerNorm's
                # output, and keeps its own rules).
                if any(o.type == "Rsqrt" for o in inside):
                    return self._nodes(op, root, inside)
                return None
        return None

    def _nodes(self, op: Any, root: Any, inside: list[Any]) -> Any | None:
        axis = self._axis(root)
        z = self._env[root.ref()]
        if axis is None or z.shape[axis] is None or z.shape[axis] % self._rows:
            return None
        env = self._env

        def fn(t: Any) -> Any:
            local = {root.ref(): t}
            for o in inside:
                outs = _create(o, [local.get(i.ref(), env.get(i.ref())) for i in o.inputs])
                for i, v in zip(o.outputs, outs, strict=True):
                    local[i.ref()] = v
            return local[op.outputs[0].ref()]

        rows = self._rows
        perm = [axis] + [d for d in range(len(z.shape)) if d != axis]

        def by_row(t: Any) -> Any:
            return tf.reshape(tf.transpose(t, perm), [rows, -1])

        zb = tf.stop_gradient(z)
        za = self._start(z, axis, "normalisation")
        d = zb - za
        yb, ya = fn(zb), fn(za)

        @tf.custom_gradient
        def f(x: Any) -> Any:
            del x

            def grad(g: Any) -> Any:
                average = tf.zeros_like(zb)
                for t, w in _NODES:
                    point = za + t * d
                    (gx,) = tf.gradients(fn(point), [point], grad_ys=g)
                    average += w * gx
                miss = (tf.reduce_sum(by_row(g * (yb - ya)), 1)
                        - tf.reduce_sum(by_row(average * d), 1))
                den = tf.reduce_sum(by_row(d * d), 1)
                scale = tf.where(den > 0, miss / tf.where(den > 0, den, tf.ones_like(den)),
                                 tf.zeros_like(den))
                fix = tf.reshape(by_row(d) * scale[:, None], tf.shape(tf.transpose(d, perm)))
                inverse = [perm.index(k) for k in range(len(perm))]
                return average + tf.transpose(fix, inverse)

            return tf.identity(yb), grad

        return f(z)

    def _at_means(self, op: Any, ins: list, floats: list[int], exact: bool) -> list:
        """The op at the piece's end; backward its gradient at the means of the ends' inputs:
        exact for a bilinear op (a product, matmul or convolution of two path-dependent
        factors), the midpoint fallback otherwise."""
        if not exact:
            self.unhandled.add(op.type)
        mids = [tf.stop_gradient(0.5 * (ins[i] + self._start(ins[i], self._axis(op.inputs[i]),
                                                             op.type))) for i in floats]
        values = _create(op, [tf.stop_gradient(t) if i in floats else t
                              for i, t in enumerate(ins)])
        keep = [k for k, o in enumerate(op.outputs) if o.dtype.is_floating]

        @tf.custom_gradient
        def f(*xs: Any) -> Any:
            del xs

            def grad(*gs: Any) -> Any:
                args = list(ins)
                for i, m in zip(floats, mids, strict=True):
                    args[i] = m
                outs = _create(op, args)
                got = tf.gradients([outs[k] for k in keep], mids, grad_ys=list(gs))
                return [tf.zeros_like(m) if g is None else g for m, g in zip(mids, got,
                                                                            strict=True)]

            return [tf.identity(values[k]) for k in keep], grad

        rel = f(*[ins[i] for i in floats])
        rel = list(rel) if isinstance(rel, (list, tuple)) else [rel]
        out = list(values)
        for k, r in zip(keep, rel, strict=True):
            out[k] = r
        return out

    def _unary(self, z: Any, axis: int | None, f: Callable[[Any], Any], kind: str,
               what: str) -> Any:
        """``f(z)`` with the secant slope of the piece."""
        zb = tf.stop_gradient(z)
        yb = f(zb)
        k = self._row_step(z, axis)
        if k is None:
            za = self._start(z, axis, what)
            ya = self._start(yb, axis, what)
            return _with_slope(z, yb, tf.stop_gradient(_slopes(za, ya, zb, yb, f, kind)))
        # Row r's piece runs from row r - 1: slices of the rows rather than rolled copies.
        # Row 0 ends no piece (its seed is zero), so its slope is any finite value: 0.
        assert axis is not None
        head = (slice(None),) * axis
        n = int(z.shape[axis])
        tail = _slopes(zb[head + (slice(0, n - k),)], yb[head + (slice(0, n - k),)],
                       zb[head + (slice(k, n),)], yb[head + (slice(k, n),)], f, kind)
        first = tf.zeros_like(zb[head + (slice(0, k),)])
        return _with_slope(z, yb, tf.stop_gradient(tf.concat([first, tail], axis)))

    def _row_step(self, t: Any, axis: int | None) -> int | None:
        """How many entries along ``axis`` make one row of ``t`` (None: rows not found)."""
        size = None if axis is None or axis >= len(t.shape) else t.shape[axis]
        if size is None or size % self._rows:
            return None
        return int(size) // self._rows

    def _unary_op(self, op: Any, ins: list, floats: list[int], kind: str) -> list:
        if len(floats) != 1 or len(op.outputs) != 1:
            return self._at_means(op, ins, floats, exact=False)
        (i,) = floats

        def f(t: Any) -> Any:
            args = list(ins)
            args[i] = t
            return _create(op, args)[0]

        if op.outputs[0].shape != op.inputs[i].shape and op.outputs[0].shape.is_fully_defined():
            return self._at_means(op, ins, floats, exact=False)
        return [self._unary(ins[i], self._axis(op.outputs[0]), f, kind, op.type)]

    def _quotient(self, op: Any, ins: list, floats: list[int]) -> list:
        if 1 not in floats:
            return _create(op, ins)
        axis = self._axis(op.inputs[1])
        r = self._unary(ins[1], axis, tf.math.reciprocal, "smooth", op.type)
        if op.type == "DivNoNan":
            r = tf.where(tf.equal(tf.stop_gradient(ins[1]), 0), tf.zeros_like(r), r)
        if 0 not in floats:
            return [ins[0] * r]
        return [self._product(ins[0], self._axis(op.inputs[0]), r, axis, tf.multiply)]

    def _product(self, u: Any, ua_axis: int | None, v: Any, va_axis: int | None,
                 fn: Callable[[Any, Any], Any]) -> Any:
        """``fn(u, v)`` for a bilinear ``fn``: backward at the ends' means."""
        um = 0.5 * (tf.stop_gradient(u) + self._start(u, ua_axis, "product"))
        vm = 0.5 * (tf.stop_gradient(v) + self._start(v, va_axis, "product"))
        value = fn(tf.stop_gradient(u), tf.stop_gradient(v))
        return _with_relation([u, v], [value], lambda a, b: [fn(a, vm) + fn(um, b)])[0]

    def _squared_difference(self, op: Any, ins: list, floats: list[int]) -> list:
        del floats
        c = ins[0] - ins[1]
        return [self._unary(c, self._axis(op.outputs[0]), tf.square, "smooth", op.type)]

    def _select(self, op: Any, ins: list, floats: list[int]) -> list:
        if op.type in ("Maximum", "Minimum"):
            return [self._maximum(op, ins, floats)]
        if op.type == "MaxPool":
            return [self._max_pool(op, ins)]
        if op.type in ("Max", "Min") and floats == [0]:
            return self._reduce_max(op, ins)
        return self._at_means(op, ins, floats, exact=False)

    def _maximum(self, op: Any, ins: list, floats: list[int]) -> Any:
        """Elementwise max/min of two lines: the point where they cross splits the piece."""
        ends = [tf.stop_gradient(t) for t in ins]
        starts = [self._start(t, self._axis(op.inputs[i]), op.type) if i in floats else ends[i]
                  for i, t in enumerate(ins)]
        da, db = starts[0] - starts[1], ends[0] - ends[1]
        if op.type == "Minimum":
            da, db = -da, -db
        wa, wb = da >= 0, db >= 0
        den = da - db
        t = da / tf.where(tf.equal(den, 0), tf.ones_like(den), den)
        share = tf.stop_gradient(tf.where(tf.equal(wa, wb), tf.cast(wb, t.dtype),
                                          tf.where(wa, t, 1.0 - t)))
        value = _create(op, ends)[0]
        return _with_relation(ins, [value], lambda a, b: [share * a + (1.0 - share) * b])[0]

    def _crossing(self, x: Any, xa: Any, ia: Any, ib: Any, vb: Any) -> Any:
        """A selection whose winners at the piece's ends are the flat indices ``ia``, ``ib`` of
        ``x``: ``t*`` of the gradient to ``ia`` and ``1 - t*`` to ``ib``, where their lines
        cross (complete whichever other inputs took turns in between)."""
        xb = tf.stop_gradient(x)
        fa, fb = tf.reshape(xa, [-1]), tf.reshape(xb, [-1])
        va = tf.gather(fa, ia)
        xa_ib, xb_ia = tf.gather(fa, ib), tf.gather(fb, ia)
        num = va - xa_ib
        den = (vb - xa_ib) - (xb_ia - va)
        t = tf.where(tf.equal(den, 0), 0.5 * tf.ones_like(den),
                     num / tf.where(tf.equal(den, 0), tf.ones_like(den), den))
        t = tf.stop_gradient(tf.where(tf.equal(ia, ib), tf.ones_like(t), t))
        size = tf.size(fb, out_type=tf.int64)

        @tf.custom_gradient
        def f(z: Any) -> Any:
            del z

            def grad(g: Any) -> Any:
                flat = (tf.scatter_nd(tf.reshape(ia, [-1, 1]), tf.reshape(g * t, [-1]), [size])
                        + tf.scatter_nd(tf.reshape(ib, [-1, 1]),
                                        tf.reshape(g * (1.0 - t), [-1]), [size]))
                return tf.reshape(flat, tf.shape(xb))

            return tf.identity(vb), grad

        return f(x)

    def _max_pool(self, op: Any, ins: list) -> Any:
        if op.get_attr("data_format") not in (b"NHWC", "NHWC") or op.get_attr("padding") in (
                b"EXPLICIT", "EXPLICIT"):
            return self._at_means(op, ins, [0], exact=False)[0]
        source = op.inputs[0].op
        if (source.type in _MONOTONE and source.inputs[0].ref() in self._moving
                and source.inputs[0].dtype.is_floating and len(source.inputs) == 1
                and (source.type != "LeakyRelu" or source.get_attr("alpha") >= 0)):
            # max f(z) = f(max z) for a nondecreasing f: select on z, which moves linearly
            # where f(z) bends, then take f's secant.
            z = self._env[source.inputs[0].ref()]
            pooled = self._pool(op, z, source.inputs[0])
            return self._unary(pooled, self._axis(op.outputs[0]),
                               lambda t: _create(source, [t])[0], RULES[source.type],
                               source.type)
        return self._pool(op, ins[0], op.inputs[0])

    def _pool(self, op: Any, x: Any, orig: Any) -> Any:
        """Max-pooling (NHWC) by the crossing of each window's winners at the piece's ends.

        Argmax pooling runs once, at the ends: the starts' winners are the row before's,
        rolled (TensorFlow's argmax pooling is an order of magnitude slower than pooling on
        CPUs). The gradient reaches the winners through ``MaxPoolGradWithArgmax``."""
        if self._axis(orig) != 0 or x.shape[0] % self._rows:
            return self._at_means(op, [x], [0], exact=False)[0]
        group = int(x.shape[0]) // self._rows
        xb = tf.stop_gradient(x)
        xa = tf.roll(xb, group, 0)
        padding = op.get_attr("padding")
        spec = dict(ksize=op.get_attr("ksize"), strides=op.get_attr("strides"),
                    padding=padding.decode() if isinstance(padding, bytes) else padding,
                    include_batch_in_index=True)
        vb, ib = tf.nn.max_pool_with_argmax(xb, **spec)
        size = _prod(xb.shape)
        va = tf.roll(vb, group, 0)
        ia = tf.math.floormod(tf.roll(ib, group, 0) + size // self._rows, size)
        fa, fb = tf.reshape(xa, [-1]), tf.reshape(xb, [-1])
        xa_ib, xb_ia = tf.gather(fa, ib), tf.gather(fb, ia)
        num = va - xa_ib
        den = (vb - xa_ib) - (xb_ia - va)
        zero = tf.equal(den, 0)
        t = tf.stop_gradient(tf.where(zero, 0.5 * tf.ones_like(den),
                                      num / tf.where(zero, tf.ones_like(den), den)))

        @tf.custom_gradient
        def f(z: Any) -> Any:
            del z

            def grad(g: Any) -> Any:
                return (tf.raw_ops.MaxPoolGradWithArgmax(input=xb, grad=g * t, argmax=ia, **spec)
                        + tf.raw_ops.MaxPoolGradWithArgmax(input=xb, grad=g * (1.0 - t),
                                                           argmax=ib, **spec))

            return tf.identity(vb), grad

        return f(x)

    def _reduce_max(self, op: Any, ins: list) -> list:
        """A max (min) over axes other than the rows' by the crossing of its winners."""
        x = ins[0]
        found = tf.get_static_value(ins[1])
        axis = self._axis(op.inputs[0])
        rank = len(x.shape)
        if found is None or axis is None or not x.shape.is_fully_defined():
            return self._at_means(op, ins, [0], exact=False)
        dims = sorted({int(d) % rank for d in found.reshape(-1)})
        if axis in dims:
            return self._at_means(op, ins, [0], exact=False)
        keep = [d for d in range(rank) if d not in dims]
        sign = -1.0 if op.type == "Min" else 1.0
        xt = tf.transpose(sign * x, keep + dims)
        xa = tf.reshape(self._start(xt, keep.index(axis), op.type),
                        [-1, _prod([x.shape[d] for d in dims])])
        x2 = tf.reshape(xt, xa.shape)
        xb2 = tf.stop_gradient(x2)
        base = tf.range(x2.shape[0], dtype=tf.int64) * x2.shape[1]
        ib = base + tf.argmax(xb2, axis=1)
        ia = base + tf.argmax(xa, axis=1)
        out = sign * self._crossing(x2, xa, ia, ib, tf.reduce_max(xb2, axis=1))
        if op.get_attr("keep_dims"):
            shape = [1 if d in dims else x.shape[d] for d in range(rank)]
        else:
            shape = [x.shape[d] for d in keep]
        return [tf.reshape(out, shape)]

    def _softmax(self, z: Any, axis: int | None, log: bool) -> Any:
        """Softmax (or log-softmax) over the last axis as exp, sum, reciprocal (log) at both
        ends, with one shift shared by the ends."""
        zb = tf.stop_gradient(z)
        za = self._start(z, axis, "LogSoftmax" if log else "Softmax")
        c = tf.maximum(tf.reduce_max(zb, -1, keepdims=True), tf.reduce_max(za, -1, keepdims=True))
        c = tf.where(tf.math.is_finite(c), c, tf.zeros_like(c))
        yb, ya = zb - c, za - c
        eb, ea = tf.exp(yb), tf.exp(ya)
        se = _slopes(ya, ea, yb, eb, tf.exp, "smooth")
        tb = tf.reduce_sum(eb, -1, keepdims=True)
        ta = tf.reduce_sum(ea, -1, keepdims=True)
        if log:
            sl = _slopes(ta, tf.math.log(ta), tb, tf.math.log(tb), tf.math.log, "smooth")
            value = yb - tf.math.log(tb)

            def grad(g: Any) -> Any:
                return g - se * sl * tf.reduce_sum(g, -1, keepdims=True)
        else:
            rb, ra = 1.0 / tb, 1.0 / ta
            sr = _slopes(ta, ra, tb, rb, tf.math.reciprocal, "smooth")
            value = eb * rb
            em, rm = 0.5 * (ea + eb), 0.5 * (ra + rb)

            def grad(g: Any) -> Any:
                return (g * rm + tf.reduce_sum(g * em, -1, keepdims=True) * sr) * se

        @tf.custom_gradient
        def f(x: Any) -> Any:
            del x
            return tf.identity(value), grad

        return f(z)


# Gauss-Legendre nodes and weights on [0, 1] for the normalisations' piece averages.
_NODES = tuple((0.5 * (t + 1.0), 0.5 * w) for t, w in zip(*np.polynomial.legendre.leggauss(4),
                                                           strict=True))
RULES_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _seeds(out: Any, transform: Callable[[Any], Any], target: Any, ends: Any
           ) -> tuple[Any, Any, Any]:
    """Seeds on the model output for the secant backward pass, the score changes and the
    scores, as ``igkit.backends.torch_secant.interval_seeds``: the mean of the score's output
    gradients at the piece's ends, corrected along the output's change so that
    ``seed . (out_k - out_{k-1}) = s_k - s_{k-1}`` exactly; zero where a row ends no piece."""
    o = tf.cast(tf.stop_gradient(out), tf.float64)
    start = tf.roll(o, 1, 0)
    rows = int(o.shape[0])
    both = tf.concat([o, start], 0)
    scores = transform(both)
    if scores.shape.rank == 1:
        scores = scores[:, None]
    s = tf.gather(scores, tf.concat([target, target], 0), axis=1, batch_dims=1)
    (jac,) = tf.gradients(s, [both])
    if jac is None:
        jac = tf.zeros_like(both)
    mean = 0.5 * (jac[:rows] + jac[rows:])
    d = o - start
    change = s[:rows] - s[rows:]
    norm2 = tf.reduce_sum(d * d, 1)
    safe = tf.where(norm2 > 0, norm2, tf.ones_like(norm2))
    fix = tf.where(norm2 > 0, (change - tf.reduce_sum(mean * d, 1)) / safe, tf.zeros_like(norm2))
    mask = tf.cast(ends, tf.float64)
    return (mean + fix[:, None] * d) * mask[:, None], change * mask, s[:rows]


class SecantStep:
    """One batch of ``method="secant"``: consecutive path points in, each row's piece
    integral (its width times the secant gradient), scores and summed |piece residual| out.

    Args:
        concrete: The model traced by ``trace_model``.
        transform: The named output transform (identity for a user's output callable, which
            is part of the traced graph).
    """

    def __init__(self, concrete: Any, transform: Callable[[Any], Any]) -> None:
        self.graph = SecantGraph(concrete)
        self._transform = transform
        self.run = tf.function(self._step, autograph=False)

    def _step(self, x0: Any, diff: Any, alpha: Any, width: Any, target: Any
              ) -> tuple[Any, Any, Any]:
        shape = [-1] + [1] * (len(x0.shape) - 1)
        x = x0 + tf.reshape(alpha, shape) * diff
        out = self.graph.run(x)
        seeds, change, s = _seeds(out, self._transform, target, width > 0)
        seeds = seeds * tf.cast(width, tf.float64)[:, None]
        (g,) = tf.gradients(out, [x], grad_ys=tf.cast(seeds, out.dtype))
        if g is None:
            raise DisconnectedModelError(_DISCONNECTED)
        g = tf.convert_to_tensor(g)
        moved = tf.reduce_sum(tf.reshape(tf.cast(g, tf.float64) * tf.cast(diff, tf.float64),
                                         [tf.shape(g)[0], -1]), 1)
        return g, tf.cast(s, x.dtype), tf.reduce_sum(tf.abs(moved - change))
