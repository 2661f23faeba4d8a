"""Secant gradients for PyTorch models: the machinery behind ``method="secant"``.

On a piece ``[a, b]`` of the path, IG needs the *average* gradient, not the gradient at a node.
A backward pass in which every operation passes back a *secant relation* of the piece, a linear
map ``J`` with ``J (input_b - input_a) = output_b - output_a`` exactly, maps the input change to
the output change exactly (completeness of every piece, to rounding), and it is the exact
average gradient wherever each operation's input moves linearly on the piece. A point-gradient
rule instead sees every unit that switches state inside the piece as a jump it can only resolve
with more nodes (error ~ 1/n). The rules, per operation class:

* linear operations (convolutions, dense layers, eval-mode batch norm, average pooling, sums,
  reshapes, products with constants): their own gradient, which is exact;
* elementwise nonlinearities (ReLU, ReLU6, SiLU, GELU, sigmoid, exp, log, sqrt, rsqrt,
  reciprocal, ``x ** c``, ``c / x``, ...): the secant slope ``(f(z_b) - f(z_a)) / (z_b - z_a)``
  (the derivative at the midpoint where the move is below rounding);
* products of two path-dependent tensors (``u * v``, ``matmul``/``bmm``/``einsum`` of two such
  operands, a dense layer whose weight depends on the input): for any end values
  ``f(u_b, v_b) - f(u_a, v_a) = f(mean u, dv) + f(du, mean v)`` with ``mean = (a + b) / 2``, so the
  gradient at the means is exact. Every operation that is at most quadratic in the input is
  exact this way; a quotient ``u / v`` is ``u * (1 / v)``;
* selections (max-pooling, ``max``/``amax``/``maximum``): with the winner ``i_a`` at ``a`` and
  ``i_b`` at ``b`` and the point ``t*`` where their linear paths cross, ``t*`` of the gradient
  goes to ``i_a`` and ``1 - t*`` to ``i_b``. Complete by construction; exact where at most two
  inputs of a window take turns;
* a nondecreasing activation right before a maximum (ReLU before max-pooling) is fused into
  it: ``max f(z) = f(max z)``, and ``z`` moves linearly where ``f(z)`` bends;
* compositions of the above, evaluated at both ends: softmax, log-softmax and logsumexp (exp,
  sum, reciprocal or log, with one shift shared by both ends), GLU,
  ``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention``;
* LayerNorm, GroupNorm, InstanceNorm and RMSNorm: the normalising map's gradient averaged over
  the piece by four Gauss-Legendre nodes, plus a rank-one term along the input's change that
  makes it map that change to the output's change exactly (the composition mean, centring,
  variance as the mean of a product, rsqrt, scaling is exact too, but its product rule weighs
  ``rsqrt(var)`` at the ends, which is off by orders of magnitude where the variance passes
  near zero inside the piece); the affine part is linear;
* anything else: its gradient at the midpoint of the piece's two end inputs, never a refusal.
  Completeness then measures a real error again; the operation is named in ``unhandled``.

Rows are the path's points in order, and each row carries the piece it *ends*: row ``k``'s
backward pass uses the relations between row ``k - 1`` and row ``k``, computed in the forward
pass. Each operation call that needs its inputs' values at the piece's start keeps the last row
of those inputs for the next batch (``after``, handed on as ``before``), so consecutive batches
evaluate every point once. A row that ends no piece (a path's first point) gets a zero seed. A
path's first point at alpha = 0 is its baseline, whose only use is its inputs to those
operations: they come from one forward pass per distinct baseline (``SecantMode(capture=True)``),
and the row after it joins them (``joins``) instead of being evaluated after it.

Which tensors depend on the path is followed through the forward pass: the input (a leaf that
requires grad and is no ``nn.Parameter``) and every output of an operation with such an input,
each tagged with the axis that holds the rows (moved along by transposes and permutes, so that
``nn.MultiheadAttention``'s sequence-first layout works too).

Why one module: the rules and the mode share the pairs of end values, the row bookkeeping and
the tagging of path-dependent tensors; split, every rule would reach into the mode's internals.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from igkit.core.secant_rules import LINEAR_PIECE_ULPS, small_move

__all__ = ["OP_CLASSES", "SecantMode", "captured_bytes", "interval_seeds"]

# --- the rule table, by the name torch reports for the function (torch.exp, Tensor.exp and
# F.* share names). -----------------------------------------------------------------------------

# Elementwise nonlinearities. "unit": piecewise linear with slope 1 where f(z) == z and 0
# elsewhere; "piecewise": other piecewise-linear ones (exact secants, derivative by autograd
# where the input did not move); "smooth": the secant of a tiny move is the midpoint derivative.
_UNARY: dict[str, str] = (
    dict.fromkeys("relu relu_ relu6 hardtanh hardtanh_ threshold threshold_".split(), "unit")
    | dict.fromkeys("leaky_relu leaky_relu_ rrelu rrelu_ abs abs_ absolute hardshrink "
                    "softshrink hardsigmoid prelu".split(), "piecewise")
    | dict.fromkeys(
        "elu elu_ selu selu_ celu celu_ silu gelu softplus mish hardswish sigmoid sigmoid_ tanh "
        "tanh_ logsigmoid softsign tanhshrink exp exp_ exp2 expm1 log log_ log2 log10 log1p "
        "sqrt sqrt_ rsqrt rsqrt_ reciprocal reciprocal_ square erf erfc sin cos atan sinh cosh "
        "asinh arctan".split(), "smooth")
)
# Nondecreasing activations, and the maxima that may take their input instead (max(f(z)) =
# f(max(z))): a ReLU before a max-pool bends inside pieces where its input moves linearly.
_MONOTONE = frozenset("relu relu6 hardtanh elu selu celu softplus hardsigmoid sigmoid tanh "
                      "leaky_relu".split())
_FUSABLE = frozenset("max_pool1d max_pool2d max_pool3d max_pool1d_with_indices "
                     "max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d "
                     "adaptive_max_pool2d adaptive_max_pool3d amax".split())
# Clamps: "unit" when the bounds do not depend on the path.
_CLAMP = frozenset("clamp clamp_ clip clip_ clamp_min clamp_max".split())
# x ** c, c ** x and c / x.
_POW = frozenset("pow pow_ __pow__ __ipow__ float_power".split())
_RPOW = frozenset(["__rpow__"])
_RDIV = frozenset("__rdiv__ __rtruediv__".split())
_DIV = frozenset("div div_ divide true_divide __truediv__ __itruediv__ __div__".split())
# Multilinear operations: name -> positions of the factors (None: every tensor argument). At
# most one path-dependent factor: linear; two: exact at the means; more: the fallback.
_MULTILINEAR: dict[str, tuple[int, ...] | None] = (
    dict.fromkeys("mul mul_ multiply __mul__ __rmul__ __imul__ matmul __matmul__ __rmatmul__ mm "
                  "bmm einsum tensordot outer ger dot vdot inner mv kron".split(), None)
    | dict.fromkeys("linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d "
                    "conv_transpose3d bilinear".split(), (0, 1))
    | dict.fromkeys("baddbmm addmm addbmm addmv addr addcmul".split(), (1, 2))
)
_SELECT = frozenset(
    "max min amax amin maximum minimum fmax fmin max_pool1d max_pool2d max_pool3d "
    "max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices adaptive_max_pool1d "
    "adaptive_max_pool2d adaptive_max_pool3d adaptive_max_pool1d_with_indices "
    "adaptive_max_pool2d_with_indices adaptive_max_pool3d_with_indices".split()
)
_WHERE = frozenset("where masked_fill masked_fill_".split())
# Linear in every path-dependent argument (or only moving data).
_LINEAR = frozenset(
    "add sub neg add_ sub_ neg_ negative rsub __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ "
    "__neg__ __pos__ sum nansum mean cumsum cat concat concatenate stack hstack vstack dstack pad "
    "constant_pad_nd avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
    "adaptive_avg_pool3d flatten unflatten reshape view view_as reshape_as permute transpose "
    "transpose_ t swapaxes swapdims movedim moveaxis contiguous squeeze unsqueeze squeeze_ "
    "unsqueeze_ dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout "
    "__getitem__ __setitem__ chunk split split_with_sizes tensor_split unbind expand expand_as "
    "broadcast_to repeat repeat_interleave tile to float double half bfloat16 type type_as clone "
    "roll flip fliplr flipud rot90 narrow select index_select gather take_along_dim interpolate "
    "upsample upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle unfold fold "
    "diagonal diag_embed tril triu trace embedding lerp copy_ sum_to_size as_strided "
    "channel_shuffle native_channel_shuffle affine_grid matmul_const ravel diff zero_ "
    "index_add scatter_add masked_scatter cpu cuda".split()
)
# Outputs without a gradient (masks, indices, shapes), or calls that return no tensor.
_NO_GRADIENT = frozenset(
    "eq ne lt le gt ge __eq__ __ne__ __lt__ __le__ __gt__ __ge__ greater less greater_equal "
    "less_equal equal argmax argmin argsort isnan isinf isfinite isposinf isneginf isclose "
    "allclose sign signbit floor ceil round trunc frac logical_and logical_or logical_not "
    "logical_xor any all nonzero bool long int byte char short __and__ __or__ __xor__ __invert__ "
    "__bool__ __int__ __float__ __index__ item tolist numpy count_nonzero bucketize searchsorted "
    "histc bincount unique requires_grad_ __get__ size dim numel __len__ stride is_contiguous "
    "data_ptr element_size "
    "is_floating_point is_complex __format__ __repr__ __hash__ get_device nelement ndimension "
    "storage_offset untyped_storage register_hook retain_grad __contains__ __iter__ "
    "__reversed__ __array__ __dlpack__ __dlpack_device__".split()
)
# A tensor whose rows are moved along when the op returns a differently ordered tensor.
_TRANSPOSES = frozenset("transpose transpose_ swapaxes swapdims".split())
_PERMUTES = frozenset("permute movedim moveaxis t T mT H mH".split())
# Calls that take no part (sizes, properties other than transposes), passed through at once,
# and calls whose output does not depend on the values of their input (a detached copy, a new
# tensor of its shape: Swin's attention mask is built by x.new_zeros).
_PLAIN = frozenset(
    "size dim numel __len__ stride is_contiguous is_floating_point zeros_like ones_like "
    "empty_like full_like rand_like randn_like randint_like new_zeros new_ones new_empty "
    "new_full new_tensor detach detach_".split()
)

_NAMES: dict[Any, str] = {}


def _name(func: Any) -> str:
    try:
        return _NAMES[func]
    except (KeyError, TypeError):
        name = getattr(func, "__name__", str(func))
        try:
            _NAMES[func] = name
        except TypeError:  # an unhashable callable
            pass
        return name


# --- slopes of elementwise functions -----------------------------------------------------------


def _small_move(dtype: torch.dtype) -> float:
    """``igkit.core.secant_rules.small_move`` for a torch dtype."""
    return small_move("float64" if dtype == torch.float64 else "float32")


def _derivative(f: Callable, z: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(f(zz).sum(), zz, allow_unused=True)
    return torch.zeros_like(zz) if d is None else d


def _pair_slopes(za, ya, zb, yb, f: Callable, kind: str, out: torch.Tensor,
                 pure: bool = True) -> None:
    """Secant slope of ``f`` from ``za`` to ``zb``, written into ``out``.

    Where the input did not move in float arithmetic (0 / 0) the slope is the derivative: a
    move below the last bit of ``z`` is still a move, and slope 0 there would cut gradient
    paths more often the finer the pieces (on EfficientNet-Lite0 a bias of 0.3 % at 512 pieces).
    ``pure``: ``f`` is elementwise with no tensor arguments of its own, so it may be evaluated
    on the entries that need a derivative alone.
    """
    torch.sub(yb, ya, out=out)
    dz = zb - za
    if kind == "unit":
        # Exact for any move that is not zero; 0 / 0 marks the entries that need f'(z).
        out.div_(dz)
        # f'(z) is 1 where f(z) == z. Written into dz's float buffer, not a new bool tensor:
        # torch.where would copy a bool operand to float (on EfficientNet-Lite0 the copy was
        # 8 % of a secant call, the slope arithmetic as a whole about a depthwise convolution).
        torch.eq(ya, za, out=dz)
        torch.where(out.isnan(), dz, out, out=out)
        return
    still = za == zb  # equal ends, infinite ones included (exp at -inf: slope 0)
    if kind == "piecewise":
        _linear_piece_slopes(za, ya, zb, yb, f, dz, still, pure)
    else:
        still |= dz.abs() <= _small_move(dz.dtype) * za.abs() + 1e-12
    out.div_(dz.masked_fill_(still, 1.0))
    if bool(still.any()):
        if pure:
            out[still] = _derivative(f, 0.5 * (zb[still] + za[still])).to(out.dtype)
        else:
            torch.where(still, _derivative(f, 0.5 * (zb + za)).to(out.dtype), out, out=out)


def _linear_piece_slopes(za, ya, zb, yb, f: Callable, dz, still, pure: bool) -> None:
    """Mark in ``still`` the entries of a piecewise-linear ``f`` that moved by a few ulps on one
    linear piece, so that they take the derivative (``secant_rules.LINEAR_PIECE_ULPS``): the
    derivative is the same at both ends and between, and the secant within rounding of it. Only
    moves below 4096 ulps are tested: above, the quotient keeps the digits that matter."""
    eps = torch.finfo(dz.dtype).eps
    near = ~still & (dz.abs() <= 4096 * eps * (za.abs() + zb.abs()))
    if not bool(near.any()):
        return
    if pure:
        a, b, ya_, yb_ = za[near], zb[near], ya[near], yb[near]
    else:
        a, b, ya_, yb_ = za, zb, ya, yb
    d = _derivative(f, 0.5 * (a + b))
    one = (_derivative(f, a) == d) & (_derivative(f, b) == d)
    noise = LINEAR_PIECE_ULPS * eps * (ya_.abs() + yb_.abs() + d.abs() * (a.abs() + b.abs()))
    one &= (yb_ - ya_ - d * (b - a)).abs() <= noise
    if pure:
        still[near] = one
    else:
        still |= near & one


class _Slope(torch.autograd.Function):
    """``y`` forward, ``grad * slope`` backward."""

    @staticmethod
    def forward(ctx, z, y, slope):  # type: ignore[override]
        ctx.save_for_backward(slope)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


# --- pairs of end values and the primitive rules on them ---------------------------------------


class _Pair(NamedTuple):
    """A path-dependent tensor at the piece's end ``b`` (in the autograd graph) and at its start
    ``a`` (detached)."""

    b: torch.Tensor
    a: torch.Tensor


def _ends(x: Any) -> tuple[Any, Any]:
    return (x.b, x.a) if isinstance(x, _Pair) else (x, x)


def _lin(fn: Callable, *xs: Any) -> _Pair:
    """An operation linear in the pairs among ``xs`` (the others are constants), at both ends."""
    b = fn(*[_ends(x)[0] for x in xs])
    with torch.no_grad():
        a = fn(*[_ends(x)[1] for x in xs])
    return _Pair(b, a)


def _unary(f: Callable, kind: str, z: _Pair) -> _Pair:
    """``f(z)`` with the secant slope of the piece."""
    with torch.no_grad():
        zb = z.b.detach()
        yb, ya = f(zb), f(z.a)
        slope = torch.empty_like(yb)
        _pair_slopes(z.a, ya, zb, yb, f, kind, slope, pure=False)
    return _Pair(_Slope.apply(z.b, yb, slope), ya)


class _Mul(torch.autograd.Function):
    """``u * v`` forward; backward the exact product rule of the piece: ``grad * mean(v)`` to
    ``u`` and ``grad * mean(u)`` to ``v`` (``u_b v_b - u_a v_a = mean(u) dv + mean(v) du``)."""

    @staticmethod
    def forward(ctx, u, v, um, vm):  # type: ignore[override]
        ctx.save_for_backward(um, vm)
        ctx.shapes = (u.shape, v.shape, u.dtype, v.dtype)
        return u * v

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        um, vm = ctx.saved_tensors
        us, vs, ud, vd = ctx.shapes
        gu = (grad * vm).sum_to_size(us).to(ud) if ctx.needs_input_grad[0] else None
        gv = (grad * um).sum_to_size(vs).to(vd) if ctx.needs_input_grad[1] else None
        return gu, gv, None, None


class _AtMidpoint(torch.autograd.Function):
    """``call(*ends)`` forward (its floating outputs); backward the gradient of ``call`` at
    ``mids``. Exact for every function at most quadratic in its inputs; otherwise the midpoint
    rule's second-order error. ``box`` receives the flattened outputs and their structure."""

    @staticmethod
    def forward(ctx, call, box, n, *tensors):  # type: ignore[override]
        ends, mids = tensors[:n], tensors[n:]
        leaves, spec = pytree.tree_flatten(call(*ends))
        keep = [i for i, leaf in enumerate(leaves)
                if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()]
        box.extend([leaves, spec, keep])
        ctx.call, ctx.n, ctx.keep = call, n, keep
        ctx.save_for_backward(*mids)
        outs = tuple(leaves[i] for i in keep)
        return outs if outs else (torch.zeros(()),)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        mids = ctx.saved_tensors
        with torch.enable_grad():
            ins = [m.detach().requires_grad_(True) for m in mids]
            leaves, _ = pytree.tree_flatten(ctx.call(*ins))
            outs, seeds = [], []
            for i, g in zip(ctx.keep, grads, strict=False):
                if g is not None and leaves[i].requires_grad:
                    outs.append(leaves[i])
                    seeds.append(g)
            got = (torch.autograd.grad(outs, ins, seeds, allow_unused=True) if outs
                   else (None,) * len(ins))
        return (None, None, None, *got, *([None] * ctx.n))


