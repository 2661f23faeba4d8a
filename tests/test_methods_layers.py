"""The layers family: Grad-CAM, guided backprop, DeconvNet, Guided Grad-CAM and the layer
methods, against Captum (torch), a hand computation with tf.GradientTape (Keras), the same
network in both frameworks, and their exact properties (completeness, batching, refusals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    LayerActivation,
    LayerAttribution,
    LayerConductance,
    LayerGradCam,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from torch import nn

import igkit
from igkit.methods import get_method
from igkit.methods.layers import resize

TARGETS = [[0, 3], [1], [4, 2]]


class Net(nn.Module):
    """A small CNN with nn.ReLU modules (what Captum's ReLU hooks see)."""

    def __init__(self, functional: bool = False, inplace: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 5)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.functional:
            h = torch.nn.functional.relu(self.conv1(x))
            h = self.conv2(h).relu()
        else:
            h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(h).flatten(1))


X = np.random.default_rng(0).random((3, 3, 8, 8))


def _net(**kwargs: bool) -> nn.Module:
    return Net(**kwargs).double().eval()


def _captum(method, net: nn.Module, **kwargs) -> np.ndarray:
    """Captum's attributions of every (input, target) pair of TARGETS, pair-major."""
    inputs = np.repeat(X, [len(t) for t in TARGETS], axis=0)
    target = torch.tensor([c for t in TARGETS for c in t])
    xt = torch.tensor(inputs, requires_grad=True)
    return method(xt, target=target, **kwargs).detach().numpy()


def _pairs(result: igkit.Result) -> np.ndarray:
    return np.stack([result.attributions[i, k] for i, k in result.pairs()])


def test_guided_backprop_and_deconvnet_equal_captum() -> None:
    net = _net()
    with pytest.warns(UserWarning):  # Captum warns about its hooks and the input's grad flag
        gb = _captum(GuidedBackprop(net).attribute, net)
        dc = _captum(Deconvolution(net).attribute, net)
    ours_gb = _pairs(igkit.attribute(net, X, "guided_backprop", target=TARGETS, batch_size=2))
    ours_dc = _pairs(igkit.attribute(net, X, "deconvnet", target=TARGETS))
    np.testing.assert_allclose(ours_gb, gb, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours_dc, dc, rtol=1e-12, atol=1e-15)
    assert not np.allclose(ours_gb, ours_dc)


def test_functional_and_inplace_relus_are_swapped_too() -> None:
    # Captum hooks nn.ReLU modules only; igkit swaps F.relu, Tensor.relu and in-place ReLUs.
    ref = igkit.attribute(_net(), X, "guided_backprop", target=TARGETS).attributions
    for kwargs in ({"functional": True}, {"inplace": True}):
        res = igkit.attribute(_net(**kwargs), X, "guided_backprop", target=TARGETS)
        np.testing.assert_array_equal(res.attributions, ref)
    plain = igkit.attribute(_net(), X, "saliency", target=TARGETS, abs=False).attributions
    assert not np.allclose(plain, ref)


def test_grad_cam_equals_captum_at_the_layer_and_upsampled() -> None:
    net = _net()
    cam = _captum(LayerGradCam(net, net.conv2).attribute, net, relu_attributions=True)
    low = igkit.attribute(net, X, "grad_cam", target=TARGETS, layer="conv2", upsample=False)
    assert low.attributions.shape == (3, 2, 1, 8, 8)
    np.testing.assert_allclose(_pairs(low), cam, rtol=1e-12, atol=1e-16)
    # A layer at lower resolution: upsampled bilinearly to the input, the same on every channel.
    cam = _captum(LayerGradCam(net, net.pool).attribute, net, relu_attributions=True)
    up = igkit.attribute(net, X, "grad_cam", target=TARGETS, layer="pool")
    theirs = LayerAttribution.interpolate(torch.tensor(cam), (8, 8), "bilinear").numpy()
    assert up.attributions.shape == (3, 2, 3, 8, 8)
    for c in range(3):
        np.testing.assert_allclose(_pairs(up)[:, c], theirs[:, 0], rtol=1e-12, atol=1e-16)
    # layer="auto": the last map with spatial extent, in call order (pool's 2 x 2 here).
    auto = igkit.attribute(net, X, "grad_cam", target=TARGETS, layer="auto")
    np.testing.assert_array_equal(auto.attributions, up.attributions)
    no_relu = igkit.attribute(net, X, "grad_cam", target=TARGETS, layer="conv2", relu=False)
    assert (no_relu.attributions < 0).any()
    np.testing.assert_array_equal(np.maximum(no_relu.attributions[:, :, :1], 0),
                                  igkit.attribute(net, X, "grad_cam", target=TARGETS,
                                                  layer="conv2", upsample=False).attributions)


