"""The rules themselves: exact weights, exact nodes, exact polynomial degree."""

from __future__ import annotations

import numpy as np
import pytest

from igkit import available_methods, nodes_and_weights
from igkit.core.quadrature import get_rule

METHODS = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre",
           "fejer"]


def test_every_documented_method_is_registered():
    assert set(METHODS) <= set(available_methods())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [2, 3, 7, 50, 256])
def test_weights_sum_to_one_and_nodes_lie_in_unit_interval(method, n):
    a, w = nodes_and_weights(method, n)
    assert a.shape == w.shape == (n,)
    assert abs(w.sum() - 1.0) < 1e-13
    assert np.all((a >= 0) & (a <= 1))
    assert np.all(w > 0)


@pytest.mark.parametrize("n", [1, 4, 9])
def test_riemann_rules_match_their_definitions(n):
    k = np.arange(n)
    a, w = nodes_and_weights("riemann_left", n)
    np.testing.assert_array_equal(a, k / n)
    a, w = nodes_and_weights("riemann_right", n)
    np.testing.assert_array_equal(a, (k + 1) / n)
    a, w = nodes_and_weights("riemann_middle", n)
    np.testing.assert_array_equal(a, (k + 0.5) / n)
    np.testing.assert_array_equal(w, np.full(n, 1 / n))


@pytest.mark.parametrize("n", [2, 3, 11])
def test_trapezoid_gives_half_weight_to_the_ends(n):
    a, w = nodes_and_weights("riemann_trapezoid", n)
    h = 1 / (n - 1)
    np.testing.assert_allclose(a, np.arange(n) * h, rtol=0, atol=1e-15)
    assert w[0] == w[-1] == pytest.approx(h / 2, abs=1e-16)
    np.testing.assert_allclose(w[1:-1], h, rtol=0, atol=1e-16)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 16])
def test_gauss_legendre_is_exact_to_degree_2n_minus_1_and_not_beyond(n):
    a, w = nodes_and_weights("gauss_legendre", n)
    for degree in range(2 * n):
        assert abs(w @ a**degree - 1 / (degree + 1)) < 1e-13, degree
    # Degree 2n fails: the square of the polynomial whose roots are the nodes has a positive
    # integral, which the rule sees as exactly zero.
    fine_a, fine_w = nodes_and_weights("gauss_legendre", 2 * n + 2)
    node_poly_sq = lambda t: np.prod(t[:, None] - a[None, :], axis=1) ** 2  # noqa: E731
    assert w @ node_poly_sq(a) == 0.0
    assert fine_w @ node_poly_sq(fine_a) > 0.0


def test_integral_of_3t2_at_25_steps():
    # PAIR saliency's rule gives 1.021 here; the exact value is 1.
    f = lambda t: 3 * t**2  # noqa: E731
    a, w = nodes_and_weights("gauss_legendre", 25)
    assert w @ f(a) == pytest.approx(1.0, abs=1e-14)
    a, w = nodes_and_weights("riemann_trapezoid", 25)
    assert w @ f(a) == pytest.approx(1 + 1 / (2 * 24**2), abs=1e-14)  # trapezoid error h^2/2
    a, w = nodes_and_weights("riemann_middle", 25)
    assert w @ f(a) == pytest.approx(1 - 1 / (4 * 25**2), abs=1e-14)  # midpoint error -h^2/4