def _at_midpoint(call: Callable, ends: Sequence[torch.Tensor], mids: Sequence[torch.Tensor]):
    """``call(*ends)`` (any output structure) with the gradient at ``mids`` (``_AtMidpoint``)."""
    box: list = []
    outs = _AtMidpoint.apply(call, box, len(ends), *ends, *mids)
    leaves, spec, keep = box
    leaves = list(leaves)
    for i, o in zip(keep, outs, strict=False):
        leaves[i] = o
    return pytree.tree_unflatten(leaves, spec)


def _mean(p: _Pair) -> torch.Tensor:
    return 0.5 * (p.a + p.b.detach())


def _product(u: Any, v: Any, fn: Callable = torch.mul) -> _Pair:
    """A bilinear ``fn(u, v)`` (``torch.mul``, ``torch.matmul``, ...) of pairs or constants."""
    if isinstance(u, _Pair) and isinstance(v, _Pair):
        with torch.no_grad():
            um, vm = _mean(u), _mean(v)
            a = fn(u.a, v.a)
        if fn is torch.mul:
            return _Pair(_Mul.apply(u.b, v.b, um, vm), a)
        return _Pair(_at_midpoint(fn, (u.b, v.b), (um, vm)), a)
    return _lin(fn, u, v)


def _shared_max(x: _Pair, dim: Any) -> torch.Tensor:
    """One shift for both ends (the larger maximum), so that exp never overflows and the shift
    moves nothing between the ends."""
    with torch.no_grad():
        c = torch.maximum(x.b.detach().amax(dim, keepdim=True), x.a.amax(dim, keepdim=True))
        return torch.where(torch.isfinite(c), c, torch.zeros_like(c))


