"""Agreement with Captum, the reference PyTorch implementation, and where its rule differs."""

from __future__ import annotations

import captum.attr as captum_attr
import numpy as np
import pytest
import torch

import igkit

# igkit name -> Captum's name for the same rule.
SAME_RULE = {
    "riemann_left": "riemann_left",
    "riemann_right": "riemann_right",
    "riemann_middle": "riemann_middle",
    "gauss_legendre": "gausslegendre",
}


def _model():
    torch.manual_seed(3)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Softplus(),
        torch.nn.Conv2d(8, 8, 3, stride=2), torch.nn.Tanh(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).double()


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(9)
    x = rng.random((2, 3, 10, 10))
    base = rng.random((2, 3, 10, 10)) * 0.2
    return _model(), x, base


def _captum(model, x, base, method, n):
    ig = captum_attr.IntegratedGradients(lambda t: torch.softmax(model(t), -1))
    attr, delta = ig.attribute(
        torch.as_tensor(x), baselines=torch.as_tensor(base), target=[1, 2], n_steps=n,
        method=method, return_convergence_delta=True,
    )
    return attr.detach().numpy(), delta.detach().numpy()


# Captum casts its step sizes to float32 before weighting float64 gradients, so even in float64
# the two agree only to float32 rounding of the weights (measured: 2e-16 to 5e-8).
WEIGHT_ROUNDING = 1e-7


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("method", sorted(SAME_RULE))
@pytest.mark.parametrize("n", [7, 32])
def test_rules_defined_alike_give_captums_attributions(setup, method, n):
    model, x, base = setup
    # Agreement with Captum at any step count, not completeness: a loose tol keeps the
    # fixed-steps miss of 7 Riemann steps from warning.
    ours = igkit.integrated_gradients(model, x, baseline=base, target=[1, 2], output="softmax",
                                      method=method, steps=n, tol=1e6)
    theirs, their_delta = _captum(model, x, base, SAME_RULE[method], n)
    assert _rel(ours.attributions, theirs) < WEIGHT_ROUNDING
    # Captum's convergence delta is our completeness delta.
    scale = np.abs(ours.score - ours.baseline_score)
    np.testing.assert_allclose(ours.delta, their_delta, rtol=0, atol=float(scale.max()) * 1e-7)


@pytest.mark.parametrize("n", [4, 16, 50])
def test_captums_trapezoid_weights_sum_to_one_minus_one_over_n(setup, n):
    # Captum gives the n trapezoid points step 1/n (ends 1/(2n)): the weights sum to (n-1)/n and
    # every attribution is scaled down by that factor. igkit's weights sum to 1.
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    assert sum(step_sizes(n)) == pytest.approx((n - 1) / n, abs=1e-12)
    ours_a, ours_w = igkit.nodes_and_weights("riemann_trapezoid", n)
    np.testing.assert_allclose(alphas(n), ours_a, atol=1e-12)
    np.testing.assert_allclose(np.asarray(step_sizes(n)) * n / (n - 1), ours_w, atol=1e-12)

    model, x, base = setup
    ours = igkit.integrated_gradients(model, x, baseline=base, target=[1, 2], output="softmax",
                                      method="riemann_trapezoid", steps=n)
    theirs, _ = _captum(model, x, base, "riemann_trapezoid", n)
    assert _rel(ours.attributions * (n - 1) / n, theirs) < WEIGHT_ROUNDING
    assert _rel(ours.attributions, theirs) == pytest.approx(1 / (n - 1), rel=1e-5)
