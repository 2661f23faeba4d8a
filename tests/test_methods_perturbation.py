"""Occlusion, feature ablation, feature permutation and Shapley value sampling: exact on linear
models, exact Shapley values by enumeration, completeness per order, agreement with Captum's
Occlusion, FeatureAblation, FeaturePermutation and ShapleyValueSampling (with the same
permutations replayed), full batches, and refusals before the perturbed copies are run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from captum.attr import (
    FeatureAblation,
    FeaturePermutation,
    Occlusion,
    ShapleyValues,
    ShapleyValueSampling,
)

import igkit

X = np.random.default_rng(0).random((3, 3, 6, 6))
BASE = 0.3


class Counting(torch.nn.Module):
    """A real network that records how many rows each forward pass had."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(int(x.shape[0]))
        return self.net(x)


def _linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 4)).double().eval()


def _cnn() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
        torch.nn.Linear(144, 5),
    ).double().eval()


def _linear_attr(net: torch.nn.Module, targets: list[int]) -> np.ndarray:
    w = net[1].weight.detach().numpy().reshape(4, 3, 6, 6)
    return w[targets] * (X - BASE)


def _grid_mask(cell: int) -> np.ndarray:
    """Square cells of ``cell`` pixels over 6 x 6, labelled 0, 1, ... row by row."""
    rows = np.arange(6) // cell
    return rows[:, None] * math.ceil(6 / cell) + rows[None, :]


# -- exact identities -------------------------------------------------------------------------