def _softmax(x: _Pair, dim: int, log: bool = False) -> _Pair:
    c = _shared_max(x, dim)
    y = _lin(lambda t: t - c, x)
    e = _unary(torch.exp, "smooth", y)
    total = _lin(lambda t: t.sum(dim, keepdim=True), e)
    if log:
        return _lin(torch.sub, y, _unary(torch.log, "smooth", total))
    return _product(e, _unary(torch.reciprocal, "smooth", total))


def _normalize(x: _Pair, dims: tuple[int, ...], eps: float, center: bool = True) -> _Pair:
    """``(x - mean) / sqrt(var + eps)`` over ``dims`` (``center=False``: ``x / rms``)."""
    if center:
        x = _lin(lambda t: t - t.mean(dims, keepdim=True), x)
    var = _lin(lambda t: t.mean(dims, keepdim=True), _product(x, x))
    r = _unary(torch.rsqrt, "smooth", _lin(lambda t: t + eps, var))
    return _product(x, r)


# Gauss-Legendre nodes and weights on [0, 1] for the normalisations' piece averages.
_NODES = tuple((0.5 * (t + 1.0), 0.5 * w) for t, w in zip(*np.polynomial.legendre.leggauss(4),
                                                           strict=True))


def _row_sum(t: torch.Tensor, axis: int, n: int) -> torch.Tensor:
    return t.movedim(axis, 0).reshape(n, -1).sum(1)


def _row_scale(t: torch.Tensor, s: torch.Tensor, axis: int, n: int) -> torch.Tensor:
    v = t.movedim(axis, 0).unflatten(0, (n, -1))
    return (v * s.view(n, *([1] * (v.dim() - 1)))).flatten(0, 1).movedim(0, axis)


class _Nodes(torch.autograd.Function):
    """``fn(z)`` forward, for a smooth ``fn`` that may bend hard inside a piece (a
    normalisation whose variance passes near zero). Backward: the average of ``fn``'s gradient
    over the piece by Gauss-Legendre nodes, plus, per row, a rank-one term along the input's
    change ``d`` that makes the relation map ``d`` to the output's change exactly:
    ``J = avg J(t) + (dy - avg J(t) d) d^T / |d|^2``. A product rule at the ends' means would
    be exact too, but with ``rsqrt(var)`` at a near-zero variance it weighs the ends' huge
    factors where the path spends almost no time."""

    @staticmethod
    def forward(ctx, z, za, fn, axis, n):  # type: ignore[override]
        # Copies, not saved tensors: a model may change its residual stream (the input) or the
        # normalised output in place afterwards.
        ctx.ends = (z.detach().clone(), za)
        ctx.fn, ctx.axis, ctx.n = fn, axis, n
        return fn(z)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        zb, za = ctx.ends
        fn, axis, n = ctx.fn, ctx.axis, ctx.n
        yb = fn(zb)
        d = zb - za
        average = torch.zeros_like(zb)
        for t, w in _NODES:
            with torch.enable_grad():
                x = (za + t * d).requires_grad_(True)
                (gx,) = torch.autograd.grad(fn(x), x, grad)
            average += w * gx
        with torch.no_grad():
            # grad . (dy - avg J d) = grad . dy - (avg J^T grad) . d, row by row: no
            # forward-mode derivative needed.
            miss = _row_sum(grad * (yb - fn(za)), axis, n) - _row_sum(average * d, axis, n)
            den = _row_sum(d * d, axis, n)
            scale = torch.where(den > 0, miss / torch.where(den > 0, den, 1.0), 0.0)
            average += _row_scale(d, scale, axis, n)
        return average, None, None, None, None


class _Select(torch.autograd.Function):
    """The selected values at the end; backward ``t`` of the gradient to the start's winner and
    ``1 - t`` to the end's (along ``dim``, indices ``ia``/``ib`` of ``x``'s shape but for
    ``dim``)."""

    @staticmethod
    def forward(ctx, x, value, ia, ib, t, dim):  # type: ignore[override]
        ctx.save_for_backward(ia, ib, t)
        ctx.dim, ctx.shape = dim, x.shape
        return value

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        ia, ib, t = ctx.saved_tensors
        g = grad.new_zeros(ctx.shape)
        g.scatter_add_(ctx.dim, ia, grad * t)
        g.scatter_add_(ctx.dim, ib, grad * (1 - t))
        return g, None, None, None, None, None


def _crossing(x: _Pair, ia: torch.Tensor, ib: torch.Tensor) -> _Pair:
    """Max-pooling's selection: the maximum over windows whose winners at the piece's start
    and end are ``ia`` and ``ib`` (indices into ``x``'s last axis, one per window). Their lines
    cross at ``t* = (x_ia(a) - x_ib(a)) / (d_ib - d_ia)``: ``t*`` of the piece belongs to
    ``i_a``, the rest to ``i_b``, and ``t* d_ia + (1 - t*) d_ib = vb - va`` exactly, whichever
    other inputs of the window took turns in between."""
    with torch.no_grad():
        xb = x.b.detach()
        vb, va = xb.gather(-1, ib), x.a.gather(-1, ia)
        num = va - x.a.gather(-1, ib)
        den = (vb - x.a.gather(-1, ib)) - (xb.gather(-1, ia) - va)
        t = torch.where(den != 0, num / torch.where(den != 0, den, 1.0), 0.5)
        t = torch.where(ia == ib, 1.0, t).to(xb.dtype)
    return _Pair(_Select.apply(x.b, vb, ia, ib, t, -1), va)