def test_guided_grad_cam_equals_captum_for_both_interpolations() -> None:
    net = _net()
    for mode in ("nearest", "bilinear"):
        with pytest.warns(UserWarning):
            theirs = _captum(GuidedGradCam(net, net.pool).attribute, net, interpolate_mode=mode)
        ours = igkit.attribute(net, X, "guided_grad_cam", target=TARGETS, layer="pool",
                               interpolation=mode)
        np.testing.assert_allclose(_pairs(ours), theirs, rtol=1e-10, atol=1e-16)


def test_layer_activation_and_gradient_x_activation_equal_captum() -> None:
    net = _net()
    act = igkit.attribute(net, X, "layer_activation", target=TARGETS, layer="relu1")
    theirs = LayerActivation(net, net.relu1).attribute(torch.tensor(X)).numpy()
    np.testing.assert_array_equal(_pairs(act), np.repeat(theirs, [2, 1, 2], axis=0))
    gxa = igkit.attribute(net, X, "layer_gradient_x_activation", target=TARGETS, layer="conv1")
    np.testing.assert_allclose(
        _pairs(gxa), _captum(LayerGradientXActivation(net, net.conv1).attribute, net),
        rtol=1e-12, atol=1e-16,
    )
    assert gxa.attributions.shape == (3, 2, 4, 8, 8)  # the layer's shape, not the input's


def test_layer_integrated_gradients_and_conductance_equal_captum() -> None:
    net = _net()
    zeros = torch.zeros(5, 3, 8, 8, dtype=torch.float64)
    lig = igkit.attribute(net, X, "layer_integrated_gradients", target=TARGETS, layer="conv1",
                          steps=50, batch_size=16)
    theirs = _captum(LayerIntegratedGradients(net, net.conv1).attribute, net, baselines=zeros)
    np.testing.assert_allclose(_pairs(lig), theirs, rtol=1e-6, atol=1e-11)
    cond = igkit.attribute(net, X, "layer_conductance", target=TARGETS, layer="conv2",
                           rule="gauss_legendre", steps=20)
    theirs = _captum(LayerConductance(net, net.conv2).attribute, net, baselines=zeros,
                     n_steps=20)
    np.testing.assert_allclose(_pairs(cond), theirs, rtol=1e-6, atol=1e-11)


def test_layer_integrated_gradients_is_complete_and_conductance_converges() -> None:
    # A smooth net: Gauss-Legendre makes layer IG exact to rounding in a few steps, and
    # conductance's error falls as 1 / steps.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.Softplus(),
                        nn.Flatten(), nn.Linear(64, 5)).double().eval()
    lig = igkit.attribute(net, X, "layer_integrated_gradients", target=TARGETS, layer="1",
                          steps=16)
    mask = lig.target_mask
    assert (lig.relative_error[mask] < 1e-12).all()
    # F(x; A(x')) is F(x') here: the layer carries all of the input's effect.
    base = igkit.attribute(net, np.zeros_like(X), "saliency", target=TARGETS).score
    np.testing.assert_allclose(lig.baseline_score[mask], base[mask], rtol=1e-12)
    sums = lig.attributions.reshape(3, 2, -1).sum(-1)
    np.testing.assert_allclose(sums[mask], (lig.score - lig.baseline_score)[mask], rtol=1e-12)
    coarse, fine = (
        igkit.attribute(net, X, "layer_conductance", target=TARGETS, layer="2", steps=steps)
        .relative_error[mask] for steps in (64, 256)
    )
    assert (fine < 3e-4).all()
    np.testing.assert_allclose(coarse / fine, 4.0, rtol=0.02)


def test_layer_integrated_gradients_of_a_linear_head_is_exact() -> None:
    # Score linear in the layer's output: one step of any rule is exact, (A - A') * w.
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double().eval()
    x = np.random.default_rng(1).normal(size=(2, 4))
    res = igkit.attribute(net, x, "layer_integrated_gradients", layer="1", steps=1,
                          rule="riemann_middle", target=[0, 1])
    acts = torch.tanh(net[0](torch.tensor(x))).detach().numpy()
    zero = torch.tanh(net[0](torch.zeros(1, 4, dtype=torch.float64))).detach().numpy()
    w = net[2].weight.detach().numpy()
    np.testing.assert_allclose(res.attributions, (acts - zero) * w[[0, 1]], rtol=1e-12)
    np.testing.assert_allclose(res.delta, 0.0, atol=1e-12)