def test_per_channel_1x1_occlusion_and_single_feature_ablation_are_exact_on_a_linear_model():
    net = _linear()
    expected = _linear_attr(net, [1, 2, 0])
    occ = igkit.attribute(net, X, "occlusion", target=[1, 2, 0], baseline=BASE, window=(1, 1, 1))
    abl = igkit.attribute(net, X, "feature_ablation", target=[1, 2, 0], baseline=BASE)
    np.testing.assert_allclose(occ.attributions, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(abl.attributions, expected, rtol=1e-10, atol=1e-14)
    assert occ.attribution_method == "occlusion" and np.isnan(occ.relative_error).all()
    assert (occ.evaluations == 108).all() and (abl.evaluations == 108).all()


def test_a_window_spanning_the_channels_gives_each_pixel_its_channels_sum():
    net = _linear()
    res = igkit.attribute(net, X, "occlusion", target=0, baseline=BASE, window=1)
    per_pixel = _linear_attr(net, [0, 0, 0]).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(res.attributions, np.broadcast_to(per_pixel, X.shape),
                               rtol=1e-10, atol=1e-14)


def test_occlusion_by_disjoint_windows_is_ablation_of_the_same_patches():
    net = _cnn()
    occ = igkit.attribute(net, X, "occlusion", target=[4, 0, 2], window=3, stride=3)
    abl = igkit.attribute(net, X, "feature_ablation", target=[4, 0, 2], mask=_grid_mask(3))
    np.testing.assert_allclose(occ.attributions, abl.attributions, rtol=1e-12, atol=1e-15)


def test_shapley_sampling_is_exact_on_a_linear_model_for_any_sample_count():
    net = _linear()
    expected = _linear_attr(net, [3, 3, 1])
    for samples in (1, 4):
        res = igkit.attribute(net, X, "shapley_sampling", target=[3, 3, 1], baseline=BASE,
                              samples=samples)
        np.testing.assert_allclose(res.attributions, expected, rtol=1e-9, atol=1e-13)
    # With groups, a group's value w . (x - b) over the group is shared among its features.
    mask = _grid_mask(3)
    res = igkit.attribute(net, X, "shapley_sampling", target=[3, 3, 1], baseline=BASE,
                          samples=2, mask=mask)
    group_sum = np.zeros((3, 4))
    for g in range(4):
        group_sum[:, g] = (expected * (mask == g)).sum(axis=(1, 2, 3))
    share = group_sum[:, mask] / 27.0  # 3 x 3 pixels x 3 channels per group
    np.testing.assert_allclose(res.attributions, np.broadcast_to(share[:, None], X.shape),
                               rtol=1e-9, atol=1e-13)


def _exact_shapley(net: torch.nn.Module, x: np.ndarray, base: np.ndarray, mask: np.ndarray,
                   target: int) -> np.ndarray:
    """Shapley values of the groups of ``mask`` by enumerating every order."""
    groups = np.unique(mask)
    values = np.zeros(groups.shape[0])
    orders = list(itertools.permutations(range(groups.shape[0])))
    with torch.no_grad():
        for order in orders:
            state, prev = base.copy(), None
            for g in order:
                state = np.where(mask == groups[g], x, state)
                now = net(torch.tensor(state[None]))[0, target].item()
                if prev is None:
                    prev = net(torch.tensor(base[None]))[0, target].item()
                values[g] += now - prev
                prev = now
    return values / len(orders)


def test_shapley_sampling_converges_to_the_exact_shapley_values_of_a_nonlinear_model():
    net = _cnn()
    mask = np.zeros((6, 6), dtype=np.int64)
    mask[:, 2:4], mask[:, 4:] = 1, 2
    full = np.broadcast_to(mask, (3, 6, 6))
    exact = _exact_shapley(net, X[0], np.full_like(X[0], BASE), full, 2)
    errors = []
    for samples in (6, 400):
        res = igkit.attribute(net, X[0], "shapley_sampling", target=2, baseline=BASE,
                              samples=samples, mask=mask, seed=5)
        ours = np.array([res.attributions[:, mask == g].sum() for g in range(3)])
        errors.append(np.abs(ours - exact).max() / np.abs(exact).max())
        # Every order's credits add up to F(x) - F(x'): complete at any sample count.
        assert abs(res.delta) < 1e-12 and res.converged
    assert errors[1] < 0.05 and errors[1] < errors[0]
    # Captum's exact ShapleyValues (all orders) agrees with the enumeration.
    theirs = ShapleyValues(net).attribute(
        torch.tensor(X[:1]), baselines=BASE, target=2, feature_mask=torch.tensor(mask)[None, None]
    ).numpy()[0]
    # (Captum returns float32 here, whatever the input's dtype.)
    np.testing.assert_allclose([theirs[0][mask == g][0] for g in range(3)], exact, rtol=1e-6)


def test_shapley_sampling_is_complete_for_one_order_on_every_input_and_class():
    res = igkit.attribute(_cnn(), X, "shapley_sampling", target=[[0, 4], [1], [2, 3]],
                          baseline="black", samples=1, mask=_grid_mask(2))
    sums = np.nansum(res.attributions, axis=(2, 3, 4))
    gap = res.score - res.baseline_score
    np.testing.assert_allclose(sums[~np.isnan(gap)], gap[~np.isnan(gap)], rtol=1e-12,
                               atol=1e-12)
    assert np.nanmax(np.abs(res.relative_error)) < 1e-12


# -- agreement with Captum --------------------------------------------------------------------


def test_occlusion_matches_captum_across_channels_and_per_channel():
    net = _cnn()
    t = torch.tensor(X)
    for window, stride, theirs_window, theirs_stride in (
        (3, 2, (3, 3, 3), (1, 2, 2)),
        ((1, 2, 3), (1, 2, 2), (1, 2, 3), (1, 2, 2)),
        ((4, 5), 3, (3, 4, 5), (1, 3, 3)),
    ):
        ours = igkit.attribute(net, X, "occlusion", target=[0, 3, 4], window=window,
                               stride=stride, baseline=BASE)
        theirs = Occlusion(net).attribute(
            t, sliding_window_shapes=theirs_window, strides=theirs_stride, baselines=BASE,
            target=[0, 3, 4],
        ).numpy()
        # Captum's Occlusion returns float32 whatever the input's dtype: its rounding.
        np.testing.assert_allclose(ours.attributions, theirs, rtol=1e-6, atol=1e-8)


def test_feature_ablation_matches_captum_with_shared_and_per_input_masks():
    net = _cnn()
    t = torch.tensor(X)
    shared = _grid_mask(2)
    per_input = np.stack([_grid_mask(2), _grid_mask(3), _grid_mask(3).T])
    for mask, theirs_mask in ((shared, shared[None, None]), (per_input[:, None],) * 2):
        ours = igkit.attribute(net, X, "feature_ablation", target=[1, 1, 4], mask=mask,
                               baseline=BASE)
        theirs = FeatureAblation(net).attribute(
            t, baselines=BASE, target=[1, 1, 4], feature_mask=torch.tensor(theirs_mask)
        ).numpy()
        np.testing.assert_allclose(ours.attributions, theirs, rtol=1e-9, atol=1e-12)
    assert list(ours.evaluations) == [9, 4, 4]


def test_feature_permutation_matches_captum_replaying_the_same_permutations():
    net = _cnn()
    mask = _grid_mask(2)
    ours = igkit.attribute(net, X, "feature_permutation", target=[0, 2, 1], mask=mask, seed=7)
    rng = np.random.default_rng(7)

    def replay(x: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
        perm = rng.permutation(x.shape[0])
        while (perm == np.arange(x.shape[0])).all():
            perm = rng.permutation(x.shape[0])
        return torch.where(feature_mask, x[torch.tensor(perm)], x)

    theirs = FeaturePermutation(net, perm_func=replay).attribute(
        torch.tensor(X), target=[0, 2, 1], feature_mask=torch.tensor(mask)[None, None]
    ).numpy()
    np.testing.assert_allclose(ours.attributions, theirs, rtol=1e-9, atol=1e-12)
    again = igkit.attribute(net, X, "feature_permutation", target=[0, 2, 1], mask=mask, seed=7)
    np.testing.assert_array_equal(ours.attributions, again.attributions)


def test_shapley_sampling_matches_captum_on_the_same_orders():
    net = _cnn()
    mask = _grid_mask(2)
    ours = igkit.attribute(net, X, "shapley_sampling", target=[0, 2, 1], mask=mask,
                           baseline=BASE, samples=5, seed=3)
    rng = np.random.default_rng(3)
    orders = [rng.permutation(9).tolist() for _ in range(5)]
    svs = ShapleyValueSampling(net)
    svs.permutation_generator = lambda n, samples: iter(orders)
    theirs = svs.attribute(torch.tensor(X), baselines=BASE, target=[0, 2, 1], n_samples=5,
                           feature_mask=torch.tensor(mask)[None, None]).numpy()
    # Captum gives every feature of a group the group's value; igkit shares it (12 features).
    # (Captum returns float32 here, whatever the input's dtype.)
    np.testing.assert_allclose(ours.attributions * 12, theirs, rtol=1e-6, atol=1e-8)


# -- batching ---------------------------------------------------------------------------------


def test_copies_of_every_input_and_class_go_to_the_model_in_full_batches():
    net = Counting(_cnn())
    res = igkit.attribute(net, X, "occlusion", target=[[0, 1], [2], [3, 4]], window=3,
                          stride=3, batch_size=5)
    # 4 windows x 3 inputs = 12 copies, shared by the classes of each input.
    assert net.rows == [3, 5, 5, 2]
    single = igkit.attribute(_cnn(), X[2], "occlusion", target=4, window=3, stride=3)
    np.testing.assert_allclose(res.attributions[2, 1], single.attributions, rtol=1e-12)
    net.rows.clear()
    igkit.attribute(net, X, "shapley_sampling", target=0, mask=_grid_mask(3), samples=3,
                    batch_size=4)
    # 3 inputs x 3 orders x 3 copies (the last state is the input) + the 3 baselines.
    assert net.rows == [3, 3, 4, 4, 4, 4, 4, 4, 3]


def test_memory_is_bounded_by_batch_size_whatever_the_number_of_copies():
    net = Counting(_linear())
    igkit.attribute(net, X, "feature_ablation", target=0, batch_size=8)
    assert max(net.rows) == 8 and sum(net.rows[1:]) == 3 * 108


def test_jax_models_get_the_same_attributions_as_torch():
    import jax.numpy as jnp

    net = _cnn().float()
    w = net[0].weight.detach().numpy().transpose(2, 3, 1, 0)
    import jax

    def jax_net(x):  # NHWC
        h = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jnp.tanh(h + net[0].bias.detach().numpy())
        h = jnp.transpose(h, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        return h @ net[3].weight.detach().numpy().T + net[3].bias.detach().numpy()

    x32 = X.astype(np.float32)
    nhwc = x32.transpose(0, 2, 3, 1)
    for name, kw in (("occlusion", {"window": 2}), ("shapley_sampling",
                                                    {"mask": _grid_mask(3), "samples": 2})):
        ours = igkit.attribute(jax_net, nhwc, name, target=[0, 1, 2], **kw).attributions
        ref = igkit.attribute(net, x32, name, target=[0, 1, 2], **kw).attributions
        np.testing.assert_allclose(ours.transpose(0, 3, 1, 2), ref, rtol=1e-4, atol=1e-5)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "options", "error", "match"), [
    ("occlusion", {"window": 7}, ValueError, r"window=7 is 7 along axis 1 .* larger than"),
    ("occlusion", {"window": 3, "stride": 4}, ValueError, "never be occluded"),
    ("occlusion", {"window": (1, 2, 3, 4)}, ValueError, "tuple of length 2 .* or 3"),
    ("feature_ablation", {"mask": np.zeros((5, 5), int)}, ValueError,
     r"mask of shape \(5, 5\) does not fit .*\(6, 6\) \(shared by the channels\)"),
    ("feature_ablation", {"mask": np.zeros((3, 6, 6), int)}, ValueError,
     r"could be one example's \(3, 6, 6\) or one \(6, 6\) per input .* \(3, 1, 6, 6\)"),
])
def test_bad_geometry_is_refused_before_any_perturbed_copy_is_run(method, options, error, match):
    net = Counting(_linear())
    with pytest.raises(error, match=match):
        igkit.attribute(net, X, method, **options)
    assert net.rows == [3]  # the first forward pass only


def test_shapley_sampling_over_too_many_single_features_asks_for_a_mask():
    torch.manual_seed(0)
    net = Counting(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1200, 2)).eval())
    x = np.random.default_rng(1).random((2, 3, 20, 20)).astype(np.float32)
    with pytest.raises(ValueError, match="1200 groups.*pass mask=.*superpixels"):
        igkit.attribute(net, x, "shapley_sampling")
    assert net.rows == [2]
    igkit.attribute(net, x, "shapley_sampling", mask=np.arange(400).reshape(20, 20) // 40,
                    samples=1)


def test_bad_option_values_and_a_single_input_are_refused():
    net = Counting(_linear())
    with pytest.raises(ValueError, match="stride=0: pass a positive integer"):
        igkit.attribute(net, X, "occlusion", stride=0)
    with pytest.raises(TypeError, match="(?s)mask=.*integer group labels"):
        igkit.attribute(net, X, "feature_ablation", mask=np.zeros((6, 6)))
    assert net.rows == []
    with pytest.raises(ValueError, match="needs at least 2 inputs; got 1"):
        igkit.attribute(net, X[0], "feature_permutation")
    assert net.rows == [1]
