"""The secant rules of ``method="secant"``: one table of operation classes for every backend.

On a piece ``[a, b]`` of the path every operation passes back a *secant relation*: a linear map
``J`` with ``J (input_b - input_a) = output_b - output_a``. Chained through the model, the
relations map the input's change to the score's change exactly (completeness of every piece, to
rounding), and where each operation's input moves linearly on the piece they are its exact
average gradient. Which relation an operation gets depends only on its *class*; each backend
maps its own operation names into the classes below (``torch_secant.OP_CLASSES`` by PyTorch
function name, ``jax_secant.OP_CLASSES`` by jaxpr primitive, ``tf_secant.RULES`` by TensorFlow
operation type), and ``tests/test_secant_conformance.py`` runs the same cases on every backend.

The NumPy functions here are the scalar formulas the backends implement on tensors, kept in one
place so that a test can check a backend against them on analytic cases.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CLASSES",
    "ELEMENTWISE",
    "crossing_share",
    "product_relation",
    "secant_slope",
    "small_move",
]

#: Operation class -> its relation on a piece. A backend's table maps names to these keys only.
CLASSES: dict[str, str] = {
    "linear": "its own gradient, exact (dense layers and convolutions with one path-dependent "
    "operand, sums, means, reshapes, slices, average pooling, inference batch norm, casts)",
    "unit": "elementwise, piecewise linear with slopes 0 and 1 (ReLU, ReLU6, hard tanh): the "
    "secant slope (f(z_b) - f(z_a)) / (z_b - z_a), the derivative where z did not move",
    "piecewise": "other piecewise-linear elementwise functions (leaky ReLU, abs, hard sigmoid): "
    "as 'unit'",
    "smooth": "smooth elementwise functions (sigmoid, tanh, GELU, SiLU, exp, log, rsqrt, "
    "reciprocal, x ** c): the secant slope, the midpoint derivative for a move below "
    "small_move(dtype) relative to z",
    "multilinear": "a product, matmul, einsum or convolution of two path-dependent operands: "
    "the gradient at the ends' means, u_b v_b - u_a v_a = mean(u) dv + mean(v) du exactly",
    "quotient": "u / v as u * (1 / v): the reciprocal's secant slope, then 'multilinear'",
    "square": "(u - v) ** 2 as the square of the difference ('smooth' on u - v)",
    "select": "maximum, max-pooling, max/amax and their min forms: each candidate gets the "
    "share of the piece on which it wins (the candidates' lines' upper envelope; for a window "
    "the winners at both ends and the point t* where their lines cross); a nondecreasing "
    "activation right before a max is fused into it, max f(z) = f(max z)",
    "condition": "a selection by a path-dependent condition (where, select): linear in the "
    "branches while the condition holds over the piece; where it flips, named as unhandled",
    "softmax": "softmax, log-softmax, logsumexp: exp, sum, reciprocal (or log) at both ends with "
    "one shift shared by the ends (the larger maximum), so the shift moves nothing",
    "normalization": "LayerNorm, GroupNorm, InstanceNorm, RMSNorm: compositions of the classes "
    "above (centring, variance as a mean of a product, rsqrt, product), or the normalising "
    "map's gradient averaged over the piece plus a rank-one term that makes it exact",
    "attention": "scaled dot-product attention: products of path-dependent operands and a "
    "softmax, as compositions",
    "stop_gradient": "a stopped value: a shift taken from a maximum (the stable softmax and "
    "logsumexp) is one value shared by both ends, anything else moves with the path and passes "
    "the gradient on (exact where, as in a variance around a stopped mean, its relation is "
    "what the composition needs)",
    "no_gradient": "outputs that carry no gradient (comparisons, indices, signs, shapes): "
    "evaluated at both ends for the operations that use them",
    "batch_norm": "batch normalisation: linear in inference mode; with batch statistics it "
    "mixes the rows of a batch and takes the fallback",
    "call": "nested programs (jit, custom derivative calls, checkpointing, partitioned calls): "
    "their own operations, each by its class",
    "control_flow": "loops and branches: run whole, by the fallback (or refused, TensorFlow)",
    "fallback": "anything else: its gradient at the midpoint of the piece's end inputs, never a "
    "refusal; completeness then measures a real error and the operation is named",
}

#: The elementwise classes (one secant slope per entry).
ELEMENTWISE = frozenset({"unit", "piecewise", "smooth"})


def small_move(dtype: np.dtype | str) -> float:
    """Relative moves of ``z`` below this take the midpoint derivative for a smooth function:
    there the quotient loses more digits to rounding than the derivative differs from the
    secant (about the cube root of the unit roundoff)."""
    return 1e-5 if np.dtype(dtype) == np.float64 else 1e-3


#: A piecewise-linear function's secant is "within rounding" of its derivative when they differ
#: by at most this many units of roundoff of the values involved (``|y_a| + |y_b| + |f'| *
#: (|z_a| + |z_b|)``). Where both ends lie on one linear piece and that holds, the slope is the
#: derivative: a move of a few ulps keeps no digits in ``(f(z_b) - f(z_a)) / dz`` in float32
#: (hard-sigmoid on a squeeze-excite gate: off by up to 8x). PyTorch's and JAX's secants apply it.
LINEAR_PIECE_ULPS = 16


def secant_slope(f, df, za: np.ndarray, zb: np.ndarray, kind: str) -> np.ndarray:
    """The elementwise secant slope of ``f`` from ``za`` to ``zb`` (``df``: its derivative) for
    the classes in ``ELEMENTWISE``."""
    za, zb = np.asarray(za), np.asarray(zb)
    dz = zb - za
    still = za == zb
    if kind == "smooth":
        still = still | (np.abs(dz) <= small_move(dz.dtype) * np.abs(za) + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (f(zb) - f(za)) / np.where(still, 1.0, dz)
    return np.where(still, df(0.5 * (za + zb)), slope)


def product_relation(ua, ub, va, vb) -> tuple[np.ndarray, np.ndarray]:
    """The factors of the product relation: ``d(u v) = mean(v) du + mean(u) dv`` exactly."""
    return 0.5 * (np.asarray(va) + vb), 0.5 * (np.asarray(ua) + ub)


def crossing_share(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Each candidate's share of the piece in ``max(x)`` over the last axis, where candidate
    ``i`` moves on the line from ``xa[..., i]`` to ``xb[..., i]``: the upper envelope of the
    lines, walked from the start's winner. The shares sum to 1, and ``shares . (xb - xa)`` is
    ``max(xb) - max(xa)`` exactly."""
    xa, xb = np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64)
    d = xb - xa
    share = np.zeros_like(xa)
    cur = xa.argmax(-1)[..., None]
    t = np.zeros(xa.shape[:-1] + (1,))
    for _ in range(xa.shape[-1]):
        den = d - np.take_along_axis(d, cur, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = np.where(den > 0, (np.take_along_axis(xa, cur, -1) - xa) / den, np.inf)
        cross = np.maximum(cross, t)
        nxt = cross.argmin(-1)[..., None]
        t_next = np.minimum(np.take_along_axis(cross, nxt, -1), 1.0)
        np.put_along_axis(share, cur, np.take_along_axis(share, cur, -1) + t_next - t, -1)
        cur = np.where(t_next >= 1.0, cur, nxt)
        t = t_next
    return share
