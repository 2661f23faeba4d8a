"""The quadrature rules in one dimension: Riemann sums, and pictures of the rule a run used.

:func:`riemann_nodes` and :func:`riemann_sum` are the tutorial's four Riemann rules as pure NumPy;
:func:`riemann_illustration` draws them side by side, and :func:`riemann_figure` the rule a run
used. Conventions of the figures: :mod:`igkit.viz.figures`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from igkit.viz._draw import _TITLE_SIZE, PathLike, _finish, _new_figure, _title

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RIEMANN_RULES",
    "RiemannRule",
    "riemann_figure",
    "riemann_illustration",
    "riemann_nodes",
    "riemann_sum",
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
            f"{name} Riemann sum, m = {steps}\n{value:.4f} (exact {exact:.4f}, "
            f"error {value - exact:+.4f})",
            fontsize=_TITLE_SIZE,
        )
        ax.set_xlabel("alpha")
    low, high = min(0.0, float(ys.min())), max(0.0, float(ys.max()))
    pad = 0.06 * (high - low if high > low else 1.0)
    axs[0].set_ylim(low - pad, high + pad)
    axs[0].set_ylabel("sin(pi alpha)" if default_fn else "f(alpha)")
    _title(fig, title)
    return _finish(fig, path)


def riemann_figure(method: str | None = None, steps: int | str | None = None) -> Figure:
    """The tutorial's Riemann-sum illustration, titled with the rule a run actually uses.

    The picture integrates ``sin(pi alpha)``, a stand-in for how one pixel's gradient varies
    along the path, with five intervals and the four Riemann rules, so the error of each rule is
    seen; the title names the run's own quadrature rule and step count when given.

    Args:
        method: The run's quadrature rule.
        steps: The run's step count (or "auto").

    Returns:
        The figure.
    """
    title = "Riemann sums of a 1-D stand-in for one pixel's gradient along the path"
    if method is not None:
        title += f"\n(the attributions here integrate with {method}"
        title += f", {steps} steps)" if steps is not None else ")"
    return riemann_illustration(steps=5, title=title)
