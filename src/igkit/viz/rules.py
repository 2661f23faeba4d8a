"""The quadrature rules in one dimension: Riemann sums, and pictures of the rule a run used.

:func:`riemann_nodes` and :func:`riemann_sum` are the tutorial's four Riemann rules as pure NumPy;
:func:`riemann_illustration` draws them side by side, and :func:`riemann_figure` the rule a run
used. Conventions of the figures: :mod:`igkit.viz.figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from igkit.viz._draw import _TITLE_SIZE, PathLike, _finish, _new_figure, _title, literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "AUTO_DRAWN_STEPS",
    "RIEMANN_RULES",
    "RiemannRule",
    "RuleSketch",
    "example_gradient",
    "example_score",
    "riemann_figure",
    "riemann_illustration",
    "riemann_nodes",
    "riemann_sum",
    "rule_sketch",
]

RiemannRule = Literal["left", "right", "midpoint", "trapezoid"]

#: The Riemann rules :func:`riemann_nodes` knows, in the order the tutorial draws them.
RIEMANN_RULES: tuple[str, ...] = ("left", "right", "midpoint", "trapezoid")


def riemann_nodes(
    rule: RiemannRule, steps: int, start: float = 0.0, end: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the tutorial's four Riemann rules on ``[start, end]``.

    ``left``/``right`` sample the left/right end of each of ``steps`` equal intervals,
    ``midpoint`` their centres, and ``trapezoid`` all ``steps + 1`` edges with half weight at the
    two ends. ``sum(weights * f(nodes))`` approximates the integral.

    Args:
        rule: ``"left"``, ``"right"``, ``"midpoint"`` or ``"trapezoid"``.
        steps: Number of intervals, at least 1.
        start: Lower limit.
        end: Upper limit.

    Returns:
        ``(nodes, weights)``, float64 arrays.

    Raises:
        ValueError: For an unknown rule or ``steps < 1``.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    h = (end - start) / steps
    edges = np.linspace(start, end, int(steps) + 1)
    if rule == "left":
        return edges[:-1], np.full(int(steps), h)
    if rule == "right":
        return edges[1:], np.full(int(steps), h)
    if rule == "midpoint":
        return (edges[:-1] + edges[1:]) / 2.0, np.full(int(steps), h)
    if rule == "trapezoid":
        w = np.full(int(steps) + 1, h)
        w[[0, -1]] = h / 2.0
        return edges, w
    raise ValueError(f"rule must be one of {', '.join(RIEMANN_RULES)}; got {rule!r}")


def riemann_sum(
    fn: Callable[[np.ndarray], np.ndarray],
    steps: int,
    rule: RiemannRule = "trapezoid",
    start: float = 0.0,
    end: float = 1.0,
) -> float:
    """The Riemann approximation of ``integral_start^end fn`` by :func:`riemann_nodes`.

    Args:
        fn: Vectorised function of one variable.
        steps: Number of intervals.
        rule: ``"left"``, ``"right"``, ``"midpoint"`` or ``"trapezoid"``.
        start: Lower limit.
        end: Upper limit.

    Returns:
        The approximation, a Python float.
    """
    nodes, weights = riemann_nodes(rule, steps, start, end)
    return float(np.sum(weights * np.asarray(fn(nodes), dtype=np.float64)))


def riemann_illustration(
    fn: Callable[[np.ndarray], np.ndarray] | None = None,
    steps: int = 5,
    *,
    start: float = 0.0,
    end: float = 1.0,
    exact: float | None = None,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The tutorial's picture of left, right, midpoint and trapezoid Riemann sums.

    Each panel draws ``fn`` on ``[start, end]``, the ``steps`` rectangles (or trapezoids) of one
    rule, its sample points, and its value against the exact integral, so the error of each rule
    is visible and stated.

    Args:
        fn: Vectorised function of one variable; ``sin(pi x)`` when None (integral ``2 / pi``
            on ``[0, 1]``), a stand-in for how one feature's gradient varies along the path.
        steps: Number of intervals.
        start: Lower limit.
        end: Upper limit.
        exact: The true integral; computed by a fine trapezoid rule when None (and ``fn`` is
            not the default).
        title: Figure title.
        path: Where to save the figure.

    Returns:
        The figure.
    """
    default_fn = fn is None
    f: Callable[[np.ndarray], np.ndarray] = (
        (lambda x: np.sin(np.pi * x)) if fn is None else fn
    )
    if exact is None:
        if default_fn and (start, end) == (0.0, 1.0):
            exact = 2.0 / np.pi
        else:
            fine, weights = riemann_nodes("trapezoid", 1 << 14, start, end)
            exact = float(np.sum(weights * np.asarray(f(fine), dtype=np.float64)))
    xs = np.linspace(start, end, 400)
    ys = np.asarray(f(xs), dtype=np.float64)
    h = (end - start) / steps
    names: dict[RiemannRule, str] = {
        "left": "Left", "right": "Right", "midpoint": "Midpoint", "trapezoid": "Trapezoidal"
    }

    fig = _new_figure(16.0, 4.4)
    axs = fig.subplots(1, 4, sharey=True)
    for ax, (rule, name) in zip(axs, names.items(), strict=True):
        nodes, weights = riemann_nodes(rule, steps, start, end)
        heights = np.asarray(f(nodes), dtype=np.float64)
        value = float(np.sum(weights * heights))
        ax.plot(xs, ys, color="C0", linewidth=1.5, zorder=3)
        if rule == "trapezoid":
            for i in range(steps):
                ax.fill(
                    [nodes[i], nodes[i], nodes[i + 1], nodes[i + 1]],
                    [0.0, heights[i], heights[i + 1], 0.0],
                    facecolor="C0", edgecolor="C0", alpha=0.25,
                )
        else:
            left = nodes - {"left": 0.0, "right": h, "midpoint": h / 2}[rule]
            ax.bar(left, heights, width=h, align="edge", color="C0", alpha=0.25, edgecolor="C0")
        ax.plot(nodes, heights, "o", color="C3", markersize=5, zorder=4, clip_on=False)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_title(
            literal(f"{name} Riemann sum, m = {steps}\n{value:.4f} (exact {exact:.4f}, "
                    f"error {value - exact:+.4f})"),
            fontsize=_TITLE_SIZE,
        )
        ax.set_xlabel("alpha")
    low, high = min(0.0, float(ys.min())), max(0.0, float(ys.max()))
    pad = 0.06 * (high - low if high > low else 1.0)
    axs[0].set_ylim(low - pad, high + pad)
    axs[0].set_ylabel("sin(pi alpha)" if default_fn else "f(alpha)")
    _title(fig, title)
    return _finish(fig, path)


