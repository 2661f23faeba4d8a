"""The engine on analytic models through a NumPy session: exact results, counted model calls."""

from __future__ import annotations

import numpy as np
import pytest
from analytic import (
    NumpySession,
    cubic_ridge,
    cubic_ridge_ig,
    sigmoid_linear,
    sigmoid_linear_ig,
)

from igkit.core.engine import AutoSteps, NotConvergedWarning, run_integrated_gradients
from igkit.core.planner import pack_rows

ALL = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre"]


def _run(session, x, baseline, **kw):
    kw.setdefault("target", 0)
    kw.setdefault("tol", 0.01)
    kw.setdefault("batch_size", session.batch_size)
    return run_integrated_gradients(session, x, [("b", baseline)], **kw)


def test_cubic_integrand_is_exact_for_gauss_legendre_with_two_nodes(rng):
    u = rng.normal(size=6)
    x, xb = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    res = _run(NumpySession(cubic_ridge(u)), x, xb, method="gauss_legendre", steps=2)
    np.testing.assert_allclose(res.attributions, cubic_ridge_ig(u, x, xb), rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(res.delta) < 1e-9 * np.abs(res.score - res.baseline_score))


@pytest.mark.parametrize("method", ["riemann_left", "riemann_middle", "riemann_trapezoid"])
def test_riemann_rules_converge_to_the_closed_form_at_their_order(method, rng):
    u = rng.normal(size=5) / 3
    x, xb = rng.normal(size=(2, 5)), np.zeros((2, 5))
    exact = cubic_ridge_ig(u, x, xb)
    errs = []
    for n in (16, 32, 64):
        # The order is the subject; riemann_left misses 1 % at these counts (tol=1: no warning).
        res = _run(NumpySession(cubic_ridge(u)), x, xb, method=method, steps=n, tol=1.0)
        errs.append(np.linalg.norm(res.attributions - exact) / np.linalg.norm(exact))
    order = np.log2(errs[1] / errs[2])
    expected = 1 if method == "riemann_left" else 2
    assert abs(order - expected) < 0.15, (errs, order)


@pytest.mark.parametrize("method", ALL)
def test_sigmoid_of_linear_map_matches_closed_form(method, rng):
    w = rng.normal(size=8)
    x, xb = rng.normal(size=(2, 8)), rng.normal(size=(2, 8)) * 0.1
    res = _run(NumpySession(sigmoid_linear(w)), x, xb, method=method, steps=400)
    exact = sigmoid_linear_ig(w, x, xb)
    tol = 1e-12 if method == "gauss_legendre" else 3e-3
    err = np.linalg.norm(res.attributions - exact) / np.linalg.norm(exact)
    assert err < tol, err


def test_sigmoid_closed_form_agrees_with_fine_grid_reference(rng):
    # The closed form itself, checked against a float64 midpoint grid of 200k points.
    w = rng.normal(size=4)
    x, xb = rng.normal(size=(1, 4)), np.zeros((1, 4))
    model = sigmoid_linear(w)
    alphas = (np.arange(200_000) + 0.5) / 200_000
    grads = model.grad(xb + alphas[:, None] * (x - xb), None)
    reference = (x - xb) * grads.mean(axis=0)
    np.testing.assert_allclose(sigmoid_linear_ig(w, x, xb), reference, rtol=1e-9)


def test_rows_of_many_paths_fill_every_batch(rng):
    u = rng.normal(size=4)
    x = rng.normal(size=(5, 4))
    session = NumpySession(cubic_ridge(u), batch_size=16)
    _run(session, x, np.zeros_like(x), method="riemann_middle", steps=7, tol=1.0)
    # 5 paths x 7 points = 35 rows -> batches 16, 16, 3 (not 5 batches of 7).
    assert session.calls == [16, 16, 3]


@pytest.mark.parametrize("batch_size", [1, 3, 16, 1000])
def test_batch_size_does_not_change_the_result(batch_size, rng):
    u = rng.normal(size=4)
    x = rng.normal(size=(3, 4))
    ref = _run(NumpySession(cubic_ridge(u), batch_size=5), x, np.zeros_like(x),
               method="gauss_legendre", steps=9)
    res = _run(NumpySession(cubic_ridge(u), batch_size=batch_size), x, np.zeros_like(x),
               method="gauss_legendre", steps=9)
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=1e-13, atol=1e-15)


def test_out_of_memory_halves_the_batch_and_loses_nothing(rng):
    u = rng.normal(size=4)
    x = rng.normal(size=(3, 4))
    ref = _run(NumpySession(cubic_ridge(u), batch_size=32), x, np.zeros_like(x),
               method="gauss_legendre", steps=10)
    tight = NumpySession(cubic_ridge(u), batch_size=32, oom_above=5)
    res = _run(tight, x, np.zeros_like(x), method="gauss_legendre", steps=10)
    assert tight.oom_raised > 0 and max(tight.calls) <= 5 and sum(tight.calls) == 30
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=1e-13)


def test_several_baselines_average_their_paths(rng):
    w = rng.normal(size=5)
    x = rng.normal(size=(2, 5))
    b1, b2 = np.zeros_like(x), rng.normal(size=x.shape)
    res = run_integrated_gradients(
        NumpySession(sigmoid_linear(w)), x, [("a", b1), ("b", b2)], target=0,
        method="gauss_legendre", steps=64, tol=0.01, batch_size=16,
    )
    expected = (sigmoid_linear_ig(w, x, b1) + sigmoid_linear_ig(w, x, b2)) / 2
    np.testing.assert_allclose(res.attributions, expected, rtol=1e-10)
    f = sigmoid_linear(w).f
    np.testing.assert_allclose(res.baseline_score, (f(b1)[:, 0] + f(b2)[:, 0]) / 2)
    assert res.baselines == ("a", "b")


