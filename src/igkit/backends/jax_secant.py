"""Secant gradients for JAX models: an interpreter over the model's jaxpr for ``method="secant"``.

The rules are the framework-neutral ones of ``igkit.core.secant_rules`` (see it for why each
piece is exact for completeness). JAX offers the model as a program: ``jax.make_jaxpr`` of the
model at the batch's shape gives its equations, and :func:`secant_outputs` evaluates every
equation on both ends of each row's piece at once. A path-dependent value is a pair: its value
at the piece's end ``b`` (differentiated by ``jax.vjp``) and at its start ``a`` (not). Per
primitive class (``OP_CLASSES``) the end value is built with a ``jax.custom_vjp`` whose backward
pass is the secant relation of the piece, so that the vector-Jacobian product of the whole
interpreted model is the piece's secant gradient:

* elementwise primitives of one path-dependent value (and constants) are not evaluated one by
  one but *fused*: a chain such as ``x * sigmoid(x)``, GELU's ``x * erfc(-x / sqrt 2) / 2`` or
  hard-swish's ``x * relu6(x + 3) / 6`` is one elementwise function of ``x`` and gets one secant
  slope (as PyTorch's single ``silu``/``gelu``/``hardswish`` operation does); the slope is exact
  division where the chain is piecewise linear (a product of two path-dependent values, as in
  hard-swish, is not), except where both ends lie on one linear piece and the secant is within
  rounding of the derivative (then the derivative: float32 keeps no digits of a move of a few
  ulps), else the midpoint derivative for a move below ``small_move``; a ``custom_jvp``
  function (``jax.nn.relu``) is fused whole, with its own derivative. A chain's leading affine
  steps by the model's tensors (a bias, an inference batch norm) are split off as a linear
  pair of their own, as PyTorch's ``conv2d``/``batch_norm`` are operations of their own: in
  the slope they would cost float32 ``eps * |bias| / |dz|`` of it;
* linear primitives (``dot_general``/``conv`` with one path-dependent operand, sums, reshapes,
  slices, gathers, average pooling, ``add``): their own gradient;
* ``mul``, ``dot_general``, ``conv_general_dilated`` of two path-dependent operands: the
  gradient at the ends' means; ``div`` by a path-dependent value as the product with its
  reciprocal (whose slope is fused);
* ``max``/``min`` of several path-dependent values and ``reduce_max``/``reduce_min``: each
  candidate's share of the piece on the upper envelope of their lines; ``reduce_window_max``
  (max-pooling): the winners at both ends and the crossing of their lines, on the windows laid
  out as a last axis (strided slices, whose VJP is cheap); a nondecreasing fused activation
  before a max-pool (after its bias is split off) is moved behind it (``max f(z) = f(max z)``);
* a product of a value with a factor holding ``rsqrt`` (a normalisation: LayerNorm, RMSNorm,
  GroupNorm as JAX writes them) where both lead back to one pair ``h``: the normalising map of
  ``h`` averaged over the piece by four Gauss-Legendre nodes plus a rank-one term per row that
  makes it exact (PyTorch's rule for ``F.layer_norm``; the product rule at the means would weigh
  ``rsqrt(variance)`` at the ends, far off where the variance passes near zero). Each pair keeps
  its ``tape`` (how it was made) so that the map can be evaluated again at the nodes;
* ``stop_gradient`` of a value derived from a maximum (the stable softmax's and logsumexp's
  shift): one value shared by both ends (the larger), so the shift moves nothing; of anything
  else: the identity;
* comparisons, ``argmax`` and other integer or boolean outputs: evaluated at both ends; a
  ``select_n`` or gather whose path-dependent predicate or indices differ between the ends is
  named as unhandled (the jump has no secant relation);
* ``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``, ``custom_vjp_call`` and ``remat``:
  their inner jaxpr, interpreted in place;
* anything else: its gradient at the midpoint of its end inputs, named as unhandled.

Softmax, logsumexp and attention are compositions of these and stay exact.

Why one module: the value pairs, the fused elementwise chains and the rules that consume them
are one interpreter; split, every rule would reach into the interpreter's representation.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from igkit.core.secant_rules import LINEAR_PIECE_ULPS, small_move

__all__ = ["OP_CLASSES", "secant_outputs", "secant_seeds"]

_core = importlib.import_module("jax.extend.core")


def _classes(**groups: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for kind, names in groups.items():
        table.update(dict.fromkeys(names.split(), kind))
    return table


#: Primitive -> operation class (``igkit.core.secant_rules.CLASSES``). The elementwise classes
#: are those of a primitive of one path-dependent operand; several make ``add`` linear, ``mul``
#: multilinear, ``max`` a selection and ``select_n`` a condition (``_BINARY``).
OP_CLASSES: dict[str, str] = _classes(
    piecewise="max min abs neg sign clamp select_n floor ceil round copy copy_p "
    "convert_element_type reduce_precision add sub mul div",
    smooth="exp exp2 log log1p expm1 tanh logistic sin cos tan atan asin acos sinh cosh asinh "
    "acosh atanh sqrt rsqrt cbrt erf erfc erf_inv integer_pow square pow lgamma digamma",
    no_gradient="eq ne lt le gt ge and or not xor is_finite argmax argmin iota",
    linear="reshape broadcast_in_dim transpose squeeze expand_dims slice dynamic_slice "
    "dynamic_update_slice gather concatenate pad rev reduce_sum cumsum reduce_window_sum "
    "add_any sharding_constraint reduce_and reduce_or",
    multilinear="dot_general conv_general_dilated",
    select="reduce_max reduce_min reduce_window_max",
    stop_gradient="stop_gradient",
    call="jit pjit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "remat checkpoint",
    control_flow="scan while cond",
)
# Elementwise primitives that fuse into a chain of one path-dependent value.
_ELEMENTWISE = frozenset(
    name for name, kind in OP_CLASSES.items()
    if kind in ("piecewise", "smooth") or name in "eq ne lt le gt ge and or not xor is_finite"
    .split()
)
# Of several path-dependent operands: the class instead of the elementwise one.
_BINARY = {"add": "linear", "sub": "linear", "add_any": "linear", "mul": "multilinear",
           "div": "quotient", "max": "select", "min": "select", "select_n": "condition",
           "convert_element_type": "linear", "copy": "linear", "copy_p": "linear",
           "neg": "linear", "reduce_precision": "linear",
           **dict.fromkeys("eq ne lt le gt ge and or not xor".split(), "no_gradient")}
_PIECEWISE = frozenset(n for n, k in OP_CLASSES.items() if k in ("piecewise", "no_gradient"))
# Nondecreasing in the path-dependent operand (position 0 unless noted).
_MONOTONE = frozenset("max min add exp exp2 log log1p expm1 tanh logistic sqrt cbrt erf atan "
                      "asinh sinh copy copy_p convert_element_type reduce_precision".split())
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _bind(eqn: Any, *args: Any) -> list[Any]:
    """The equation's primitive on ``args`` with the usual semantics (as ``eval_jaxpr``)."""
    out = eqn.primitive.bind(*args, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _with_literals(eqn: Any, lits: dict[int, Any], n: int, *args: Any) -> Any:
    """The equation's first output, its operands ``args`` with ``lits`` put in their places."""
    it = iter(args)
    return _bind(eqn, *[lits[i] if i in lits else next(it) for i in range(n)])[0]


def _inexact(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _zero_cotangent(x: Any) -> Any:
    if _inexact(x):
        return jnp.zeros_like(x)
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pair:
    """A path-dependent value at the piece's end ``b`` (differentiated) and start ``a``.

    ``shift``: derived from a maximum alone (a stable softmax's shift, see ``stop_gradient``).
    """

    b: Any
    a: Any
    shift: bool = False
    #: How the value was made: ``(fn, inputs)``, ``fn`` on the inputs' values (pairs or
    #: constants), for the normalisation rule to evaluate a region again (None: not traced).
    tape: tuple | None = None


@dataclass(frozen=True, eq=False)
class Chain:
    """An elementwise function of one pair, not yet evaluated: ``steps`` applied to ``src``.

    Each step is ``(fn, refs)``: ``fn`` takes the values ``refs`` name, each ``("src",)``,
    ``("step", i)`` or ``("const", k)`` (an entry of ``consts``, the same at both ends).
    """

    src: Pair
    steps: tuple
    consts: tuple
    piecewise: bool
    monotone: bool
    shape: tuple = ()
    #: Per step, a ``Step``: what the prefix split and the max-pool fusion need to know.
    info: tuple = ()

    def run(self, z: Any, consts: Sequence[Any]) -> Any:
        if tuple(z.shape) != self.shape:
            # The steps were traced at ``shape``; being elementwise with scalar constants, they
            # apply to any values laid into an array of that shape (a max-pool's output).
            size = int(np.prod(self.shape))
            flat = jnp.concatenate([z.reshape(-1), jnp.zeros(size - z.size, z.dtype)])
            return self.run(flat.reshape(self.shape), consts).reshape(-1)[: z.size].reshape(
                z.shape)
        vals: list[Any] = []
        for fn, refs in self.steps:
            args = [z if r[0] == "src" else vals[r[1]] if r[0] == "step" else consts[r[1]]
                    for r in refs]
            vals.append(fn(*args))
        return vals[-1]


@dataclass(frozen=True)
class Step:
    """One step of a chain: piecewise linear, nondecreasing in its path-dependent operand, and
    ``affine``: ``z + c``, ``z - c``, ``c * z``, ``z / c``, ``-z`` or a float cast of one
    path-dependent operand (``param``: ``c`` is a tensor of the model, not a literal)."""

    piecewise: bool
    monotone: bool
    affine: bool = False
    param: bool = False


def _is_path(x: Any) -> bool:
    return isinstance(x, (Pair, Chain))


# --- relations (custom VJPs) -------------------------------------------------------------------


def _slope(chain: Chain, zb: Any, za: Any, consts: tuple) -> Any:
    """The chain's value at ``zb`` with backward ``grad * slope`` (the secant slope)."""

    @jax.custom_vjp
    def relate(zb, za, consts):
        return chain.run(zb, consts)

    def fwd(zb, za, consts):
        yb, ya = chain.run(zb, consts), chain.run(za, consts)
        dz = zb - za
        still = za == zb
        if not chain.piecewise:
            still = still | (jnp.abs(dz) <= small_move(np.dtype(dz.dtype)) * jnp.abs(za) + 1e-12)
        mid = 0.5 * (za + zb)

        def derivative(z: Any) -> Any:
            return jax.jvp(lambda t: chain.run(t, consts), (z,), (jnp.ones_like(z),))[1]

        deriv = derivative(mid)
        if chain.piecewise:
            # Both ends on one linear piece (one slope at both ends and between) and the
            # secant within rounding of it: the derivative (secant_rules.LINEAR_PIECE_ULPS).
            eps = float(jnp.finfo(dz.dtype).eps)
            noise = LINEAR_PIECE_ULPS * eps * (jnp.abs(ya) + jnp.abs(yb)
                                + jnp.abs(deriv) * (jnp.abs(za) + jnp.abs(zb)))
            still = still | ((derivative(za) == deriv) & (derivative(zb) == deriv)
                             & (jnp.abs(yb - ya - deriv * dz) <= noise))
        s = jnp.where(still, deriv, (yb - ya) / jnp.where(still, 1.0, dz))
        return yb, (s.astype(yb.dtype), za, consts)

    def bwd(res, g):
        s, za, consts = res
        return g * s, jnp.zeros_like(za), jax.tree_util.tree_map(_zero_cotangent, consts)

    relate.defvjp(fwd, bwd)
    return relate(zb, za, consts)


def _at_means(fn: Callable, ub: Any, vb: Any, um: Any, vm: Any) -> Any:
    """The bilinear ``fn(ub, vb)`` with backward its VJP at the ends' means ``(um, vm)``."""

    @jax.custom_vjp
    def relate(ub, vb, um, vm):
        return fn(ub, vb)

    def fwd(ub, vb, um, vm):
        return fn(ub, vb), (um, vm)

    def bwd(res, g):
        um, vm = res
        gu, gv = jax.vjp(fn, um, vm)[1](g)
        return gu, gv, jnp.zeros_like(um), jnp.zeros_like(vm)

    relate.defvjp(fwd, bwd)
    return relate(ub, vb, um, vm)


def _at_midpoint(fn: Callable, ends: list, mids: list) -> Any:
    """``fn(*ends)`` (a list of outputs) with backward its VJP at ``mids``."""

    @jax.custom_vjp
    def relate(ends, mids):
        return fn(*ends)

    def fwd(ends, mids):
        return fn(*ends), mids

    def bwd(mids, g):
        out, vjp = jax.vjp(lambda *m: fn(*m), *mids)
        g = [gi if _inexact(o) else _zero_cotangent(o) for gi, o in zip(g, out, strict=True)]
        got = vjp(g)
        return list(got), [jnp.zeros_like(m) for m in mids]

    relate.defvjp(fwd, bwd)
    return relate(ends, mids)


def _shares(xa: Any, xb: Any) -> Any:
    """Each candidate's share of the piece in the maximum over the last axis
    (``igkit.core.secant_rules.crossing_share``, on tensors)."""
    d = xb - xa
    cur = jnp.argmax(xa, -1, keepdims=True)
    t = jnp.zeros(xa.shape[:-1] + (1,), xa.dtype)
    share = jnp.zeros_like(xa)
    k = jnp.arange(xa.shape[-1])

    def body(_, carry):
        cur, t, share = carry
        den = d - jnp.take_along_axis(d, cur, -1)
        pos = den > 0
        cross = jnp.where(pos, (jnp.take_along_axis(xa, cur, -1) - xa)
                          / jnp.where(pos, den, 1.0), jnp.inf)
        cross = jnp.maximum(cross, t)
        nxt = jnp.argmin(cross, -1, keepdims=True)
        t_next = jnp.minimum(jnp.take_along_axis(cross, nxt, -1), 1.0)
        share = share + (k == cur) * (t_next - t)
        cur = jnp.where(t_next >= 1.0, cur, nxt)
        return cur, t_next, share

    return lax.fori_loop(0, xa.shape[-1], body, (cur, t, share))[2]


def _envelope(x: Pair) -> Pair:
    """``max`` over the last axis of a pair, each candidate weighted by its share."""

    @jax.custom_vjp
    def relate(xb, xa):
        return jnp.max(xb, -1)

    def fwd(xb, xa):
        return jnp.max(xb, -1), (_shares(xa, xb), xa)

    def bwd(res, g):
        share, xa = res
        return g[..., None] * share, jnp.zeros_like(xa)

    relate.defvjp(fwd, bwd)
    return Pair(relate(x.b, x.a), jnp.max(x.a, -1), shift=True)


def _windows(eqn: Any, x: Any) -> Any:
    """The windows of a ``reduce_window_max`` equation as a last axis: ``(*out_shape, K)``,
    padded with -inf. Linear in ``x``, so its VJP is cheap to compile (the pooling's own VJP,
    ``select_and_scatter_add``, is not on CPU)."""
    p = eqn.params
    dims, strides = p["window_dimensions"], p["window_strides"]
    dil, base = p["window_dilation"], p["base_dilation"]
    config = [(lo, hi, b - 1) for (lo, hi), b in zip(p["padding"], base, strict=True)]
    xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype), config)
    out_shape = eqn.outvars[0].aval.shape
    parts = []
    for offset in np.ndindex(*dims):
        start = [o * d for o, d in zip(offset, dil, strict=True)]
        limit = [st + (n - 1) * s + 1 for st, n, s in zip(start, out_shape, strides, strict=True)]
        parts.append(lax.slice(xp, start, limit, strides))
    return jnp.stack(parts, -1)


