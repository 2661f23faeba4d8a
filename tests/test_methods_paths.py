"""Blur IG, Guided IG, IDGI and XRAI: against PAIR saliency (test-only) and closed forms."""

from __future__ import annotations

import types

import numpy as np
import pytest
import saliency.core as pair
import torch
from saliency.core import xrai as pair_xrai
from skimage import data, transform

import igkit
from igkit.methods.paths import felzenszwalb_regions, xrai_map

TARGET = 2


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(96, 4),
    ).eval().double()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo, 32 x 32, (H, W, C) in [0, 1] as PAIR takes it."""
    return transform.resize(data.chelsea(), (32, 32), anti_aliasing=True).astype(np.float64)


def _pair_model(net: torch.nn.Module):
    """PAIR's call_model_function for the torch net (PAIR works in H, W, C)."""

    def call(batch, call_model_args=None, expected_keys=None):
        t = torch.tensor(np.moveaxis(np.asarray(batch), -1, 1), requires_grad=True)
        net(t)[:, TARGET].sum().backward()
        return {pair.INPUT_OUTPUT_GRADIENTS: np.moveaxis(t.grad.numpy(), 1, -1)}

    return call


def _chw(img: np.ndarray) -> np.ndarray:
    return np.moveaxis(img, -1, 0)


def test_blur_ig_is_pairs(net, photo) -> None:
    ours = igkit.attribute(net, _chw(photo), "blur_ig", target=TARGET, steps=20, max_sigma=10)
    # PAIR weighs a whole batch by its last step's width: one point per call is its definition.
    theirs = pair.BlurIG().GetMask(photo, _pair_model(net), steps=20, max_sigma=10,
                                   batch_size=1)
    np.testing.assert_allclose(_chw(theirs), ours.attributions, rtol=1e-9, atol=1e-15)
    # Completeness against the most blurred image is measured, a Riemann sum's error.
    assert ours.attribution_method == "blur_ig"
    assert 0 < ours.relative_error < 0.2


def test_guided_ig_is_pairs(net, photo, monkeypatch) -> None:
    # PAIR calls np.quantile(interpolation=), which NumPy 2 renamed method=.
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = lambda a, q, interpolation="linear": np.quantile(a, q, method=interpolation)
    monkeypatch.setattr(pair.guided_ig, "np", shim)
    ours = igkit.attribute(net, _chw(photo), "guided_ig", target=TARGET, steps=30)
    theirs = pair.GuidedIG().GetMask(photo, _pair_model(net), x_steps=30,
                                     x_baseline=np.zeros_like(photo))
    np.testing.assert_allclose(_chw(theirs), ours.attributions, rtol=1e-9, atol=1e-15)


def test_guided_ig_without_deviation_is_ig_with_the_left_riemann_rule(net, photo) -> None:
    guided = igkit.attribute(net, _chw(photo), "guided_ig", target=TARGET, steps=16,
                             max_dist=0.0)
    ig = igkit.integrated_gradients(net, _chw(photo), target=TARGET, method="riemann_left",
                                    steps=16, tol=1e6)
    np.testing.assert_allclose(guided.attributions, ig.attributions, rtol=1e-9, atol=1e-12)


def test_idgi_on_a_linear_model_is_the_closed_form() -> None:
    torch.manual_seed(1)
    lin = torch.nn.Linear(5, 3).double()
    x = np.random.default_rng(0).normal(size=(2, 5))
    res = igkit.attribute(lin, x, "idgi", target=1, steps=8)
    w = lin.weight[1].detach().numpy()
    change = (x @ w)  # F(x) - F(0): the bias cancels
    expected = change[:, None] * w**2 / (w**2).sum()
    np.testing.assert_allclose(res.attributions, expected, rtol=1e-12)


def test_idgi_is_complete_on_a_relu_network(net, photo) -> None:
    res = igkit.attribute(net, _chw(photo), "idgi", target=[0, 1, 2, 3][TARGET], steps=32)
    assert res.relative_error < 1e-9


def test_xrai_regions_and_ranking_are_pairs(photo) -> None:
    ours = felzenszwalb_regions(photo)
    theirs = pair_xrai._get_segments_felzenszwalb(photo)
    assert ours.shape[0] == len(theirs)
    assert all((a == b).all() for a, b in zip(ours, theirs, strict=True))
    attr = np.random.default_rng(0).normal(size=photo.shape[:2])
    heat, ranks = xrai_map(attr, ours)
    heat_ref, ranks_ref = pair.XRAI._xrai(attr, theirs, min_pixel_diff=50)
    np.testing.assert_allclose(heat, heat_ref, rtol=1e-12)
    np.testing.assert_array_equal(ranks, ranks_ref)


def test_xrai_end_to_end_is_pairs_on_the_same_ig(net, photo) -> None:
    ours = igkit.attribute(net, _chw(photo), "xrai", target=TARGET, steps=16)
    ig = [
        igkit.integrated_gradients(net, _chw(photo), target=TARGET, baseline=b, steps=16,
                                   method="gauss_legendre", tol=1e6).attributions
        for b in ("black", "white")
    ]
    base = np.moveaxis(np.mean(ig, axis=0), 0, -1)
    theirs = pair.XRAI().GetMask(photo, _pair_model(net), base_attribution=base)
    np.testing.assert_allclose(ours.attributions[0], theirs, rtol=1e-6)
    assert np.allclose(ours.attributions, ours.attributions[:1])  # one map for all channels


def test_image_methods_refuse_other_inputs_before_any_model_call() -> None:
    calls = []
    model = torch.nn.Linear(5, 2)
    model.register_forward_hook(lambda *args: calls.append(1))

    for name in ("blur_ig", "xrai"):
        with pytest.raises(ValueError, match=f"method='{name}' works on images"):
            igkit.attribute(model, np.ones((2, 5), np.float32), name)
    assert not calls