@pytest.mark.parametrize("n", [1, 2, 3, 7, 15, 40])
def test_fejer_is_exact_to_degree_n_minus_1_and_not_beyond(n):
    a, w = nodes_and_weights("fejer", n)
    # The interior extrema of the Chebyshev polynomial T_{n+1}, mapped to [0, 1].
    np.testing.assert_allclose(a, (1 - np.cos(np.arange(1, n + 1) * np.pi / (n + 1))) / 2,
                               rtol=0, atol=1e-15)
    for degree in range(n):
        assert abs(w @ a**degree - 1 / (degree + 1)) < 1e-13, degree
    # Not beyond: the node polynomial (times t - 1/2 for odd n, whose symmetric rule is exact
    # for odd degree n too) vanishes on every node, but its integral does not.
    def beyond(t):
        return np.prod(t[:, None] - a[None, :], axis=1) * ((t - 0.5) if n % 2 else 1.0)

    fine_a, fine_w = nodes_and_weights("gauss_legendre", n + 2)
    assert w @ beyond(a) == 0.0
    assert abs(fine_w @ beyond(fine_a)) > 1e-3 * np.abs(beyond(fine_a)).max()


def test_fejer_converges_geometrically_on_an_analytic_integrand():
    # 1 / (1 + 25 (2t - 1)^2) (Runge's function): its poles at t = 1/2 +- i/10 make the error
    # of an interpolatory rule fall by a fixed factor per node once the nodes resolve them,
    # while the trapezoid's falls as 1/n^2.
    f = lambda t: 1 / (1 + 25 * (2 * t - 1) ** 2)  # noqa: E731
    exact = np.arctan(5) / 5

    def error(method, n):
        a, w = nodes_and_weights(method, n)
        return abs(w @ f(a) - exact)

    assert error("fejer", 63) < 1e-7 and error("fejer", 127) < 1e-12
    assert error("riemann_trapezoid", 63) > 100 * error("fejer", 63)
    assert error("riemann_trapezoid", 127) > 1e6 * error("fejer", 127)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle",
                                    "riemann_trapezoid", "fejer"])
def test_nested_rules_contain_their_coarser_nodes(method):
    rule = get_rule(method)
    n = 9 if method == "riemann_trapezoid" else 7 if method == "fejer" else 8
    coarse, _ = nodes_and_weights(method, n)
    fine, _ = nodes_and_weights(method, rule.nested(n))
    assert np.isclose(coarse[:, None], fine[None, :], rtol=0, atol=1e-14).any(axis=1).all()


@pytest.mark.parametrize(
    ("method", "steps", "message"),
    [
        ("simpson", 10, "unknown method 'simpson'"),
        ("riemann_trapezoid", 1, "needs steps >= 2"),
        ("gauss_legendre", 0, "needs steps >= 1"),
        ("gauss_legendre", 2.5, "positive integer"),
    ],
)
def test_bad_rule_requests_name_the_fix(method, steps, message):
    with pytest.raises(ValueError, match=message):
        nodes_and_weights(method, steps)