# ------------------------------------------------------------------- the rule a run used

#: Steepness and centre of the example score ``F(alpha) = 1 / (1 + exp(-k (alpha - c)))``.
_EXAMPLE_K, _EXAMPLE_C = 12.0, 0.27

#: Rules drawn as trapezoids between consecutive nodes rather than as bars.
_TRAPEZOIDS = ("riemann_trapezoid", "adaptive")

#: Step count drawn for a run with ``steps="auto"`` (each input refines on its own).
AUTO_DRAWN_STEPS = 8

_RULE_NOTES = {
    "riemann_left": "bars of width 1/n, each with the gradient at its left end",
    "riemann_right": "bars of width 1/n, each with the gradient at its right end",
    "riemann_middle": "bars of width 1/n, each with the gradient at its centre",
    "riemann_trapezoid": "n points from 0 to 1, half weight at the two ends",
    "gauss_legendre": (
        "bars as wide as the weights, side by side, each holding its node; exact for "
        "polynomials up to degree 2n - 1"
    ),
    "fejer": (
        "bars as wide as the weights, each holding its node; the nodes of n are among those "
        "of 2n + 1, so a finer level keeps every gradient"
    ),
    "adaptive": (
        "a trapezoid pilot on uniform cells, then the other nodes where the gradient changes "
        "most between pilot nodes (placed per input in a run)"
    ),
    "secant": (
        "each piece's bar is the mean gradient on it, the secant slope of the score, so a piece "
        "is exact for one activation (a run places 32 or more pieces by a pilot)"
    ),
}