def _pool_crossing(eqn: Any, zb: Any, za: Any) -> Any:
    """Max-pooling's selection: ``t*`` of the gradient to the start's winner, ``1 - t*`` to
    the end's, ``t*`` where their lines cross."""

    def windows(t: Any) -> Any:
        return _windows(eqn, t)

    @jax.custom_vjp
    def relate(zb, za):
        return jnp.max(windows(zb), -1)

    def fwd(zb, za):
        wb, wa = windows(zb), windows(za)
        ib = jnp.argmax(wb, -1, keepdims=True)
        ia = jnp.argmax(wa, -1, keepdims=True)
        vb, va = jnp.take_along_axis(wb, ib, -1), jnp.take_along_axis(wa, ia, -1)
        a_at_ib, b_at_ia = jnp.take_along_axis(wa, ib, -1), jnp.take_along_axis(wb, ia, -1)
        num = va - a_at_ib
        den = (vb - a_at_ib) - (b_at_ia - va)
        t = jnp.where(den != 0, num / jnp.where(den != 0, den, 1.0), 0.5)
        t = jnp.where(ia == ib, 1.0, t)
        k = jnp.arange(wb.shape[-1])
        share = (k == ia) * t + (k == ib) * (1 - t)
        return vb[..., 0], (share, za)

    def bwd(res, g):
        share, za = res
        return jax.vjp(windows, za)[1](g[..., None] * share)[0], jnp.zeros_like(za)

    relate.defvjp(fwd, bwd)
    return relate(zb, za)