def test_delta_is_sum_of_attributions_minus_score_gap(rng):
    w = rng.normal(size=5)
    x = rng.normal(size=(4, 5))
    with pytest.warns(NotConvergedWarning, match="at a fixed 5 steps"):
        res = _run(NumpySession(sigmoid_linear(w)), x, np.zeros_like(x), method="riemann_left",
                   steps=5)
    gap = res.score - res.baseline_score
    np.testing.assert_allclose(res.delta, res.attributions.sum(axis=1) - gap, rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.relative_error, np.abs(res.delta) / np.abs(gap))
    np.testing.assert_array_equal(res.converged, res.relative_error <= 0.01)


@pytest.mark.parametrize(
    ("method", "tol"),
    [("riemann_trapezoid", 1e-3), ("riemann_left", 1e-2), ("gauss_legendre", 1e-3)],
)
def test_auto_refines_until_tolerance_and_reuses_nested_nodes(method, tol, rng):
    w = rng.normal(size=6) * 2
    x = rng.normal(size=(3, 6))
    session = NumpySession(sigmoid_linear(w), batch_size=64)
    res = _run(session, x, np.zeros_like(x), method=method, steps=AutoSteps(tol=tol), tol=tol)
    assert np.all(res.relative_error <= tol)
    exact = sigmoid_linear_ig(w, x, np.zeros_like(x))
    err = np.linalg.norm(res.attributions - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert np.all(err < 2 * tol), err
    assert sum(session.calls) == int(res.evaluations.sum())
    if method != "gauss_legendre":
        # Nested refinement evaluates every node once: the evaluations equal the final steps.
        np.testing.assert_array_equal(res.evaluations, res.steps)
    else:
        assert np.all(res.evaluations > res.steps)


def test_auto_reports_steps_per_input(rng):
    w = rng.normal(size=3)
    # The second input is almost at the baseline: the integrand is nearly constant there.
    x = np.stack([w * 10, np.full(3, 1e-3)])
    res = _run(NumpySession(sigmoid_linear(w)), x, np.zeros_like(x), method="riemann_trapezoid",
               steps=AutoSteps(tol=1e-4))
    assert res.steps[1] < res.steps[0]


def test_auto_warns_when_it_cannot_meet_tol(rng):
    w = rng.normal(size=3) * 5
    x = rng.normal(size=(1, 3)) * 3
    with pytest.warns(NotConvergedWarning, match="without meeting tol"):
        res = _run(NumpySession(sigmoid_linear(w)), x, np.zeros_like(x), method="riemann_left",
                   steps=AutoSteps(tol=1e-9, max_steps=32))
    assert res.steps[0] == 32


def test_pack_rows_keeps_order_and_weights():
    batches = list(pack_rows([0, 1], [np.array([0.1, 0.2]), np.array([0.3])],
                             [np.array([1.0, 2.0]), np.array([3.0])], 2))
    assert [b.path.tolist() for b in batches] == [[0, 0], [1]]
    assert [b.weight.tolist() for b in batches] == [[1.0, 2.0], [3.0]]


# --- declared capabilities, not probed methods ---------------------------------------------------


class _RowsNotDeclared(NumpySession):
    """Has an ``accumulate_rows`` method but does not declare it: the engine must not call it."""

    def accumulate_rows(self, rows, batch_size):
        raise AssertionError("accumulate_rows used without row_accumulation declared")


class _RowsDeclared(NumpySession):
    """Declares ``row_accumulation`` and takes whole levels, counting them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.levels = []

    @property
    def capabilities(self):
        from igkit.backends.base import Capabilities

        return Capabilities(row_accumulation=True)

    def accumulate_rows(self, rows, batch_size):
        self.levels.append(len(rows))
        for start in range(0, len(rows), batch_size):
            self.accumulate(rows.slice(start, start + batch_size))


def test_the_engine_reads_declared_capabilities_instead_of_probing(rng):
    u = rng.normal(size=6)
    x, xb = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    ref = _run(NumpySession(cubic_ridge(u)), x, xb, method="gauss_legendre", steps=5)
    undeclared = _RowsNotDeclared(cubic_ridge(u), batch_size=4)
    res = _run(undeclared, x, xb, method="gauss_legendre", steps=5)
    np.testing.assert_array_equal(res.attributions, ref.attributions)
    assert undeclared.calls == [4, 4, 4, 3]
    declared = _RowsDeclared(cubic_ridge(u), batch_size=4)
    res = _run(declared, x, xb, method="gauss_legendre", steps=5)
    np.testing.assert_array_equal(res.attributions, ref.attributions)
    assert declared.levels == [15]  # the whole level in one call


def test_a_method_whose_capability_is_not_declared_is_refused_before_any_model_call(rng):
    class Counting(NumpySession):
        def outputs(self, x):
            raise AssertionError("the model was called")

    session = Counting(cubic_ridge(rng.normal(size=4)))
    with pytest.raises(ValueError, match="method='secant' needs a session declaring "
                                         "interval_accumulation"):
        _run(session, np.ones((1, 4)), np.zeros((1, 4)), method="secant", steps=4)
    assert session.calls == []