_RULE_NAMES = {
    "riemann_left": "left Riemann sum",
    "riemann_right": "right Riemann sum",
    "riemann_middle": "midpoint Riemann sum",
    "riemann_trapezoid": "trapezoidal rule",
    "gauss_legendre": "Gauss-Legendre rule",
    "fejer": "Fejer's second rule",
    "adaptive": "adaptive trapezoid rule",
    "secant": "secant rule",
}


def example_score(alpha: ArrayLike) -> np.ndarray:
    """The 1-D stand-in for a model's score along the path: a logistic that saturates."""
    return 1.0 / (1.0 + np.exp(-_EXAMPLE_K * (np.asarray(alpha, dtype=np.float64) - _EXAMPLE_C)))


def example_gradient(alpha: ArrayLike) -> np.ndarray:
    """Its derivative, the stand-in for one pixel's gradient: large while the score rises, near
    zero once it saturates. Its integral over ``[0, 1]`` is ``example_score(1) -
    example_score(0)``."""
    s = example_score(alpha)
    return _EXAMPLE_K * s * (1.0 - s)


class RuleSketch(NamedTuple):
    """One quadrature rule applied to :func:`example_gradient`, as :func:`riemann_figure` draws it.

    Attributes:
        method: The rule's name (``method=`` of :func:`igkit.integrated_gradients`).
        steps: Its step count (evaluations; pieces for ``secant``).
        nodes: Where the gradient is evaluated (piece ends for ``secant``).
        weights: Their weights; the estimate is ``sum(weights * gradient(nodes))`` (for
            ``secant``, the width of the piece each end starts, 0 on the last).
        bar_left: Left edges of the bars, one per term, or None where the rule is drawn as
            trapezoids between consecutive nodes (``riemann_trapezoid``, ``adaptive``).
        bar_width: Bar widths: the weights (Riemann, Gauss-Legendre) or the pieces (secant).
        bar_height: Bar heights, so that each bar's area is its term of the sum.
        value: The rule's estimate of the integral.
        exact: The integral.
    """

    method: str
    steps: int
    nodes: np.ndarray
    weights: np.ndarray
    bar_left: np.ndarray | None
    bar_width: np.ndarray | None
    bar_height: np.ndarray | None
    value: float
    exact: float


def rule_sketch(method: str, steps: int) -> RuleSketch:
    """The rule ``method`` with ``steps`` applied to the 1-D :func:`example_gradient`.

    Fixed rules use :func:`igkit.nodes_and_weights`; their bars tile ``[0, 1]`` in node order
    with widths equal to the weights (each Riemann bar has its node at its left end, right end
    or centre; each Gauss-Legendre node lies inside its bar). ``secant`` pieces are bars over
    each piece, as high as the gradient's mean on it, the secant slope of the score, so each
    piece is exact. ``adaptive`` places its nodes as the engine does, from a trapezoid pilot on
    this integrand.

    Raises:
        ValueError: For an unknown method or a step count it does not take.
    """
    from igkit.core.quadrature import nodes_and_weights

    n = int(steps)
    if method == "adaptive" and n < 2:
        raise ValueError(f"method 'adaptive' needs steps >= 2, got {n}")
    nodes, weights = (
        _adaptive_nodes(n) if method == "adaptive" else nodes_and_weights(method, n)
    )
    exact = float(example_score(1.0) - example_score(0.0))
    left = width = height = None
    if method == "secant":  # piece ends, each weighted by the piece it starts
        width = np.diff(nodes)
        left, height = nodes[:-1], np.diff(example_score(nodes)) / width
        value = float(np.sum(width * height))
    else:
        value = float(np.sum(weights * example_gradient(nodes)))
        if method not in _TRAPEZOIDS:
            width = weights
            left, height = np.cumsum(weights) - weights, example_gradient(nodes)
    return RuleSketch(method, n, nodes, weights, left, width, height, value, exact)


