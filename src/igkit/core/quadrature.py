"""Quadrature rules on [0, 1]: where along the path to evaluate gradients, and how to weigh them.

Integrated Gradients is ``(x - x') * integral_0^1 grad F(x' + a (x - x')) da``. Every rule here
turns that integral into ``sum_k w_k grad F(x' + a_k (x - x'))`` with ``steps`` gradient
evaluations. Rules are registered by name (no ``if method == ...`` chains), so a new rule is one
decorated function. Each rule carries its integration strategy (``igkit.core.strategies``): the
point rules share ``POINT_RULE`` (fixed nodes, or nested refinement for ``steps="auto"``),
"adaptive" and "secant" bring their own, and the engine runs ``rule.strategy``.

The weights are exact, not conventional: every rule's weights sum to 1 (a constant integrand is
integrated exactly), the trapezoid rule gives its two end points half weight, and Gauss-Legendre
integrates polynomials of degree ``2n - 1`` exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from igkit.core.strategies import ADAPTIVE, POINT_RULE, SECANT, Strategy

__all__ = ["Rule", "available_methods", "get_rule", "nodes_and_weights", "register_rule"]


@dataclass(frozen=True)
class Rule:
    """A named quadrature rule.

    Attributes:
        name: The public name (the ``method=`` argument).
        build: ``n -> (alphas, weights)``, both float64 arrays of length ``n``.
        min_steps: The fewest evaluations the rule is defined for.
        nested: ``refine(n)`` gives the step count whose node set contains the nodes of ``n``, so a
            refinement re-uses every gradient already computed; ``None`` if the rule is not nested.
        includes_endpoints: The nodes contain alpha = 0 and alpha = 1, so the scores there (the
            completeness check's F(x') and F(x)) come free with the gradients.
        strategy: How the engine integrates with the rule (``igkit.core.strategies``):
            ``POINT_RULE`` evaluates ``build``'s nodes; ``ADAPTIVE`` places nodes per input
            from a pilot (its ``build`` refuses); ``SECANT`` reads ``steps`` as pieces of the
            path, ``build(n)`` giving the ``n + 1`` piece ends, each weighted by the width of
            the piece it starts, and the backend integrates each piece with one secant
            backward pass.
    """

    name: str
    build: Callable[[int], tuple[np.ndarray, np.ndarray]]
    min_steps: int = 1
    nested: Callable[[int], int] | None = None
    includes_endpoints: bool = False
    strategy: Strategy = POINT_RULE

    def nodes(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Alphas in [0, 1] and their weights (float64) for ``steps`` evaluations."""
        check_steps(self, steps)
        alphas, weights = self.build(int(steps))
        return np.asarray(alphas, dtype=np.float64), np.asarray(weights, dtype=np.float64)


_RULES: dict[str, Rule] = {}


def register_rule(
    name: str,
    *,
    min_steps: int = 1,
    nested: Callable[[int], int] | None = None,
    includes_endpoints: bool = False,
    strategy: Strategy = POINT_RULE,
) -> Callable[[Callable[[int], tuple[np.ndarray, np.ndarray]]], Callable]:
    """Registers ``build(n) -> (alphas, weights)`` as the rule ``name``, integrated by
    ``strategy``."""

    def decorate(build: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> Callable:
        if name in _RULES:
            raise ValueError(f"a quadrature rule named {name!r} is already registered")
        _RULES[name] = Rule(name, build, min_steps, nested, includes_endpoints, strategy)
        return build

    return decorate


def available_methods() -> list[str]:
    """The names accepted by ``method=``."""
    return sorted(_RULES)


def get_rule(name: str) -> Rule:
    """The rule registered as ``name``, or a ValueError that lists the valid names."""
    try:
        return _RULES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown method {name!r}; choose one of {', '.join(available_methods())}"
        ) from None


def nodes_and_weights(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Alphas in [0, 1] and their weights for ``steps`` gradient evaluations of ``method``."""
    return get_rule(method).nodes(steps)


def check_steps(rule: Rule, steps: object) -> None:
    """Raises a ValueError naming the fix when ``steps`` is not a valid count for ``rule``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be a positive integer or 'auto', got {steps!r}")
    if steps < rule.min_steps:
        raise ValueError(
            f"method {rule.name!r} needs steps >= {rule.min_steps}, got {steps}; "
            f"pass steps={rule.min_steps} or more"
        )


@register_rule("riemann_left", nested=lambda n: 2 * n)
def _left(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n) / n, np.full(n, 1.0 / n)


@register_rule("riemann_right", nested=lambda n: 2 * n)
def _right(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(1, n + 1) / n, np.full(n, 1.0 / n)


@register_rule("riemann_middle", nested=lambda n: 3 * n)
def _middle(n: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


@register_rule(
    "riemann_trapezoid", min_steps=2, nested=lambda n: 2 * n - 1, includes_endpoints=True
)
def _trapezoid(n: int) -> tuple[np.ndarray, np.ndarray]:
    # n points from 0 to 1 span n - 1 intervals; the end points carry half an interval each.
    # (Captum's rule gives every point 1/n and the ends 1/(2n): weights summing to 1 - 1/n.)
    alphas = np.linspace(0.0, 1.0, n)
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] *= 0.5
    return alphas, weights


@register_rule("gauss_legendre")
def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    alphas, weights = _legendre_on_unit_interval(n)
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=32)
def _legendre_on_unit_interval(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1], kept: numpy finds them as the eigenvalues of
    an n x n matrix (on 2 CPU cores 12 ms at n = 256, 0.5 s at n = 2048), a tenth of an H100 call
    at 256 steps if paid on every call."""
    x, w = np.polynomial.legendre.leggauss(n)
    # Map [-1, 1] to [0, 1]: alpha = (x + 1) / 2, weights halve with the interval.
    return (x + 1.0) / 2.0, w / 2.0


@register_rule("adaptive", min_steps=2, includes_endpoints=True, strategy=ADAPTIVE)
def _no_fixed_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    raise ValueError(
        "method 'adaptive' places its nodes per input from a pilot pass, so it has no fixed "
        "nodes; call igkit.integrated_gradients(..., method='adaptive')"
    )


@register_rule("secant", min_steps=1, includes_endpoints=True, strategy=SECANT)
def _piece_ends(n: int) -> tuple[np.ndarray, np.ndarray]:
    from igkit.core.pieces import uniform_pieces

    return uniform_pieces(n)
