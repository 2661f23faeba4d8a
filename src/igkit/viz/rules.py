"""The quadrature rules in one dimension: Riemann sums, and pictures of the rule a run used.

:func:`riemann_nodes` and :func:`riemann_sum` are the tutorial's four Riemann rules as pure NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

__all__ = [
    "RIEMANN_RULES",
    "RiemannRule",
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