def _adaptive_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``method="adaptive"`` on the example: a trapezoid pilot, then sub-cells by roughness."""
    from igkit.core.adaptive import allocate, pilot_cells

    m = pilot_cells(n)
    grid = np.linspace(0.0, 1.0, m + 1)
    roughness = (np.diff(grid) * np.abs(np.diff(example_gradient(grid)))) ** (2.0 / 3.0)
    parts = allocate(roughness, n - (m + 1)) + 1
    cells = zip(grid[:-1], grid[1:], parts, strict=True)
    inner = [np.linspace(a, b, k, endpoint=False) for a, b, k in cells]
    nodes = np.concatenate([*inner, grid[-1:]])
    weights = np.zeros_like(nodes)
    weights[:-1] += np.diff(nodes) / 2.0
    weights[1:] += np.diff(nodes) / 2.0
    return nodes, weights


def riemann_figure(
    method: str | None = None, steps: int | str | None = None, *, path: PathLike | None = None
) -> Figure:
    """The quadrature rule a run used, on a 1-D stand-in for one pixel's gradient.

    Draws :func:`example_gradient` along the path and the rule's terms as :func:`rule_sketch`
    gives them: bars whose areas are the terms (Riemann sums, Gauss-Legendre, secant pieces) or
    trapezoids between consecutive nodes (trapezoid and adaptive rules), the evaluated nodes as
    dots, the estimate against the exact integral, and in the title the rule and step count.
    Without a method this is the tutorial's four Riemann sums (:func:`riemann_illustration`).

    Args:
        method: The run's quadrature rule (``method=`` of :func:`igkit.integrated_gradients`).
        steps: The run's step count; for ``"auto"`` or None :data:`AUTO_DRAWN_STEPS` are drawn.
        path: Where to save the figure.

    Returns:
        The figure.

    Raises:
        ValueError: For an unknown method or a step count it does not take.
    """
    if method is None:
        return riemann_illustration(steps=5, path=path)
    n = int(steps) if isinstance(steps, (int, np.integer)) else AUTO_DRAWN_STEPS
    sketch = rule_sketch(method, n)
    name = _RULE_NAMES.get(method, method)
    unit = "pieces" if method == "secant" else "steps"
    counted = f"{n} {unit}"
    if steps is not None and n != steps:
        counted = f"steps={steps}, refined per input; drawn with {counted}"

    fig = _new_figure(13.0, 5.2)
    ax = fig.subplots()
    _draw_sketch(ax, sketch)
    ax.set_title(
        f"{sketch.value:.6f} (exact {sketch.exact:.6f}, error {sketch.value - sketch.exact:+.2e})",
        fontsize=_TITLE_SIZE,
    )
    note = _RULE_NOTES.get(method, "the gradient is evaluated at the dots")
    ax.set_xlabel(literal(f"alpha: {note}"))
    _title(
        fig,
        f"The attributions integrate with the {name} ({counted}),\nshown on a 1-D stand-in for "
        "one pixel's gradient along the path",
    )
    return _finish(fig, path)


def _draw_sketch(ax: Any, sketch: RuleSketch) -> None:
    xs = np.linspace(0.0, 1.0, 400)
    ax.plot(xs, example_gradient(xs), color="C0", linewidth=1.5, zorder=3)
    nodes, values = sketch.nodes, example_gradient(sketch.nodes)
    edge = "C0" if nodes.size <= 64 else "none"
    if sketch.bar_left is not None:
        ax.bar(
            sketch.bar_left, sketch.bar_height, width=sketch.bar_width, align="edge",
            color="C0", alpha=0.25, edgecolor=edge,
        )
    else:
        for i in range(nodes.size - 1):
            ax.fill(
                [nodes[i], nodes[i], nodes[i + 1], nodes[i + 1]],
                [0.0, values[i], values[i + 1], 0.0],
                facecolor="C0", edgecolor=edge, alpha=0.25,
            )
    size = 5 if nodes.size <= 64 else 2
    ax.plot(nodes, values, "o", color="C3", markersize=size, zorder=4, clip_on=False)
    ax.axhline(0.0, color="0.4", linewidth=0.8)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylabel("gradient along the path")