def test_rows_of_all_pairs_are_packed_into_full_batches() -> None:
    net = _net()
    sizes: list[int] = []
    net.register_forward_hook(lambda m, a, out: sizes.append(int(a[0].shape[0])))
    res = igkit.attribute(net, X, "layer_integrated_gradients", target=TARGETS, layer="conv1",
                          steps=50, batch_size=16)
    # first forward, A(x), A(x'), 5 pairs x 50 steps = 250 rows in full batches of 16 (host
    # chunks of 128 rows cut across pairs), F(x; A(x')).
    assert sizes == [3, 3, 3] + [16] * 15 + [10, 5]
    again = igkit.attribute(_net(), X, "layer_integrated_gradients", target=TARGETS,
                            layer="conv1", steps=50, batch_size=3)
    np.testing.assert_allclose(again.attributions, res.attributions, rtol=1e-12, atol=1e-16)
    # Conductance pairs each row with the next: a chunk cut inside a pair carries its last row.
    cond = [
        igkit.attribute(net, X, "layer_conductance", target=TARGETS, layer="conv2", steps=30,
                        batch_size=size).attributions for size in (3, 200)
    ]
    np.testing.assert_allclose(cond[0], cond[1], rtol=1e-12, atol=1e-16)


def test_one_unbatched_input_keeps_the_layer_shape() -> None:
    res = igkit.attribute(_net(), X[0], "layer_activation", layer="conv2")
    assert res.attributions.shape == (6, 8, 8)


def test_refusals_name_the_fix() -> None:
    net = _net()
    with pytest.raises(ValueError, match="no layer named 'conv3'.*closest: .*conv1"):
        igkit.attribute(net, X, "grad_cam", layer="conv3")
    with pytest.raises(ValueError, match="no layer named 'auto'"):
        igkit.attribute(net, X, "layer_activation", layer="auto")
    with pytest.raises(ValueError, match="needs layer=.*fc"):
        igkit.attribute(net, X, "layer_activation")
    with pytest.raises(ValueError, match="without spatial axes"):
        igkit.attribute(net, X, "grad_cam", layer="fc")
    with pytest.raises(TypeError, match="no option 'layer'"):
        igkit.attribute(net, X, "guided_backprop", layer="conv1")
    shared = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    shared.append(shared[1]).double()
    with pytest.raises(ValueError, match="runs more than once"):
        igkit.attribute(shared, np.ones((1, 4)), "layer_activation", layer="1")
    no_relu = nn.Sequential(nn.Linear(4, 2), nn.Tanh()).double()
    with pytest.raises(ValueError, match="calls no ReLU.*saliency"):
        igkit.attribute(no_relu, np.ones((1, 4)), "deconvnet")
    for name in ("grad_cam", "layer_integrated_gradients"):
        assert "no named layers" in get_method(name).unsupported("jax")
    assert "custom_vjp" in get_method("guided_backprop").unsupported("jax")


def test_resize_matches_torch_interpolate() -> None:
    maps = np.random.default_rng(2).random((2, 3, 5))
    for mode in ("bilinear", "nearest"):
        theirs = torch.nn.functional.interpolate(torch.tensor(maps)[:, None], (7, 11), mode=mode)
        np.testing.assert_allclose(resize(maps, (7, 11), mode), theirs[:, 0].numpy(),
                                   rtol=1e-14)


# -- Keras -------------------------------------------------------------------------------------