def test_gauss_legendre_nodes_are_computed_once_and_handed_out_as_copies(monkeypatch):
    # A call must not pay for the nodes again, and a caller that edits its arrays must not
    # change the next call's.
    from igkit.core import quadrature

    quadrature._legendre_on_unit_interval.cache_clear()
    calls = []
    build = quadrature.legendre_nodes
    monkeypatch.setattr(quadrature, "legendre_nodes", lambda n: calls.append(n) or build(n))
    a, w = nodes_and_weights("gauss_legendre", 37)
    a[:] = 0.0
    w[:] = 0.0
    b, v = nodes_and_weights("gauss_legendre", 37)
    assert calls == [37]
    x, u = np.polynomial.legendre.leggauss(37)
    np.testing.assert_allclose(b, (x + 1) / 2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(v, u / 2, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [*range(1, 65), 100, 127, 128, 129, 255, 256, 257, 333, 445,
                               466, 511, 512])
def test_newton_nodes_equal_numpys_eigenvalue_nodes(n):
    """The nodes igkit computes (Newton's method from asymptotic guesses) are numpy's
    ``leggauss`` (an eigenvalue problem) to 1e-13 on [-1, 1]; 445 and 466 were the worst n for
    the weights, where numpy's own are off by 1e-9 relative at the ends."""
    from igkit.core.quadrature import legendre_nodes

    x, w = legendre_nodes(n)
    ref_x, ref_w = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(x, ref_x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(w, ref_w, rtol=0, atol=1e-13)
    assert np.all(np.diff(x) > 0)
    np.testing.assert_array_equal(x, -x[::-1])


@pytest.mark.parametrize("n", [1000, 4096, 8192])
def test_large_gauss_legendre_rules_stay_exact(n):
    """At the step limit the rule is still a Gauss rule: weights sum to 1, the nodes are the
    roots of P_n (the recurrence's value there is rounding), and moments are exact."""
    from igkit.core.quadrature import MAX_STEPS, _legendre_and_derivative, legendre_nodes

    assert n <= MAX_STEPS
    a, w = nodes_and_weights("gauss_legendre", n)
    assert abs(w.sum() - 1.0) < 1e-13 and np.all(w > 0)
    assert np.all((a > 0) & (a < 1)) and np.all(np.diff(a) > 0)
    x, _ = legendre_nodes(n)
    p, dp = _legendre_and_derivative(n, x[n // 2:])
    assert np.max(np.abs(p / dp)) < 1e-15  # Newton's next step: the nodes are converged
    for degree in (1, 2, 7, 40):
        assert abs(w @ a**degree - 1 / (degree + 1)) < 1e-13, degree
    # Against the closed-form integral of a smooth function.
    assert abs(w @ np.cos(10 * a) - np.sin(10) / 10) < 1e-13


def test_every_rule_carries_its_strategy():
    from igkit.core.strategies import ADAPTIVE, POINT_RULE, SECANT, Strategy

    for method in available_methods():
        assert isinstance(get_rule(method).strategy, Strategy)
    for method in METHODS:
        assert get_rule(method).strategy is POINT_RULE
    assert get_rule("adaptive").strategy is ADAPTIVE
    assert get_rule("secant").strategy is SECANT
    assert SECANT.needs == ("interval_accumulation",) and SECANT.exact_only
    assert not POINT_RULE.needs and not ADAPTIVE.needs


def test_the_engine_dispatches_on_the_rules_strategy_not_its_name(monkeypatch, rng):
    """A rule registered with its own strategy is run by that strategy, whatever its name."""
    from analytic import NumpySession, cubic_ridge

    from igkit.core import quadrature
    from igkit.core.engine import run_integrated_gradients
    from igkit.core.strategies import Integrated, PathJob, Strategy

    class Midpoint(Strategy):
        """One gradient at alpha = 1/2 per path: the midpoint rule written as a strategy."""

        name = "one midpoint"
        runs: list[int] = []

        def run(self, job: PathJob) -> Integrated:
            self.runs.append(job.n_paths)
            taken = job.level(np.arange(job.n_paths), np.array([0.5]), np.array([1.0]))
            one = np.ones(job.n_paths, dtype=np.int64)
            return Integrated(job.diff * taken.sums, one, one)

    strategy = Midpoint()
    rule = quadrature.Rule("adaptive_lookalike", quadrature.get_rule("riemann_middle").build,
                           strategy=strategy)
    monkeypatch.setitem(quadrature._RULES, rule.name, rule)
    u = rng.normal(size=5)
    x, xb = rng.normal(size=(2, 5)), np.zeros((2, 5))
    # One node misses 1 %: tol=10 keeps the fixed-steps warning out of a test of dispatch.
    ours = run_integrated_gradients(NumpySession(cubic_ridge(u)), x, [("b", xb)], target=0,
                                    method=rule.name, steps=1, tol=10.0, batch_size=8)
    ref = run_integrated_gradients(NumpySession(cubic_ridge(u)), x, [("b", xb)], target=0,
                                   method="riemann_middle", steps=1, tol=10.0, batch_size=8)
    assert strategy.runs == [2]
    np.testing.assert_array_equal(ours.attributions, ref.attributions)
    assert ours.method == rule.name