def _select_max(x: _Pair, dim: int = -1) -> tuple[_Pair, torch.Tensor]:
    """Maximum over the last axis (kept) and the end's winners. Every candidate moves on a line
    over the piece, so the maximum is their upper envelope: from the start's winner, the next
    winner is the steeper line that crosses it first. Each candidate's gradient is the share
    of the piece it wins; the shares telescope to ``vb - va`` exactly, and where the inputs
    move linearly they are the exact average gradient."""
    assert dim == -1
    with torch.no_grad():
        xb, xa = x.b.detach(), x.a
        vb, ib = xb.max(-1, keepdim=True)
        va, cur = xa.max(-1, keepdim=True)
        d = xb - xa
        weight = torch.zeros_like(xb)
        t = torch.zeros_like(va)
        for _ in range(xb.shape[-1]):
            dc = d.gather(-1, cur)
            den = d - dc
            crossing = torch.where(den > 0, (xa.gather(-1, cur) - xa) / torch.where(
                den > 0, den, 1.0), math.inf)
            # A steeper line level with the winner already (a tie) takes over at once.
            t_next, nxt = torch.maximum(crossing, t).min(-1, keepdim=True)
            t_next = t_next.clamp(max=1.0)
            weight.scatter_add_(-1, cur, t_next - t)
            done = t_next >= 1.0
            if bool(done.all()):
                break
            cur = torch.where(done, cur, nxt)
            t = t_next
    # Backward spreads the gradient over the candidates by their share of the piece.
    return _Pair(_Slope.apply(x.b, vb, weight), va), ib


def _attention(q: Any, k: Any, v: Any, mask: torch.Tensor | None, scale: float
               ) -> tuple[_Pair, _Pair]:
    """``softmax(q k^T * scale + mask) v`` and the attention weights, of pairs or constants."""
    kt = _lin(lambda t: t.transpose(-2, -1), k) if isinstance(k, _Pair) else k.transpose(-2, -1)
    s = _product(q, kt, torch.matmul)
    s = _lin(lambda t: t * scale if mask is None else t * scale + mask, s)
    p = _softmax(s, -1)
    return _product(p, v, torch.matmul), p


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype, keep_true: bool
                   ) -> torch.Tensor | None:
    """A boolean mask (``keep_true``: True takes part, as in SDPA; else True is masked, as in
    MultiheadAttention) as 0 / -inf, a float mask as it is."""
    if mask is None or mask.is_floating_point():
        return mask
    hidden = ~mask if keep_true else mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(hidden, -math.inf)


# --- the mode ----------------------------------------------------------------------------------


class _Fallback(Exception):
    """A rule that does not apply to these arguments: use the midpoint fallback."""


def _sig(fn: Callable | None, spec: str) -> inspect.Signature:
    """The signature of a torch function, from ``spec`` where torch's builtins carry none (or
    ``fn`` is None)."""
    try:
        if fn is None:
            raise ValueError
        return inspect.signature(fn)
    except (TypeError, ValueError):
        params = []
        for part in spec.split(","):
            key, _, default = part.strip().partition("=")
            params.append(inspect.Parameter(
                key, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=eval(default) if default else inspect.Parameter.empty))  # noqa: S307
        return inspect.Signature(params)


_SIGNATURES: dict[str, inspect.Signature] = {}


def _bind(name: str, fn: Callable | None, spec: str, args: tuple, kwargs: dict) -> dict:
    """The arguments of a call by name; a call that does not fit the signature (another
    overload) takes the fallback."""
    sig = _SIGNATURES.get(name)
    if sig is None:
        sig = _SIGNATURES[name] = _sig(fn, spec)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        raise _Fallback from None
    bound.apply_defaults()
    return dict(bound.arguments)


class _Call:
    """One operation call: its path-dependent tensors and their values at the piece's start."""

    def __init__(self, mode: SecantMode, slot: int, paths: list[torch.Tensor], name: str,
                 fused: tuple | None = None):
        self.mode, self.slot, self.paths, self.name = mode, slot, paths, name
        self.fused = fused
        self._starts: dict[int, torch.Tensor] = {}

    def index(self, t: Any) -> int | None:
        for k, p in enumerate(self.paths):
            if p is t:
                return k
        return None

    def start(self, t: torch.Tensor) -> torch.Tensor:
        k = self.index(t)
        assert k is not None
        if k not in self._starts:
            self._starts[k] = self.mode._start_of(self.slot, k, t, self.name)
        return self._starts[k]

    def pair(self, t: Any) -> Any:
        """A pair for a path-dependent tensor, anything else as it is."""
        if isinstance(t, torch.Tensor) and self.index(t) is not None:
            return _Pair(t, self.start(t))
        return t


