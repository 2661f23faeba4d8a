"""The method registry and ``igkit.attribute``: names, options, refusals, and the gradient
methods against their definitions and Captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, Saliency

import igkit
from igkit.methods import get_method, method_names


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5)
    ).eval()


X = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)


def test_every_ig_rule_is_a_method_name_meaning_integrated_gradients() -> None:
    for rule in igkit.available_methods():
        assert rule in method_names()
        assert get_method(rule).name == "integrated_gradients"


def test_unknown_method_and_option_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown attribution method 'salience'.*saliency"):
        igkit.attribute(_net(), X, "salience")
    with pytest.raises(TypeError, match="no option 'steps'; its options are: abs"):
        igkit.attribute(_net(), X, "saliency", steps=3)
    with pytest.raises(ValueError, match="means integrated_gradients with rule='secant'"):
        igkit.attribute(_net(), X, "secant", rule="gauss_legendre")


def test_bad_option_value_names_the_option() -> None:
    with pytest.raises(TypeError, match="abs=1: pass True or False"):
        igkit.attribute(_net(), X, "saliency", abs=1)


def test_saliency_and_input_x_gradient_match_captum() -> None:
    net = _net()
    t = torch.tensor(X, requires_grad=True)
    for name, ref in (("saliency", Saliency), ("input_x_gradient", InputXGradient)):
        ours = igkit.attribute(net, X, name, target=[1, 3])
        theirs = ref(net).attribute(t, target=[1, 3]).detach().numpy()
        np.testing.assert_allclose(ours.attributions, theirs, rtol=1e-6, atol=1e-7)
        assert ours.attribution_method == name
        assert np.isnan(ours.relative_error).all()


def test_integrated_gradients_through_attribute_is_the_direct_call() -> None:
    net = _net()
    direct = igkit.integrated_gradients(net, X, method="gauss_legendre", steps=32, tol=1e6)
    via = igkit.attribute(net, X, "gauss_legendre", steps=32, tol=1e6)
    np.testing.assert_array_equal(direct.attributions, via.attributions)
    assert via.attribution_method == "integrated_gradients"
    assert via.method == "gauss_legendre"


def test_multi_target_saliency_is_the_gradient_of_each_class() -> None:
    net = _net()
    res = igkit.attribute(net, X, "saliency", target=[[0, 2], [4]], abs=False)
    assert res.attributions.shape == (2, 2, 3, 8, 8)
    for i, k, c in ((0, 0, 0), (0, 1, 2), (1, 0, 4)):
        np.testing.assert_allclose(
            res.attributions[i, k], igkit.gradients(net, X[i], target=c), rtol=1e-6, atol=1e-7
        )
    assert not res.attributions[1, 1].any()


def test_controls_explain_nothing_and_are_reproducible() -> None:
    net = _net()
    a = igkit.attribute(net, X, "random", seed=3).attributions
    np.testing.assert_array_equal(a, igkit.attribute(net, X, "random", seed=3).attributions)
    assert not np.array_equal(a, igkit.attribute(net, X, "random", seed=4).attributions)
    # A pure vertical step edge: Sobel responds on the two columns beside the step only,
    # equally in every channel.
    img = np.zeros((1, 3, 8, 8), np.float32)
    img[..., 4:] = 1.0
    edges = igkit.attribute(net, img, "sobel").attributions[0]
    assert (edges[:, :, [3, 4]] > 0).all()
    assert not edges[:, :, [0, 1, 2, 5, 6, 7]].any()
    np.testing.assert_array_equal(edges[0], edges[2])


def test_an_all_zero_map_of_a_saturated_output_is_said() -> None:
    net = torch.nn.Linear(4, 2)
    with torch.no_grad():
        net.weight.fill_(50.0)  # sigmoid(logit) == 1.0 in float32: its gradient is 0
    x = np.ones((2, 4), np.float32)
    with pytest.warns(igkit.NothingToAttributeWarning, match="output='raw'.*instead of 'sigmoid'"):
        res = igkit.attribute(net, x, "saliency", output="sigmoid")
    assert not res.attributions.any()
    assert igkit.attribute(net, x, "saliency", output="raw").attributions.all()


def test_a_method_without_completeness_says_so_instead_of_nothing_to_attribute() -> None:
    res = igkit.attribute(_net(), X, "saliency")
    assert not res.complete and not res.nothing_to_attribute.any()
    assert "saliency makes no completeness claim" in res.completeness_report(0)
    ig = igkit.attribute(_net(), X, "integrated_gradients")
    assert ig.complete and "completeness within" in ig.completeness_report(0)


def test_readme_lists_every_registered_method() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| method | what it answers"):]
    missing = [n for n in igkit.attribution_methods() if f"| `{n}` |" not in table]
    assert not missing, f"README's table of methods lacks {missing}"