# --- the interpreter ---------------------------------------------------------------------------


def _sub_jaxpr(eqn: Any) -> tuple[Any, list] | None:
    """The inner program of a call-like equation and its constants, when its inputs and outputs
    line up with the equation's."""
    for key in _CALL_PARAMS:
        inner = eqn.params.get(key)
        consts: list = []
        if isinstance(inner, _core.ClosedJaxpr):
            inner, consts = inner.jaxpr, list(inner.consts)
        if (isinstance(inner, _core.Jaxpr) and len(inner.invars) == len(eqn.invars)
                and len(inner.outvars) == len(eqn.outvars)):
            return inner, consts
    return None


def _all_elementwise(jaxpr: Any) -> tuple[bool, bool, bool]:
    """(every equation elementwise, all piecewise linear, all nondecreasing) for a jaxpr."""
    ok, pw, mono = True, True, True
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inner = _sub_jaxpr(eqn)
        if inner is not None:
            o, p, m = _all_elementwise(inner[0])
            ok, pw, mono = ok and o, pw and p, mono and m
        elif name in _ELEMENTWISE:
            pw = pw and name in _PIECEWISE
            mono = mono and name in _MONOTONE
        else:
            return False, False, False
    return ok, pw, mono


class Interpreter:
    """Evaluates a jaxpr on pairs; ``flags`` collects ``(name, traced bool)``: the operation ran
    without an exact relation on some row (always True for the fallback)."""

    def __init__(self) -> None:
        self.flags: list[tuple[str, Any]] = []

    # -- chains --

    def value(self, x: Any) -> Any:
        """A chain evaluated into a pair (its layer-affine prefix linearly, the rest with its
        secant slope); anything else as it is."""
        if not isinstance(x, Chain):
            return x
        return self._evaluate(*_split(x))

    @staticmethod
    def _evaluate(src: Pair, rest: Chain | None) -> Pair:
        if rest is None:
            return src
        consts = tuple(rest.consts)
        ya = rest.run(src.a, consts)
        tape = (functools.partial(_run_chain, rest, consts), [src])
        if not _inexact(ya) or not _inexact(src.b):
            return Pair(rest.run(lax.stop_gradient(src.b), consts), ya, src.shift, tape)
        return Pair(_slope(rest, src.b, src.a, consts), ya, src.shift, tape)

    def _extend(self, eqn: Any, ins: list, src: Pair, piecewise: bool, monotone: bool) -> Chain:
        """The chain of ``ins`` (pairs of ``src``, chains of it, constants) with ``eqn`` on top;
        steps that two operands share (``x`` in ``x * relu6(x + 3)``) are kept once."""
        steps: list = []
        info: list = []
        consts: list = []
        seen: dict = {}
        const_at: dict[int, int] = {}

        def const(c: Any) -> tuple:
            if id(c) not in const_at:
                const_at[id(c)] = len(consts)
                consts.append(c)
            return ("const", const_at[id(c)])

        refs: list = []
        for x in ins:
            if isinstance(x, Chain):
                local: list[int] = []
                for (fn, rs), step in zip(x.steps, x.info, strict=True):
                    new = tuple(const(x.consts[r[1]]) if r[0] == "const" else
                                ("step", local[r[1]]) if r[0] == "step" else r for r in rs)
                    if (id(fn), new) not in seen:
                        seen[(id(fn), new)] = len(steps)
                        steps.append((fn, new))
                        info.append(step)
                    local.append(seen[(id(fn), new)])
                refs.append(("step", local[-1]))
            elif isinstance(x, Pair):
                refs.append(("src",))
            elif isinstance(x, _core.Literal):
                refs.append(("lit", x.val))
            else:
                refs.append(const(x))
        lits = {i: r[1] for i, r in enumerate(refs) if r[0] == "lit"}
        live = [r for r in refs if r[0] != "lit"]
        affine = _affine(eqn, refs)
        # A product of two path-dependent operands (x * relu6(x + 3)) or a division by one is
        # no longer piecewise linear: smooth, as PyTorch's hardswish.
        paths = [i for i, r in enumerate(refs) if r[0] in ("src", "step")]
        name = eqn.primitive.name
        if (name == "mul" and len(paths) > 1) or (name == "div" and paths != [0]):
            piecewise = False
        steps.append((functools.partial(_with_literals, eqn, lits, len(refs)), tuple(live)))
        info.append(Step(piecewise, monotone, affine,
                         affine and any(r[0] == "const" for r in live)))
        return _compact(src, steps, consts, info, tuple(np.shape(src.a)))

    def _fusable(self, eqn: Any, ins: list) -> Pair | None:
        """The one pair an elementwise equation's path-dependent operands derive from, when
        they all do and have the output's shape."""
        shape = eqn.outvars[0].aval.shape
        srcs = {id(x.src if isinstance(x, Chain) else x): (x.src if isinstance(x, Chain) else x)
                for x in ins if _is_path(x)}
        if len(srcs) != 1:
            return None
        src = next(iter(srcs.values()))
        if np.shape(src.a) != tuple(shape):
            return None
        return src

    # -- the program --

    def run(self, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any]) -> list:
        env: dict[Any, Any] = {}

        def read(v: Any) -> Any:
            return v if isinstance(v, _core.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = c
        for v, x in zip(jaxpr.invars, args, strict=True):
            env[v] = x
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            if not any(_is_path(x) for x in ins):
                outs = _bind(eqn, *[x.val if isinstance(x, _core.Literal) else x for x in ins])
            else:
                outs = self.equation(eqn, ins)
            for v, o in zip(eqn.outvars, outs, strict=True):
                env[v] = o
        return [read(v) for v in jaxpr.outvars]

    def equation(self, eqn: Any, ins: list) -> list:
        """One equation with at least one path-dependent operand."""
        name = eqn.primitive.name
        inner = _sub_jaxpr(eqn)
        if inner is not None:
            src = self._fusable(eqn, ins) if len(eqn.outvars) == 1 else None
            if name == "custom_jvp_call" and src is not None:
                ok, pw, mono = _all_elementwise(inner[0])
                if ok:
                    return [self._extend(eqn, ins, src, pw, mono)]
            lits = [x.val if isinstance(x, _core.Literal) else x for x in ins]
            return self.run(inner[0], inner[1], lits)
        if name in _ELEMENTWISE:
            src = self._fusable(eqn, ins)
            if src is not None:
                return [self._extend(eqn, ins, src, name in _PIECEWISE,
                                     self._monotone(eqn, ins))]
            kind = _BINARY.get(name, "fallback")
        else:
            kind = OP_CLASSES.get(name, "fallback")
        if name == "reduce_window_max" and kind == "select":
            x = ins[0]
            if _inexact(x.src.a if isinstance(x, Chain) else x.a):
                return self._max_pool(eqn, x)
            kind = "no_gradient"
        vals = [self.value(x.val if isinstance(x, _core.Literal) else x) for x in ins]
        if kind == "stop_gradient":
            return [self._stop(vals[0])]
        if kind == "select":
            if name in ("reduce_max", "reduce_min"):
                return [self._reduce_select(eqn, vals[0], name == "reduce_min")]
            return [self._maximum(eqn, vals, name == "min")]
        if kind in ("linear", "no_gradient", "condition"):
            return self._linear(eqn, vals)
        if kind == "multilinear":
            return self._multilinear(eqn, vals)
        if kind == "quotient":
            return self._quotient(eqn, vals)
        return self._fallback(eqn, vals)

    @staticmethod
    def _monotone(eqn: Any, ins: list) -> bool:
        """The equation is nondecreasing in its path-dependent operand (itself, not what the
        operand's chain did before it)."""
        name = eqn.primitive.name
        if name in ("mul", "div") and len(ins) == 2:
            other = ins[1] if _is_path(ins[0]) else ins[0]
            if name == "div" and not _is_path(ins[0]):
                return False
            return isinstance(other, _core.Literal) and float(np.min(other.val)) > 0
        if name == "sub":
            return _is_path(ins[0]) and not _is_path(ins[1])
        if name == "integer_pow":
            return int(eqn.params["y"]) % 2 == 1
        return name in _MONOTONE

    def _flag(self, name: str, flipped: Any) -> None:
        self.flags.append((name, jnp.asarray(flipped, dtype=bool)))

    def _ends(self, vals: list) -> tuple[list, list]:
        return ([x.b if isinstance(x, Pair) else x for x in vals],
                [x.a if isinstance(x, Pair) else x for x in vals])

    def _linear(self, eqn: Any, vals: list) -> list:
        """Linear in its path-dependent operands (or carrying no gradient): both ends. A
        discrete path-dependent operand (a predicate, indices) that differs between the ends
        marks the equation as unhandled."""
        bs, as_ = self._ends(vals)
        outs_b, outs_a = _bind(eqn, *bs), _bind(eqn, *as_)
        discrete = [x for x in vals if isinstance(x, Pair) and not _inexact(x.a)]
        if discrete and any(_inexact(o) for o in outs_a):
            self._flag(eqn.primitive.name,
                       functools.reduce(jnp.logical_or, [jnp.any(x.a != x.b) for x in discrete]))
        shift = all(x.shift for x in vals if isinstance(x, Pair))
        return [Pair(b, a, shift, (functools.partial(_output_of, eqn, i), vals))
                for i, (b, a) in enumerate(zip(outs_b, outs_a, strict=True))]

    def _multilinear(self, eqn: Any, vals: list) -> list:
        paths = [i for i, x in enumerate(vals) if isinstance(x, Pair)]
        if len(paths) < 2:
            return self._linear(eqn, vals)
        if len(vals) != 2:
            return self._fallback(eqn, vals)
        u, v = vals

        def fn(ub, vb):
            return _bind(eqn, ub, vb)[0]

        tape = (fn, [u, v])
        anchor = _normalised(u, v)
        if anchor is not None:
            return [self._normalisation(anchor, Pair(fn(lax.stop_gradient(u.b),
                                                        lax.stop_gradient(v.b)),
                                                     fn(u.a, v.a), False, tape))]
        um = 0.5 * (u.a + lax.stop_gradient(u.b))
        vm = 0.5 * (v.a + lax.stop_gradient(v.b))
        return [Pair(_at_means(fn, u.b, v.b, um, vm), fn(u.a, v.a), False, tape)]

    def _normalisation(self, h: Pair, y: Pair) -> Pair:
        """``y = N(h)``, a normalisation of ``h`` (its tape leads back to ``h``): backward the
        gradient of ``N`` averaged over the piece by Gauss-Legendre nodes plus, per row, a
        rank-one term along ``h``'s change that maps it to ``y``'s change exactly (PyTorch's
        rule for its normalisations). The product rule at the means would weigh
        ``rsqrt(variance)`` at the ends, far off where the variance passes near zero."""

        def norm(t: Any) -> Any:
            return _replay(y, h, t, {})

        @jax.custom_vjp
        def relate(hb, ha):
            return norm(hb)

        def fwd(hb, ha):
            return norm(hb), (hb, ha)

        def bwd(res, g):
            hb, ha = res
            d = hb - ha
            avg = jnp.zeros_like(hb)
            for t, w in _NODES:
                avg = avg + w * jax.vjp(norm, ha + t * d)[1](g)[0]
            axes = tuple(range(1, d.ndim))
            dy = norm(hb) - norm(ha)
            miss = (g * dy).sum(axes, keepdims=True) - (avg * d).sum(axes, keepdims=True)
            den = (d * d).sum(axes, keepdims=True)
            scale = jnp.where(den > 0, miss / jnp.where(den > 0, den, 1.0), 0.0)
            return avg + scale * d, jnp.zeros_like(ha)

        relate.defvjp(fwd, bwd)
        return Pair(relate(h.b, h.a), y.a, False, y.tape)

    def _quotient(self, eqn: Any, vals: list) -> list:
        u, v = vals
        if not isinstance(v, Pair):
            return self._linear(eqn, vals)
        chain = Chain(v, ((jnp.reciprocal, (("src",),)),), (), False, False, tuple(np.shape(v.a)),
                      (Step(False, False),))
        r = self.value(chain)
        mul = functools.partial(_mul_eqn, eqn)
        return self._multilinear(_Eqn("mul", mul), [u, r])

    def _stop(self, x: Any) -> Any:
        """A shift from a maximum: the larger of its ends, shared; anything else: identity."""
        if isinstance(x, Pair) and x.shift:
            c = lax.stop_gradient(jnp.maximum(x.a, x.b))
            return c
        return x

    def _reduce_select(self, eqn: Any, x: Pair, lower: bool) -> Pair:
        axes = tuple(int(d) for d in eqn.params["axes"])
        nd = np.ndim(x.a)
        keep = [d for d in range(nd) if d not in axes]
        shape = [np.shape(x.a)[d] for d in keep]

        def flat(t):
            t = -t if lower else t
            return jnp.transpose(t, keep + list(axes)).reshape(*shape, -1)

        out = _envelope(Pair(flat(x.b), flat(x.a)))
        if lower:
            out = Pair(-out.b, -out.a, True)
        return out

    def _maximum(self, eqn: Any, vals: list, lower: bool) -> Pair:
        shape = eqn.outvars[0].aval.shape
        sign = -1.0 if lower else 1.0

        def stack(ends):
            return jnp.stack([sign * jnp.broadcast_to(e, shape) for e in ends], -1)

        bs, as_ = self._ends(vals)
        out = _envelope(Pair(stack(bs), stack(as_)))
        return Pair(sign * out.b, sign * out.a, all(
            x.shift for x in vals if isinstance(x, Pair)))

    def _max_pool(self, eqn: Any, x: Any) -> list:
        """Max-pooling by the crossing of the ends' winners; a nondecreasing chain before it
        (a ReLU) is applied after it instead, where its input moves linearly."""

        def pool(t):
            return _bind(eqn, t)[0]

        z, rest = _split(x) if isinstance(x, Chain) else (x, None)
        fused = (rest is not None and rest.monotone
                 and all(np.ndim(c) == 0 for c in rest.consts)
                 and int(np.prod(eqn.outvars[0].aval.shape)) <= int(np.prod(rest.shape)))
        if not fused:
            z, rest = self._evaluate(z, rest), None
        pooled = Pair(_pool_crossing(eqn, z.b, z.a), pool(z.a))
        if rest is not None:
            return [self.value(Chain(pooled, rest.steps, rest.consts, rest.piecewise,
                                     rest.monotone, rest.shape, rest.info))]
        return [pooled]

    def _fallback(self, eqn: Any, vals: list) -> list:
        """The gradient at the midpoint of the end inputs; the equation is named."""
        bs, as_ = self._ends(vals)
        self._flag(eqn.primitive.name, True)
        idx = [i for i, x in enumerate(vals) if isinstance(x, Pair) and _inexact(x.a)]

        def fn(*moving):
            full = list(bs)
            for i, m in zip(idx, moving, strict=True):
                full[i] = m
            return _bind(eqn, *full)

        ends = [vals[i].b for i in idx]
        mids = [0.5 * (vals[i].a + lax.stop_gradient(vals[i].b)) for i in idx]
        outs_b = _at_midpoint(fn, ends, mids) if idx else _bind(eqn, *bs)
        outs_a = _bind(eqn, *as_)
        return [Pair(b, a) for b, a in zip(outs_b, outs_a, strict=True)]


# Gauss-Legendre nodes and weights on [0, 1] for the normalisations' piece averages.
# Python floats (weakly typed): NumPy's float64 scalars would promote a float32 model's values
# to float64 where 64-bit JAX is on, and its float32 literals would then refuse them.
_NODES = tuple((float(0.5 * (t + 1.0)), float(0.5 * w)) for t, w in zip(
    *np.polynomial.legendre.leggauss(4), strict=True))
# Primitives that make a value a normaliser (a factor ``rsqrt(variance)``).
_NORMALISERS = frozenset({"rsqrt"})


def _run_chain(chain: Chain, consts: tuple, z: Any) -> Any:
    return chain.run(z, consts)


# Elementwise primitives that are affine in their one path-dependent operand (``_affine``).
_AFFINE = frozenset("add sub mul div neg convert_element_type copy copy_p".split())


def _affine(eqn: Any, refs: list) -> bool:
    """``eqn`` on ``refs`` (as ``Interpreter._extend`` lays them out) is affine in its one
    path-dependent operand: ``z + c``, ``c - z``, ``c * z``, ``z / c``, ``-z``, a float cast."""
    name = eqn.primitive.name
    paths = [i for i, r in enumerate(refs) if r[0] in ("src", "step")]
    if name not in _AFFINE or len(paths) != 1:
        return False
    if name == "div":
        return paths == [0]
    if name == "convert_element_type":
        return bool(jnp.issubdtype(eqn.params["new_dtype"], jnp.inexact))
    return True


def _compact(src: Pair, steps: Sequence, consts: Sequence, info: Sequence, shape: tuple
             ) -> Chain:
    """A chain of ``steps`` keeping only the constants they use."""
    used = sorted({r[1] for _, rs in steps for r in rs if r[0] == "const"})
    at = {k: i for i, k in enumerate(used)}
    steps = tuple((fn, tuple(("const", at[r[1]]) if r[0] == "const" else r for r in rs))
                  for fn, rs in steps)
    return Chain(src, steps, tuple(consts[k] for k in used),
                 all(i.piecewise for i in info), all(i.monotone for i in info), shape,
                 tuple(info))


def _split(chain: Chain) -> tuple[Pair, Chain | None]:
    """A chain's leading affine steps by the model's tensors (a bias, an inference batch
    norm, as JAX writes them before an activation) as a pair of their own, linear, and the
    rest of the chain on that pair (None where nothing is left).

    PyTorch's ``conv2d``/``linear``/``batch_norm`` are linear operations of their own, and its
    activation's slope is taken on their output. Folded into the activation's secant slope,
    the affine steps would cost it the digits that ``(c + z_b) - (c + z_a)`` loses to
    rounding (float32: ``eps * |c| / |dz|`` of the slope, on every path of a piece), and a
    max-pool could not fuse the activation alone. The cut is the last such step after which
    only the cut value is used (not ``x`` of ``x * relu6(x + 3)``); a chain of affine steps
    alone is all linear (``x / sqrt(d)``, ``x * gamma + beta``)."""
    steps, info = chain.steps, chain.info
    if len(info) != len(steps) or not _inexact(chain.src.a):
        return chain.src, chain
    cut = -1
    for k, ((_, refs), step) in enumerate(zip(steps, info, strict=True)):
        paths = [r for r in refs if r[0] != "const"]
        if not step.affine or paths != [("src",) if k == 0 else ("step", k - 1)]:
            break
        later = [r for _, rs in steps[k + 1:] for r in rs if r[0] != "const"]
        if k == len(steps) - 1 or (step.param and all(
                r[0] == "step" and r[1] >= k for r in later)):
            cut = k
    if cut < 0:
        return chain.src, chain
    src = chain.src
    prefix = _compact(src, steps[: cut + 1], chain.consts, info[: cut + 1], chain.shape)
    pair = Pair(prefix.run(src.b, prefix.consts), prefix.run(src.a, prefix.consts), src.shift,
                (functools.partial(_run_chain, prefix, prefix.consts), [src]))
    if cut == len(steps) - 1:
        return pair, None
    rest = tuple((fn, tuple(("src",) if r == ("step", cut) else
                            ("step", r[1] - cut - 1) if r[0] == "step" else r for r in rs))
                 for fn, rs in steps[cut + 1:])
    return pair, _compact(pair, rest, chain.consts, info[cut + 1:], chain.shape)


def _output_of(eqn: Any, i: int, *vals: Any) -> Any:
    return _bind(eqn, *vals)[i]


def _ancestors(x: Any, depth: int = 12) -> dict[int, tuple[Pair, int]]:
    """The pairs ``x``'s tape leads back to, by id, with their distance."""
    found: dict[int, tuple[Pair, int]] = {}
    todo = [(x, 0)]
    while todo:
        p, k = todo.pop()
        if not isinstance(p, Pair) or k > depth or (id(p) in found and found[id(p)][1] <= k):
            continue
        found[id(p)] = (p, k)
        if p.tape is not None:
            todo.extend((q, k + 1) for q in p.tape[1])
    return found


def _has_normaliser(x: Any, depth: int = 4) -> bool:
    """True when ``x`` was made by a chain holding ``rsqrt`` (within a few steps)."""
    todo = [(x, 0)]
    while todo:
        p, k = todo.pop()
        if not isinstance(p, Pair) or p.tape is None or k > depth:
            continue
        fn = p.tape[0]
        if isinstance(fn, functools.partial) and fn.func is _run_chain and any(
                getattr(getattr(step, "args", (None,))[0], "primitive", None) is not None
                and step.args[0].primitive.name in _NORMALISERS
                for step, _ in fn.args[0].steps):
            return True
        todo.extend((q, k + 1) for q in p.tape[1])
    return False


def _normalised(u: Any, v: Any) -> Pair | None:
    """For a product ``u * v`` where one factor holds ``rsqrt`` and both lead back to one pair
    ``h`` through their tapes: the nearest such ``h`` (the normalisation's input)."""
    if not (_has_normaliser(u) or _has_normaliser(v)):
        return None
    au, av = _ancestors(u), _ancestors(v)
    common = sorted(((au[k][1] + av[k][1], au[k][0]) for k in au.keys() & av.keys()
                     if k not in (id(u), id(v))), key=lambda c: c[0])
    for _, h in common:
        memo: dict[int, bool] = {}
        if _only_from(u, h, memo) and _only_from(v, h, memo):
            return h
    return None


def _only_from(y: Any, h: Pair, memo: dict[int, bool]) -> bool:
    """True when ``y`` is a function of ``h`` and constants alone, along its tape."""
    if not isinstance(y, Pair) or y is h:
        return True
    if id(y) not in memo:
        memo[id(y)] = y.tape is not None and not y.shift and all(
            _only_from(q, h, memo) for q in y.tape[1])
    return memo[id(y)]


def _replay(y: Any, h: Pair, value: Any, memo: dict[int, Any]) -> Any:
    """``y`` computed again from ``h = value`` along the tapes (other inputs fixed at their
    end values)."""
    if not isinstance(y, Pair):
        return y
    if y is h:
        return value
    if id(y) in memo:
        return memo[id(y)]
    fn, ins = cast(tuple, y.tape)  # not None: _only_from checked it
    out = fn(*[_replay(q, h, value, memo) for q in ins])
    memo[id(y)] = out
    return out


@dataclass(frozen=True)
class _Primitive:
    name: str
    fn: Callable
    multiple_results: bool = False

    def bind(self, *args: Any, **_: Any) -> Any:
        return self.fn(*args)

    def get_bind_params(self, params: dict) -> dict:
        return {}


class _Eqn:
    """A stand-in equation for a rule that calls another (a quotient's product)."""

    def __init__(self, name: str, fn: Callable) -> None:
        self.primitive = _Primitive(name, fn)
        self.params: dict = {}


def _mul_eqn(eqn: Any, u: Any, r: Any) -> Any:
    """``u * r`` broadcast to the quotient's output."""
    shape = eqn.outvars[0].aval.shape
    return jnp.broadcast_to(u * r, shape)


def secant_outputs(call: Callable[[Any], Any], xb: Any, xa: Any) -> tuple[Any, Any, list]:
    """The model's outputs at the pieces' ends ``xb`` (whose VJP is the secant relation of
    each row's piece) and starts ``xa``, and the ``(name, flag)`` of operations without an
    exact relation."""
    closed = jax.make_jaxpr(call)(jax.ShapeDtypeStruct(xb.shape, xb.dtype))
    interp = Interpreter()
    (out,) = interp.run(closed.jaxpr, closed.consts, [Pair(xb, xa)])
    out = interp.value(out)
    if not isinstance(out, Pair):
        return out, out, interp.flags
    return out.b, out.a, interp.flags


def secant_seeds(out_b: Any, out_a: Any, transform: Callable, target: Any
                 ) -> tuple[Any, Any, Any, Any]:
    """Seeds on the model output for the secant backward pass, and the scores at both ends.

    The explained score ``transform(out)[target]`` may be nonlinear in the output (softmax):
    the seed is the mean of its output gradients at both ends, corrected along the output's
    change so that ``seed . (out_b - out_a) = s_b - s_a`` exactly (as PyTorch's
    ``interval_seeds``).

    Returns:
        ``(seeds, score change, scores at b, scores at a)``.
    """

    def score(o):
        s = jnp.take_along_axis(transform(o), target[:, None], axis=1)[:, 0]
        return s.sum(), s

    jac_b, s_b = jax.grad(score, has_aux=True)(out_b)
    jac_a, s_a = jax.grad(score, has_aux=True)(out_a)
    mean = 0.5 * (jac_b + jac_a)
    d_out = out_b - out_a
    change = s_b - s_a
    norm2 = (d_out * d_out).sum(1)
    safe = jnp.where(norm2 > 0, norm2, 1.0)
    fix = jnp.where(norm2 > 0, (change - (mean * d_out).sum(1)) / safe, 0.0)
    return mean + fix[:, None] * d_out, change, s_b, s_a