def _keras_net():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1",
                            bias_initializer="glorot_uniform")(inp)
    h = keras.layers.Conv2D(6, 3, padding="same", name="c2")(h)
    h = keras.layers.ReLU(name="r2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inp, keras.layers.Dense(5, name="fc")(h))


XK = np.random.default_rng(3).random((2, 8, 8, 3)).astype(np.float32)


def test_keras_grad_cam_and_layer_activation_equal_a_gradient_tape() -> None:
    import keras
    import tensorflow as tf

    model = _keras_net()
    sub = keras.Model(model.input, [model.get_layer("c2").output, model.output])
    with tf.GradientTape() as tape:
        acts, out = sub(tf.constant(XK), training=False)
        score = tf.reduce_sum(tf.gather(out, [1, 3], axis=1, batch_dims=1))
    grads = tape.gradient(score, acts).numpy()
    cam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts.numpy()).sum(-1), 0)
    res = igkit.attribute(model, XK, "grad_cam", target=[1, 3], layer="c2", upsample=False)
    np.testing.assert_allclose(res.attributions[..., 0], cam, rtol=1e-5, atol=1e-7)
    up = igkit.attribute(model, XK, "grad_cam", target=[1, 3], layer="c2")
    r2 = igkit.attribute(model, XK, "grad_cam", target=[1, 3], layer="r2")
    np.testing.assert_array_equal(
        igkit.attribute(model, XK, "grad_cam", target=[1, 3], layer="auto").attributions,
        r2.attributions,
    )
    np.testing.assert_allclose(up.attributions, np.repeat(cam[..., None], 3, -1), rtol=1e-5,
                               atol=1e-7)  # the layer has the input's resolution
    act = igkit.attribute(model, XK, "layer_activation", layer="c1")
    first = keras.Model(model.input, model.get_layer("c1").output)
    np.testing.assert_allclose(act.attributions, first(XK).numpy(), rtol=1e-6)
    gxa = igkit.attribute(model, XK, "layer_gradient_x_activation", target=[1, 3], layer="c2")
    np.testing.assert_allclose(gxa.attributions, grads * acts.numpy(), rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="no layer named 'c3'.*closest"):
        igkit.attribute(model, XK, "grad_cam", layer="c3")


def test_keras_layer_integrated_gradients_is_complete() -> None:
    res = igkit.attribute(_keras_net(), XK, "layer_integrated_gradients", layer="c1",
                          steps=64, tol=1e-3)
    assert res.attributions.shape == (2, 8, 8, 4) and res.converged.all()


def test_keras_guided_backprop_and_deconvnet_equal_torch_on_the_same_weights() -> None:
    model = _keras_net()
    net = Net().double().eval()
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.fc = nn.Linear(6, 5).double()
    with torch.no_grad():
        for k_name, t_mod in (("c1", net.conv1), ("c2", net.conv2)):
            kernel, bias = model.get_layer(k_name).get_weights()
            t_mod.weight.copy_(torch.tensor(kernel.transpose(3, 2, 0, 1)))
            t_mod.bias.copy_(torch.tensor(bias))
        w, b = model.get_layer("fc").get_weights()
        net.fc.weight.copy_(torch.tensor(w.T))
        net.fc.bias.copy_(torch.tensor(b))
    xt = XK.transpose(0, 3, 1, 2).astype(np.float64)
    for method in ("guided_backprop", "deconvnet"):
        ours = igkit.attribute(model, XK, method, target=[1, 3]).attributions
        ref = igkit.attribute(net, xt, method, target=[1, 3]).attributions
        np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), rtol=2e-4, atol=1e-6)


def test_keras_layer_inside_a_residual_connection_is_replaced_in_place() -> None:
    # keras.Model(layer.output, model.output) is impossible here (the input also reaches the
    # output around the layer); swapping the layer's call still runs the path, and the
    # attributions add up to F(x) - F(x; A(x')), which is not F(x) - F(x').
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((6,))
    branch = keras.layers.Dense(6, activation="tanh", name="branch")(inp)
    h = keras.layers.Add(name="add")([inp, branch])
    model = keras.Model(inp, keras.layers.Dense(3, activation="softplus", name="out")(h))
    x = np.random.default_rng(4).normal(size=(2, 6)).astype(np.float32)
    res = igkit.attribute(model, x, "layer_integrated_gradients", layer="branch", steps=16,
                          target=[0, 2], baseline=np.zeros_like(x))
    assert res.attributions.shape == (2, 6) and (res.relative_error < 1e-4).all()
    zero_branch = keras.Model(inp, model.get_layer("branch").output)(np.zeros((1, 6))).numpy()
    h = x + zero_branch
    w, b = model.get_layer("out").get_weights()
    expected = np.logaddexp(0, h @ w + b)[[0, 1], [0, 2]]
    np.testing.assert_allclose(res.baseline_score, expected, rtol=1e-5)
    assert not np.allclose(res.baseline_score, model(np.zeros((2, 6))).numpy()[[0, 1], [0, 2]])


def test_keras_relus_inside_a_layers_own_code_are_refused_not_half_guided() -> None:
    import keras
    import tensorflow as tf

    class Block(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(name="block")
            self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="cv")

        def call(self, x):  # one swappable ReLU (the activation) and one tf.nn.relu
            return tf.nn.relu(self.conv(x) - 0.1)

    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.GlobalAveragePooling2D()(Block()(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(h))
    with pytest.raises(ValueError, match="applies 2 ReLUs, of which igkit can swap 1.*tf.nn.relu"):
        igkit.attribute(model, XK, "guided_backprop")