class SecantMode(TorchFunctionMode):
    """While active, every operation computes as usual but backpropagates the secant relation
    of the piece each row ends (see the module docstring for the rules).

    Args:
        before: What the previous batch kept of its last row (its ``after``), in the order the
            forward pass calls the operations (``None``: no previous row). After the forward
            pass ``after`` holds this batch's; hand it on only once the batch succeeded.
        joins: ``(row, captured)`` pairs: that row's piece starts at a point that is not in the
            batch (a path's baseline), whose ``after`` from a ``capture`` pass is ``captured``.
        capture: Compute the model as usual and keep the whole inputs of every operation that
            needs them in ``after`` (for ``joins``), instead of secant relations.

    ``unhandled`` collects the names of the operations that ran on the midpoint fallback (or
    that the mode could not pair with the piece's start), so that a completeness error can name
    them.
    """

    def __init__(self, before: list | None = None, joins: Sequence[tuple[int, list]] = (),
                 capture: bool = False) -> None:
        super().__init__()
        self.unhandled: set[str] = set()
        self._before = before
        self._joins = joins
        self._capture = capture
        self.after: list[list[torch.Tensor | None]] = []
        self._rows: int | None = None
        self._token = object()
        # The last call if it was a nondecreasing activation: (output, input, name, func, args,
        # kwargs), for a maximum that takes its output next.
        self._recent: tuple | None = None

    # -- path-dependent tensors and their rows --

    def _axis(self, t: torch.Tensor) -> int | None:
        """The axis holding the rows of a path-dependent tensor, None when ``t`` is not one."""
        tag = getattr(t, "_igkit_rows", None)
        if tag is not None and tag[0] is self._token:
            return tag[1]
        if (t.requires_grad and t.is_leaf and not isinstance(t, torch.nn.Parameter)
                and t.dim() > 0):
            # The path's input: rows along its first axis.
            if self._rows is None:
                self._rows = int(t.shape[0])
            t._igkit_rows = (self._token, 0)  # type: ignore[attr-defined]
            return 0
        return None

    def _paths(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        """The path-dependent tensors among the arguments and in their lists and tuples.

        A loop, not a recursive inner function: such a function refers to itself through its
        closure, and the cycle kept every call's tensors alive until the garbage collector ran
        (on the zoo's ResNet-style net 30 MB of activations per call, and a hand-written pass
        right after a secant call ran 2.4x slower until it had)."""
        found: list[torch.Tensor] = []
        for a in (*args, *kwargs.values()):
            for x in a if isinstance(a, (list, tuple)) else (a,):
                if (isinstance(x, torch.Tensor) and self._axis(x) is not None
                        and not any(x is f for f in found)):
                    found.append(x)
        return found

    def _guess_axis(self, t: torch.Tensor) -> int | None:
        n = self._rows or 1
        if t.dim() == 0:
            return None
        if t.shape[0] % n == 0 and t.shape[0] > 0:
            return 0
        for d in range(1, t.dim()):
            if t.shape[d] == n:
                return d
        return None

    def _out_axis(self, name: str, args: tuple, kwargs: dict, out: torch.Tensor,
                  src: torch.Tensor) -> int | None:
        axis = self._axis(src)
        n = self._rows or 1
        nd = src.dim()
        if axis is not None and args and args[0] is src:
            try:
                if name in _TRANSPOSES:
                    dims = list(args[1:3]) or [kwargs.get("dim0"), kwargs.get("dim1")]
                    d0, d1 = (int(d) % nd for d in dims)
                    return d1 if axis == d0 else d0 if axis == d1 else axis
                if name in _PERMUTES:
                    return self._permuted_axis(name, args, kwargs, axis, nd)
            except (TypeError, ValueError):
                pass
        if (axis is not None and out.dim() == nd and axis < nd and out.shape[axis] > 0
                and out.shape[axis] % n == 0):
            return axis
        return self._guess_axis(out)

    @staticmethod
    def _permuted_axis(name: str, args: tuple, kwargs: dict, axis: int, nd: int) -> int:
        if name in ("T", "H"):
            order = list(range(nd))[::-1]
        elif name in ("t", "mT", "mH"):
            order = list(range(nd))
            order[-2:] = order[-2:][::-1]
        elif name == "permute":
            dims: Any = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else (
                args[1:] or kwargs.get("dims"))
            order = [int(d) % nd for d in dims]
        else:
            given: list[Any] = [args[1] if len(args) > 1 else kwargs.get("source"),
                                args[2] if len(args) > 2 else kwargs.get("destination")]
            src, dst = ([int(i) % nd for i in (g if isinstance(g, (list, tuple)) else [g])]
                        for g in given)
            order = [d for d in range(nd) if d not in src]
            for d, i in sorted(zip(dst, src, strict=True)):
                order.insert(d, i)
        return order.index(axis)

    def _tag(self, name: str, args: tuple, kwargs: dict, out: Any, src: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor):
            outs: list = [out]
        elif isinstance(out, (tuple, list)):
            outs = [o for o in out if isinstance(o, torch.Tensor)]
        else:
            outs = []
        if (name.endswith("_") or name in ("__setitem__",)) and args and isinstance(
                args[0], torch.Tensor) and args[0] is not src:
            outs.append(args[0])
        for o in outs:
            if o.dim() == 0 and not o.requires_grad:
                continue
            tag = getattr(o, "_igkit_rows", None)
            if tag is not None and tag[0] is self._token:
                continue
            axis = self._out_axis(name, args, kwargs, o, src) if o.dim() else 0
            o._igkit_rows = (self._token, axis)  # type: ignore[attr-defined]

    def _rows_view(self, t: torch.Tensor, of: torch.Tensor | None = None) -> torch.Tensor | None:
        """``t`` as ``(rows, group, ...)``, rows first; None where its rows are not known.
        ``of``: the tagged tensor ``t`` holds the values of (``t`` a detached copy)."""
        axis = self._axis(t if of is None else of)
        n = self._rows or 1
        if axis is None or t.dim() == 0 or t.shape[axis] % n or t.shape[axis] == 0:
            return None
        return t.movedim(axis, 0).unflatten(0, (n, t.shape[axis] // n))

    def _stored(self, store: list | None, slot: int, k: int, v: torch.Tensor
                ) -> torch.Tensor | None:
        """The row kept in ``store`` for input ``k`` of call ``slot``, shaped as a row of
        ``v``."""
        if store is None:
            return None
        try:
            row = store[slot][k]
        except IndexError:
            row = None
        if row is None or row.numel() != v[:1].numel():
            self.unhandled.add("a forward pass that changes between path points")
            return None
        return row.reshape(v[:1].shape).to(v.dtype)

    def _edge_rows(self, slot: int, k: int, v: torch.Tensor):
        """The first row's start (the previous batch's last row, or a join at row 0; None:
        unknown) and the other joined rows ``(row, start)``."""
        first = self._stored(self._before, slot, k, v)
        extra = []
        for i, captured in self._joins:
            row = self._stored(captured, slot, k, v)
            if row is None:
                continue
            if i == 0:
                first = row
            else:
                extra.append((i, row))
        return first, extra

    def _start_of(self, slot: int, k: int, t: torch.Tensor, name: str) -> torch.Tensor:
        """Input ``k`` of call ``slot`` at each row's piece start: the row before, the previous
        batch's last row or the joined baseline's (a row without one starts where it ends)."""
        td = t.detach()
        v = self._rows_view(td, t)
        if v is None:
            self.unhandled.add(f"{name} (rows not found)")
            return td
        first, extra = self._edge_rows(slot, k, v)
        row0 = v[:1].clone() if first is None else first
        s = torch.cat([row0, v[:-1]]) if v.shape[0] > 1 else row0
        for i, row in extra:
            s[i : i + 1] = row
        return s.flatten(0, 1).movedim(0, self._axis(t) or 0)

    # -- dispatch --

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name in _PLAIN:
            return func(*args, **kwargs)
        if name == "__get__":
            # A property: only the transposing ones (x.T, x.mT) return a path-dependent tensor.
            name = getattr(getattr(func, "__self__", None), "__name__", "")
            out = func(*args, **kwargs)
            if name in _PERMUTES and isinstance(out, torch.Tensor) and args and isinstance(
                    args[0], torch.Tensor) and self._axis(args[0]) is not None:
                self._tag(name, args, kwargs, out, args[0])
            return out
        paths = self._paths(args, kwargs)
        if not paths:
            return func(*args, **kwargs)
        recent, self._recent = self._recent, None
        tracked = self._tracked(name, args, kwargs, paths)
        if not tracked:
            out = func(*args, **kwargs)
            self._tag(name, args, kwargs, out, paths[0])
            return out
        fused = None
        if (recent is not None and name in _FUSABLE and len(paths) == 1 and args
                and args[0] is recent[0]):
            # max(f(z)) = f(max(z)) for a nondecreasing f: select on z, which moves linearly
            # where f(z) bends, then take f's secant.
            fused = recent
            paths = [*paths, recent[1]]
        slot = len(self.after)
        self.after.append([self._last_row(t) for t in paths])
        call = _Call(self, slot, paths, name, fused)
        if self._capture:
            out = _capture_call(call, name, func, args, kwargs)
        else:
            out = self._apply(name, func, args, kwargs, call)
        self._tag(name, args, kwargs, out, paths[0])
        if name in _MONOTONE and isinstance(out, torch.Tensor) and out is not args[0] and (
                out.shape == args[0].shape):
            self._recent = (out, args[0], name, func, args, kwargs)
        return out

    def _last_row(self, t: torch.Tensor) -> torch.Tensor | None:
        v = self._rows_view(t.detach(), t)
        return None if v is None else v[-1:].clone()

    def _tracked(self, name: str, args: tuple, kwargs: dict, paths: list) -> bool:
        """Whether the call needs its inputs at the piece's start (a rule other than its own
        gradient). Depends on names and on which arguments depend on the path only, so that
        every batch and the baselines' capture pass track the same calls."""
        if name in _LINEAR or name in _NO_GRADIENT:
            return False
        if name in _MULTILINEAR:
            return self._factors(name, args, kwargs) >= 2
        if name in _DIV:
            divisor = args[1] if len(args) > 1 else kwargs.get("other")
            return any(divisor is p for p in paths)
        if name == "batch_norm":
            return bool(kwargs.get("training", args[5] if len(args) > 5 else False))
        if name == "instance_norm":
            return bool(kwargs.get("use_input_stats", args[5] if len(args) > 5 else True))
        if name in _WHERE:
            cond = args[0] if name == "where" else (args[1] if len(args) > 1 else
                                                    kwargs.get("mask"))
            return isinstance(cond, torch.Tensor) and any(cond is p for p in paths)
        return True

    def _factors(self, name: str, args: tuple, kwargs: dict) -> int:
        """How many factors of a multilinear call depend on the path."""
        positions = _MULTILINEAR[name]
        if name == "einsum":
            ops = args[1:] if len(args) > 1 else ()
            if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
                ops = tuple(ops[0])
        elif positions is None:
            ops = tuple(args) + tuple(kwargs.values())
        else:
            ops = tuple(args[i] for i in positions if i < len(args))
            if name in ("linear",) and len(args) < 2:
                ops += (kwargs.get("weight"),)
        count = 0
        for op in ops:
            if isinstance(op, torch.Tensor) and self._axis(op) is not None:
                count += 1
        return count

    def _apply(self, name: str, func, args: tuple, kwargs: dict, call: _Call):
        try:
            rule = _RULES.get(name)
            if rule is None:
                if name in _UNARY:
                    return _unary_rule(self, call, name, func, args, kwargs, _UNARY[name])
                if name in _MULTILINEAR:
                    return _multilinear_rule(self, call, name, func, args, kwargs)
                raise _Fallback
            return rule(self, call, name, func, args, kwargs)
        except _Fallback:
            return self._midpoint(call, name, func, args, kwargs, exact=False)

    def _midpoint(self, call: _Call, name: str, func, args: tuple, kwargs: dict, exact: bool):
        """Any operation: its value at the end and its gradient at the piece's midpoint."""
        if _in_place(name):
            # An in-place operation with no rule: its own gradient at the end.
            self.unhandled.add(name)
            return func(*args, **kwargs)
        floats = [t for t in call.paths if t.is_floating_point()]
        if not floats:
            return func(*args, **kwargs)
        mids = [0.5 * (call.start(t) + t.detach()) for t in floats]

        def run(*ts: torch.Tensor):
            swap = {id(t): s for t, s in zip(floats, ts, strict=True)}

            def sub(x: Any) -> Any:
                if isinstance(x, torch.Tensor):
                    return swap.get(id(x), x)
                if isinstance(x, (list, tuple)) and any(id(y) in swap for y in x):
                    return type(x)(sub(y) for y in x)
                return x

            return func(*[sub(a) for a in args], **{k: sub(a) for k, a in kwargs.items()})

        if not exact:
            self.unhandled.add(name)
        return _at_midpoint(run, floats, mids)


_IN_PLACE_DUNDERS = frozenset("__iadd__ __isub__ __imul__ __itruediv__ __ipow__".split())


def _in_place(name: str) -> bool:
    return (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_DUNDERS


def _finish(name: str, args: tuple, out: torch.Tensor) -> torch.Tensor:
    """An in-place call's result goes into its tensor (whose graph then leads to ``out``)."""
    if _in_place(name) and args and isinstance(args[0], torch.Tensor):
        args[0].copy_(out)
        return args[0]
    return out


def _out_of_place(name: str, func: Callable) -> Callable:
    if name in _IN_PLACE_DUNDERS:
        return getattr(torch.Tensor, "__" + name[3:])
    if _in_place(name):
        return getattr(torch.Tensor, name[:-1])
    return func


_INPLACE_SIGNATURES: dict[Any, inspect.Signature | None] = {}


def _inplace_signature(func: Callable) -> inspect.Signature | None:
    """``func``'s signature when it takes ``inplace`` (F.relu and the like), else None."""
    try:
        return _INPLACE_SIGNATURES[func]
    except (KeyError, TypeError):
        pass
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and "inplace" not in sig.parameters:
        sig = None
    try:
        _INPLACE_SIGNATURES[func] = sig
    except TypeError:
        pass
    return sig


def _elementwise(func: Callable, call_args: tuple, call_kwargs: dict, pos: int | str
                 ) -> tuple[Callable, bool]:
    """``func`` as a function of its argument at ``pos`` alone (``inplace`` off), and whether it
    is pure (no tensor arguments of its own, so that it applies to any subset of entries)."""
    kwargs = dict(call_kwargs)
    if "inplace" in kwargs:
        kwargs["inplace"] = False
    args = list(call_args)
    sig = _inplace_signature(func)
    if sig is not None:
        bound = sig.bind(*args, **kwargs)
        bound.arguments["inplace"] = False
        args, kwargs = list(bound.args), dict(bound.kwargs)
    others = [a for i, a in enumerate(args) if i != pos] + [
        a for k, a in kwargs.items() if k != pos]
    pure = not any(isinstance(a, torch.Tensor) and a.dim() > 0 for a in others)

    def f(t: torch.Tensor) -> torch.Tensor:
        if isinstance(pos, int):
            a = list(args)
            a[pos] = t
            return func(*a, **kwargs)
        return func(*args, **{**kwargs, pos: t})

    return f, pure


def _unary_rule(mode: SecantMode, call: _Call, name: str, func, args, kwargs, kind: str,
                pos: int | str = 0, f: Callable | None = None, pure: bool | None = None):
    z = args[pos] if isinstance(pos, int) else kwargs[pos]
    if len(call.paths) != 1 or call.paths[0] is not z:
        raise _Fallback
    if f is None:
        f, pure = _elementwise(_out_of_place(name, func), args, kwargs, pos)
    zd = z.detach()
    with torch.no_grad():
        y = f(zd)
    if not isinstance(y, torch.Tensor) or y.shape != zd.shape or not y.is_floating_point():
        raise _Fallback
    slope = torch.empty_like(y)
    v = mode._rows_view(zd, z)
    if not pure or v is None:
        za = call.start(z)
        with torch.no_grad():
            _pair_slopes(za, f(za), zd, y, f, kind, slope, pure=False)
    else:
        # Row k's piece starts at row k - 1: slices of the rows, no shifted copies.
        yv = y.movedim(mode._axis(z) or 0, 0).unflatten(0, v.shape[:2])
        sv = slope.movedim(mode._axis(z) or 0, 0).unflatten(0, v.shape[:2])
        with torch.no_grad():
            if v.shape[0] > 1:
                _pair_slopes(v[:-1], yv[:-1], v[1:], yv[1:], f, kind, sv[1:])
            first, extra = mode._edge_rows(call.slot, 0, v)
            if first is None:
                sv[:1] = _derivative(f, v[:1]).to(sv.dtype)
            else:
                _pair_slopes(first, f(first), v[:1], yv[:1], f, kind, sv[:1])
            for i, start in extra:
                _pair_slopes(start, f(start), v[i : i + 1], yv[i : i + 1], f, kind,
                             sv[i : i + 1])
    return _finish(name, args, _Slope.apply(z, y, slope))


def _clamp_rule(mode, call, name, func, args, kwargs):
    return _unary_rule(mode, call, name, func, args, kwargs, "unit")


def _pow_rule(mode, call, name, func, args, kwargs):
    base = args[0] if args else kwargs.get("input", kwargs.get("self"))
    if isinstance(base, torch.Tensor) and call.index(base) is not None:
        return _unary_rule(mode, call, name, func, args, kwargs, "smooth")
    # A constant raised to a path-dependent power.
    exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
    if not isinstance(exponent, torch.Tensor):
        raise _Fallback
    return _unary_rule(mode, call, name, func, args, kwargs, "smooth",
                       pos=1 if len(args) > 1 else "exponent")


def _rpow_rule(mode, call, name, func, args, kwargs):
    other = args[1]
    return _unary_rule(mode, call, name, func, args, kwargs, "smooth",
                       f=lambda t: torch.pow(other, t), pure=not isinstance(other, torch.Tensor))


def _rdiv_rule(mode, call, name, func, args, kwargs):
    other = args[1]
    return _unary_rule(mode, call, name, func, args, kwargs, "smooth",
                       f=lambda t: other / t, pure=not isinstance(other, torch.Tensor))


def _div_rule(mode, call, name, func, args, kwargs):
    if kwargs.get("rounding_mode") is not None or len(args) > 2:
        raise _Fallback
    u = args[0]
    v = args[1] if len(args) > 1 else kwargs["other"]
    r = _unary(torch.reciprocal, "smooth", call.pair(v))
    out = _product(call.pair(u), r).b
    return _finish(name, args, out)


_MUL = frozenset("mul mul_ multiply __mul__ __rmul__ __imul__".split())


def _multilinear_rule(mode, call, name, func, args, kwargs):
    if name in _MUL and len(args) + len(kwargs) == 2:
        other = args[1] if len(args) > 1 else kwargs.get("other")
        if isinstance(other, torch.Tensor):
            out = _product(call.pair(args[0]), call.pair(other)).b
            return _finish(name, args, out)
    # Two path-dependent factors: the gradient at the means is exact.
    out = mode._midpoint(call, _out_of_place(name, func).__name__, _out_of_place(name, func),
                         args, kwargs, exact=mode._factors(name, args, kwargs) <= 2)
    return _finish(name, args, out)


_BINARY_SELECT = frozenset("maximum minimum fmax fmin".split())


def _select_rule(mode, call, name, func, args, kwargs):
    if "max_pool" in name:
        return _max_pool_rule(call, name, args, kwargs)
    other = args[1] if len(args) > 1 else kwargs.get("other")
    lower = name in ("min", "amin", "minimum", "fmin")
    if name in _BINARY_SELECT or isinstance(other, torch.Tensor):
        # Elementwise between two tensors: the larger of two candidates per entry.
        if not isinstance(other, torch.Tensor) or len(args) + len(kwargs) != 2:
            raise _Fallback
        shape = torch.broadcast_shapes(args[0].shape, other.shape)
        both = _lin(lambda s, t: torch.stack([s.expand(shape), t.expand(shape)], -1),
                    call.pair(args[0]), call.pair(other))
        if lower:
            both = _lin(torch.neg, both)
        out = _lin(lambda t: t.squeeze(-1), _select_max(both, -1)[0])
        return (_lin(torch.neg, out) if lower else out).b
    act = _activation(call.fused) if call.fused is not None else None
    if len(call.paths) != (1 if call.fused is None else 2):
        raise _Fallback
    x = call.pair(args[0] if act is None else call.fused[1])
    nd = args[0].dim()
    a = _bind(name, func, "input, dim=None, keepdim=False", args, kwargs)
    dim = a["dim"]
    if dim is None or (isinstance(dim, (list, tuple)) and not dim):
        dims: tuple[int, ...] = tuple(range(nd))
    else:
        dims = tuple(int(d) for d in (dim if isinstance(dim, (list, tuple)) else (dim,)))
    dims = tuple(sorted({d % nd for d in dims})) if nd else ()
    keepdim = bool(a["keepdim"])
    if lower:
        x = _lin(torch.neg, x)
    # The reduced axes last, as one: a maximum along the last axis.
    keep = [d for d in range(nd) if d not in dims]
    flat = _lin(lambda t: t.permute(*keep, *dims).reshape(*[t.shape[d] for d in keep], -1), x)
    out, ib = _select_max(flat, -1)
    shape = ([1 if d in dims else args[0].shape[d] for d in range(nd)] if keepdim
             else [args[0].shape[d] for d in keep])
    value = _lin(lambda t: t.reshape(shape), out)
    if lower:
        value = _lin(torch.neg, value)
    if act is not None:
        value = _unary(act[0], act[1], value)
    if name in ("max", "min") and dim is not None:
        kind = torch.return_types.max if name == "max" else torch.return_types.min
        return kind((value.b, ib.reshape(shape)))
    return value.b


_POOL_SPECS = {
    "max_pool": "input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, "
                "return_indices=False",
    "adaptive_max_pool": "input, output_size, return_indices=False",
}


def _activation(fused: tuple) -> tuple[Callable, str] | None:
    """The fused activation as a pure elementwise function and its kind (None: not pure, or a
    leaky ReLU whose negative slope makes it decrease)."""
    _, z, name, func, args, kwargs = fused
    f, pure = _elementwise(_out_of_place(name, func), args, kwargs, 0)
    if not pure or (name == "leaky_relu" and float(
            args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)) < 0):
        return None
    return f, _UNARY[name]


def _max_pool_rule(call: _Call, name: str, args: tuple, kwargs: dict):
    base = name.removesuffix("_with_indices")
    family = "adaptive_max_pool" if base.startswith("adaptive") else "max_pool"
    dims = int(base[-2])
    pool = getattr(F, f"{base}_with_indices")
    a = _bind(base, None, _POOL_SPECS[family], args, kwargs)
    indices = a.pop("return_indices") or name.endswith("_with_indices")
    x = a.pop("input")
    if call.index(x) is None:
        raise _Fallback
    act = _activation(call.fused) if call.fused is not None else None
    source = call.fused[1] if call.fused is not None and act is not None else x
    if len(call.paths) != (1 if call.fused is None else 2):
        raise _Fallback
    xp = call.pair(source)
    with torch.no_grad():
        yb, ib = pool(source.detach(), **a)
        _, ia = pool(xp.a, **a)
    flat = _lin(lambda t: t.flatten(-dims), xp)
    out = _crossing(flat, ia.flatten(-dims), ib.flatten(-dims))
    out = _lin(lambda t: t.view(yb.shape), out)
    if act is not None:
        out = _unary(act[0], act[1], out)
        if indices:
            with torch.no_grad():
                ib = pool(x.detach(), **a)[1]
    return (out.b, ib) if indices else out.b


def _capture_call(call: _Call, name: str, func, args: tuple, kwargs: dict):
    """A call of the baselines' capture pass: the model's own value, without writing over an
    activation's input where the secant pass would not (a max may fuse with it)."""
    if name in _UNARY and not _in_place(name) and args and isinstance(args[0], torch.Tensor):
        f, _ = _elementwise(func, args, kwargs, 0)
        return f(args[0])
    return func(*args, **kwargs)


_SOFTMAX_SPEC = "input, dim=None, _stacklevel=3, dtype=None"


def _softmax_rule(mode, call, name, func, args, kwargs):
    if name == "logsumexp":
        a = _bind(name, func, "input, dim, keepdim=False", args, kwargs)
        x = call.pair(a["input"])
        dims = a["dim"]
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        c = _shared_max(x, dims)
        e = _unary(torch.exp, "smooth", _lin(lambda t: t - c, x))
        total = _lin(lambda t: t.sum(dims, keepdim=True), e)
        out = _lin(lambda t: t + c, _unary(torch.log, "smooth", total))
        if not a["keepdim"]:
            out = _lin(lambda t: t.squeeze(dims), out)
        return out.b
    a = _bind("softmax", F.softmax, _SOFTMAX_SPEC, args, kwargs)
    if a["dim"] is None or len(call.paths) != 1:
        raise _Fallback
    x = call.pair(a["input"])
    if a["dtype"] is not None:
        x = _lin(lambda t: t.to(a["dtype"]), x)
    if name == "softmin":
        x = _lin(torch.neg, x)
    return _softmax(x, int(a["dim"]), log=name == "log_softmax").b


def _affine(y: _Pair, weight: Any, bias: Any, shape: tuple) -> _Pair:
    if weight is not None:
        y = _lin(lambda t, w: t * w.reshape(shape), y, weight)
    if bias is not None:
        y = _lin(lambda t, b: t + b.reshape(shape), y, bias)
    return y


def _norm_rule(mode, call, name, func, args, kwargs):
    """The normalisations: the normalising map by ``_Nodes`` (exact on the piece's change, its
    average gradient by Gauss-Legendre), then the affine part, which is linear."""
    if name == "layer_norm":
        a = _bind(name, func, "input, normalized_shape, weight=None, bias=None, eps=1e-05",
                  args, kwargs)
        shape = tuple(a["normalized_shape"])

        def core(t):
            return F.layer_norm(t, shape, None, None, a["eps"])
    elif name == "rms_norm":
        a = _bind(name, func, "input, normalized_shape, weight=None, eps=None", args, kwargs)
        a["bias"] = None
        shape = tuple(a["normalized_shape"])

        def core(t):
            return F.rms_norm(t, shape, None, a["eps"])
    elif name == "group_norm":
        a = _bind(name, func, "input, num_groups, weight=None, bias=None, eps=1e-05",
                  args, kwargs)
        shape = (a["input"].shape[1],) + (1,) * (a["input"].dim() - 2)

        def core(t):
            return F.group_norm(t, a["num_groups"], None, None, a["eps"])
    elif name == "instance_norm":
        a = _bind(name, func, "input, running_mean=None, running_var=None, weight=None, "
                  "bias=None, use_input_stats=True, momentum=0.1, eps=1e-05", args, kwargs)
        shape = (a["input"].shape[1],) + (1,) * (a["input"].dim() - 2)

        def core(t):
            return F.instance_norm(t, eps=a["eps"])
    else:
        # batch_norm with batch statistics mixes the rows of a batch: no rule.
        raise _Fallback
    z = a["input"]
    if len(call.paths) != 1 or call.paths[0] is not z:
        raise _Fallback
    axis = mode._axis(z)
    if mode._rows_view(z) is None or axis is None:
        raise _Fallback
    y = _Nodes.apply(z, call.start(z), core, axis, mode._rows or 1)
    if a["weight"] is not None:
        y = y * a["weight"].reshape(shape)
    if a["bias"] is not None:
        y = y + a["bias"].reshape(shape)
    return y


def _glu_rule(mode, call, name, func, args, kwargs):
    a = _bind(name, func, "input, dim=-1", args, kwargs)
    x = call.pair(a["input"])
    dim = int(a["dim"])
    first = _lin(lambda t: t.chunk(2, dim)[0], x)
    second = _lin(lambda t: t.chunk(2, dim)[1], x)
    return _product(first, _unary(torch.sigmoid, "smooth", second)).b


_SDPA_SPEC = ("query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, "
              "enable_gqa=False")


def _sdpa_rule(mode, call, name, func, args, kwargs):
    a = _bind(name, func, _SDPA_SPEC, args, kwargs)
    q, k, v = (call.pair(a[key]) for key in ("query", "key", "value"))
    query = a["query"]
    if a["dropout_p"] or (a["is_causal"] and a["attn_mask"] is not None):
        raise _Fallback
    if isinstance(a["attn_mask"], torch.Tensor) and call.index(a["attn_mask"]) is not None:
        raise _Fallback
    if a["enable_gqa"] and a["key"].shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // a["key"].shape[-3]
        k = _lin(lambda t: t.repeat_interleave(rep, -3), k)
        v = _lin(lambda t: t.repeat_interleave(rep, -3), v)
    mask = _additive_mask(a["attn_mask"], query.dtype, keep_true=True)
    if a["is_causal"]:
        length, source = query.shape[-2], a["key"].shape[-2]
        causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        mask = _additive_mask(causal, query.dtype, keep_true=True)
    scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(query.shape[-1])
    return _attention(q, k, v, mask, float(scale))[0].b


def _mha_rule(mode, call, name, func, args, kwargs):
    a = _bind(name, func, "", args, kwargs)
    if (a["bias_k"] is not None or a["bias_v"] is not None or a["add_zero_attn"]
            or a.get("static_k") is not None or a.get("static_v") is not None
            or (a["dropout_p"] and a["training"]) or (a.get("is_causal") and a["attn_mask"]
                                                      is None)):
        raise _Fallback
    for key in ("attn_mask", "key_padding_mask"):
        if isinstance(a[key], torch.Tensor) and call.index(a[key]) is not None:
            raise _Fallback
    query, key_t, value = a["query"], a["key"], a["value"]
    batched = query.dim() == 3
    q, k, v = (call.pair(t) for t in (query, key_t, value))
    if not batched:
        q, k, v = (_lin(lambda t: t.unsqueeze(1), p) for p in (q, k, v))
    length, batch, embed = (query.unsqueeze(1) if not batched else query).shape
    heads = int(a["num_heads"])
    head = embed // heads
    if a["use_separate_proj_weight"]:
        weights = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
    else:
        weights = a["in_proj_weight"].chunk(3)
    biases = (None,) * 3 if a["in_proj_bias"] is None else a["in_proj_bias"].chunk(3)
    q, k, v = (_lin(lambda t, w=w, b=b: F.linear(t, w, b), p)
               for p, w, b in zip((q, k, v), weights, biases, strict=True))
    q, k, v = (_lin(lambda t: t.reshape(t.shape[0], batch * heads, head).transpose(0, 1), p)
               for p in (q, k, v))
    source = k.b.shape[1]
    mask = _additive_mask(a["attn_mask"], query.dtype, keep_true=False)
    if mask is not None and mask.dim() == 2:
        mask = mask.unsqueeze(0)
    padding = a["key_padding_mask"]
    if padding is not None:
        if not batched:
            padding = padding.unsqueeze(0)
        pad = _additive_mask(padding, query.dtype, keep_true=False)
        assert pad is not None
        pad = pad.view(batch, 1, 1, source).expand(-1, heads, -1, -1).reshape(
            batch * heads, 1, source)
        mask = pad if mask is None else mask + pad
    out, p = _attention(q, k, v, mask, 1.0 / math.sqrt(head))
    out = _lin(lambda t: t.transpose(0, 1).reshape(length * batch, embed), out)
    out = _lin(lambda t: F.linear(t, a["out_proj_weight"], a["out_proj_bias"]).view(
        length, batch, -1), out)
    result = out.b if batched else out.b.squeeze(1)
    if not a["need_weights"]:
        return result, None
    w = p.b.view(batch, heads, length, source)
    if a.get("average_attn_weights", True):
        w = w.mean(1)
    return result, (w if batched else w.squeeze(0))


def _where_rule(mode, call, name, func, args, kwargs):
    """A selection by a path-dependent condition: linear in the branches while the condition
    holds still over the piece; where it flips, the jump has no secant relation."""
    cond = args[0] if name == "where" else (args[1] if len(args) > 1 else kwargs["mask"])
    with torch.no_grad():
        if not torch.equal(call.start(cond), cond.detach()):
            mode.unhandled.add(name)
    return func(*args, **kwargs)


_RuleFn = Callable[[SecantMode, _Call, str, Any, tuple, dict], Any]
_RULES: dict[str, _RuleFn] = {
    **dict.fromkeys(_CLAMP, _clamp_rule),
    **dict.fromkeys(_POW, _pow_rule),
    **dict.fromkeys(_RPOW, _rpow_rule),
    **dict.fromkeys(_RDIV, _rdiv_rule),
    **dict.fromkeys(_DIV, _div_rule),
    **dict.fromkeys(_SELECT, _select_rule),
    **dict.fromkeys(("softmax", "log_softmax", "softmin", "logsumexp"), _softmax_rule),
    **dict.fromkeys(("layer_norm", "rms_norm", "group_norm", "instance_norm", "batch_norm"),
                    _norm_rule),
    "glu": _glu_rule,
    "scaled_dot_product_attention": _sdpa_rule,
    "multi_head_attention_forward": _mha_rule,
    **dict.fromkeys(_WHERE, _where_rule),
}


#: PyTorch function name -> operation class, in the vocabulary every backend shares
#: (``igkit.core.secant_rules.CLASSES``); the sets above are its parts.
OP_CLASSES: dict[str, str] = {
    **dict.fromkeys(_NO_GRADIENT | _PLAIN, "no_gradient"),
    **dict.fromkeys(_LINEAR, "linear"),
    **_UNARY,
    **dict.fromkeys(_CLAMP, "unit"),
    **dict.fromkeys(_POW | _RPOW | _RDIV, "smooth"),
    **dict.fromkeys(_DIV, "quotient"),
    **dict.fromkeys(_MULTILINEAR, "multilinear"),
    **dict.fromkeys(_SELECT, "select"),
    **dict.fromkeys(_WHERE, "condition"),
    **dict.fromkeys(("softmax", "log_softmax", "softmin", "logsumexp"), "softmax"),
    **dict.fromkeys(("layer_norm", "rms_norm", "group_norm", "instance_norm"), "normalization"),
    "batch_norm": "batch_norm",
    "glu": "multilinear",
    **dict.fromkeys(("scaled_dot_product_attention", "multi_head_attention_forward"),
                    "attention"),
}


def captured_bytes(captured: list) -> int:
    """The memory a capture pass's ``after`` holds."""
    return sum(t.numel() * t.element_size() for row in captured for t in row if t is not None)


def interval_seeds(
    out: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    ends: torch.Tensor,
    before: torch.Tensor | None,
    joins: Sequence[tuple[int, torch.Tensor]] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeds on the model output for the secant backward pass, and the scores.

    The explained score ``s = transform(out)[target]`` may itself be nonlinear in the output
    (softmax). On the piece from row ``k - 1`` to row ``k`` the seed is the mean of the score's
    output gradients at both ends, corrected along the output's change so that
    ``seed . (out[k] - out[k-1]) = s[k] - s[k-1]`` holds exactly: the transform's curvature then
    costs an error of the square of the piece while completeness stays exact.

    Args:
        out: Model outputs ``(rows, C)``, detached.
        transform: Output transform ``(rows, C) -> (rows, C')``.
        target: Class per row.
        ends: Bool per row: row ``k`` ends a piece.
        before: The output ``(1, C)`` of the previous batch's last row (the first row's
            piece starts there), or ``None``.
        joins: ``(row, output (1, C))``: that row's piece starts at this output instead.

    Returns:
        ``(seeds (rows, C), score changes (rows,), scores (rows,), the joins' start scores)``;
        rows that end no piece get a zero seed and a zero change.
    """
    from igkit.backends.base import check_output_shape

    o = out.detach().to(torch.float64)
    # Where each row's piece starts: the row before, the previous batch's last, or a join.
    start = torch.empty_like(o)
    start[1:] = o[:-1]
    start[:1] = o[:1] if before is None else before.detach().to(torch.float64)
    for i, j_out in joins:
        start[i : i + 1] = j_out.detach().to(torch.float64)
    both = torch.cat([o, start]).requires_grad_(True)
    rows = o.shape[0]
    with torch.enable_grad():
        scores = check_output_shape(transform(both), 2 * rows)
        scores = scores.gather(1, torch.cat([target, target]).view(-1, 1)).squeeze(1)
        (jac,) = torch.autograd.grad(scores.sum(), both, allow_unused=True)
    if jac is None:
        jac = torch.zeros_like(both)
    scores = scores.detach()
    mean = 0.5 * (jac[:rows] + jac[rows:])
    d_out = o - start
    change = scores[:rows] - scores[rows:]
    norm2 = (d_out * d_out).sum(1)
    fix = torch.where(
        norm2 > 0, (change - (mean * d_out).sum(1)) / torch.where(norm2 > 0, norm2, 1.0), 0.0
    )
    mask = ends.to(torch.float64)
    seeds = (mean + fix[:, None] * d_out) * mask[:, None]
    at_joins = scores[rows:][[i for i, _ in joins]]
    return seeds, change * mask, scores[:rows], at_joins
