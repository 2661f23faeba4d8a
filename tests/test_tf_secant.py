"""method="secant" on TensorFlow and Keras (``igkit.backends.tf_secant``): every piece complete
on the common layer kinds, exact on analytic cases, the same attributions as PyTorch for the
same weights, and the midpoint fallback named."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import igkit
from igkit.backends import tensorflow as tf_backend
from igkit.backends.base import SessionOptions
from igkit.core.planner import RowBatch


@contextlib.contextmanager
def _float64() -> Iterator[None]:
    """Layers and inputs built inside compute in float64: the global policy (Keras keeps the
    one it made from floatx once a layer asked for it) and floatx (``keras.Input``'s dtype;
    a float32 input would round every path point)."""
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64")
    keras.config.set_floatx("float64")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)


def _seeded(model: keras.Model, seed: int) -> keras.Model:
    """Weights from NumPy's generator (Keras's own initialisers depend on what ran before):
    scaled normal kernels, small biases, scales near 1."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) >= 2:
            values.append(rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1])))
        elif "gamma" in w.path:
            values.append(1.0 + 0.1 * rng.normal(size=shape))
        else:
            values.append(0.1 * rng.normal(size=shape))
    model.set_weights(values)
    return model


def _relu_cnn() -> keras.Model:
    """ReLU convolutions, a 2x2 max-pool, an overlapping 3x3/2 'same' max-pool."""
    i = keras.Input((12, 12, 3))
    h = layers.Conv2D(6, 3, activation="relu")(i)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Conv2D(8, 3, padding="same")(h)
    h = layers.ReLU()(h)
    h = layers.MaxPooling2D(3, strides=2, padding="same")(h)
    return _seeded(keras.Model(i, layers.Dense(4)(layers.Flatten()(h))), 0)


def _squeeze_excite() -> keras.Model:
    """MobileNetV3's block: hard-swish, a squeeze-excite gate (a product of two path-dependent
    tensors) through hard-sigmoid."""
    i = keras.Input((8, 8, 3))
    h = layers.Activation("hard_swish")(layers.Conv2D(8, 3, padding="same")(i))
    s = layers.Dense(4, activation="relu")(layers.GlobalAveragePooling2D()(h))
    s = layers.Reshape((1, 1, 8))(layers.Dense(8, activation="hard_sigmoid")(s))
    h = layers.GlobalAveragePooling2D()(layers.Multiply()([h, s]))
    return _seeded(keras.Model(i, layers.Dense(3)(h)), 1)


def _layer_norm_gelu() -> keras.Model:
    """ConvNeXt's block: depthwise convolution, LayerNorm, GELU."""
    i = keras.Input((6, 6, 3))
    h = layers.Conv2D(8, 1)(layers.DepthwiseConv2D(3, padding="same")(i))
    h = layers.Dense(16, activation="gelu")(layers.LayerNormalization()(h))
    h = layers.GlobalAveragePooling2D()(layers.Dense(8)(h))
    return _seeded(keras.Model(i, layers.Dense(3)(h)), 2)


def _attention() -> keras.Model:
    """A ViT-style block: patches, keras.layers.MultiHeadAttention, LayerNorm, global max."""
    i = keras.Input((8, 8, 3))
    h = layers.Reshape((4, 8))(layers.Conv2D(8, 4, strides=4)(i))
    h = layers.LayerNormalization()(h + layers.MultiHeadAttention(2, 4)(h, h))
    return _seeded(keras.Model(i, layers.Dense(3)(layers.GlobalMaxPooling1D()(h))), 3)


def _sequential_softmax() -> keras.Model:
    return _seeded(keras.Sequential([
        keras.Input((5, 5, 2)), layers.Conv2D(4, 3, activation="tanh"), layers.Flatten(),
        layers.Dense(5, activation="sigmoid"), layers.Dense(3, activation="softmax"),
    ]), 4)


NETS = {
    "relu_cnn_max_pool": _relu_cnn,
    "squeeze_excite_hard_swish": _squeeze_excite,
    "layer_norm_gelu": _layer_norm_gelu,
    "multi_head_attention": _attention,
    "sequential_softmax": _sequential_softmax,
}


def _pieces(model, x: np.ndarray, baseline: np.ndarray, target: int, pieces: int,
            batch_size: int = 5):
    """Uniform secant pieces on every path through the session itself: attributions, the
    outputs' changes, the mean |piece residual| relative to the outputs' scale (at least 1),
    and the operations followed by fallback."""
    session = tf_backend.open_session(model, SessionOptions(batch_size=batch_size))
    n = x.shape[0]
    session.set_paths(x, baseline, np.arange(n), np.full(n, target))
    alpha = np.linspace(0.0, 1.0, pieces + 1)
    width = np.append(np.diff(alpha), 0.0)
    rows = RowBatch(np.repeat(np.arange(n), pieces + 1), np.tile(alpha, n), np.tile(width, n))
    counts = session.accumulate_intervals(rows, batch_size)
    taken = session.take()
    out = session.outputs(np.concatenate([x, baseline]))[:, target]
    session.close()
    assert taken.scores.shape == (len(rows),)
    # Every point once, but the baselines (counted as PyTorch counts them).
    assert counts.tolist() == [pieces] * n
    return (x - baseline) * taken.sums, out[:n] - out[n:], session.piece_residual / (
        pieces * n * max(1.0, float(np.abs(out).max()))), session.unhandled_ops


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_piece_is_complete_on_keras_nets(name: str) -> None:
    model = NETS[name]()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, *model.input_shape[1:])).astype(np.float32)
    baseline = 0.1 * rng.normal(size=x.shape).astype(np.float32)
    attr, gap, residual, unhandled = _pieces(model, x, baseline, target=1, pieces=7)
    assert unhandled == set()
    # float32 rounding only: each of the 14 pieces maps its input change to its score change.
    assert residual < 1e-6
    np.testing.assert_allclose(attr.reshape(2, -1).sum(1), gap, rtol=0, atol=1e-5 * abs(gap).max())
    # The public call agrees, also with steps="auto".
    result = igkit.integrated_gradients(model, x, method="secant", steps="auto", target=1)
    assert np.abs(result.delta).max() < 1e-5 * np.abs(gap).max()


def test_secant_converges_to_integrated_gradients() -> None:
    """Complete is not enough: the relations must be the average gradient. A float64 LayerNorm +
    GELU + attention net against a fine midpoint rule of plain gradients."""
    with _float64():
        model = _attention()
    x = np.random.default_rng(6).normal(size=(1, 8, 8, 3))
    n = 4000
    points = tf.constant(((np.arange(n) + 0.5) / n)[:, None, None, None] * x)
    with tf.GradientTape() as tape:
        tape.watch(points)
        score = tf.reduce_sum(model(points, training=False)[:, 0])
    reference = x * tape.gradient(score, points).numpy().mean(0, keepdims=True)
    errors = []
    for pieces in (16, 64):
        attr, _, _, _ = _pieces(model, x, np.zeros_like(x), target=0, pieces=pieces)
        errors.append(np.linalg.norm(attr - reference) / np.linalg.norm(reference))
    # Second order in the piece width: 16x less error at 4x the pieces (within a margin; the
    # global max over tokens takes turns among more than two inputs inside pieces).
    assert errors[1] < 1e-3
    assert errors[1] < errors[0] / 8


class _Unit(tf.Module):
    """F(x) = relu(w . x + b): one ReLU unit."""

    def __init__(self, w: np.ndarray, b: float) -> None:
        self.w = tf.Variable(w[:, None])
        self.b = b

    @tf.function
    def __call__(self, x):
        return tf.nn.relu(x @ self.w + self.b)


class _Product(tf.Module):
    """F(x) = (a . x) (b . x): a product of two path-dependent tensors."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = tf.constant(a[:, None]), tf.constant(b[:, None])

    @tf.function
    def __call__(self, x):
        return (x @ self.a) * (x @ self.b)


class _MaxOfTwo(tf.Module):
    """F(x) = max(a . x, b . x), through a nested tf.function."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = tf.constant(a[:, None]), tf.constant(b[:, None])

    @tf.function
    def lines(self, x):
        return x @ self.a, x @ self.b

    @tf.function
    def __call__(self, x):
        u, v = self.lines(x)
        return tf.maximum(u, v)


def _through(c: np.ndarray, x: np.ndarray, level: float) -> np.ndarray:
    """``x`` moved along ``c`` so that ``c . x == level``."""
    return x + c * (level - c @ x) / (c @ c)


def test_exact_on_analytic_cases_with_one_piece() -> None:
    """One piece is exact wherever each operation's input moves linearly: the unit switches,
    and the two lines cross, inside the path."""
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=6), rng.normal(size=6)
    x0, x1 = rng.normal(size=6), rng.normal(size=6)
    # The unit's input goes from -1 to 2: on for 2/3 of the path.
    u0, u1 = _through(a, x0, -1.3), _through(a, x1, 1.7)
    unit = (u1 - u0) * a * (2.0 / 3.0)
    # The lines a.x and b.x: a - b goes from 1 to -2, so a wins the first third.
    m0, m1 = _through(a - b, x0, 1.0), _through(a - b, x1, -2.0)
    maximum = (m1 - m0) * (a / 3.0 + 2.0 * b / 3.0)
    product = (x1 - x0) * (a * (b @ (x0 + x1)) + b * (a @ (x0 + x1))) / 2.0
    cases = {
        "relu unit": (_Unit(a, 0.3), u0, u1, unit),
        "product": (_Product(a, b), x0, x1, product),
        "max of two lines": (_MaxOfTwo(a, b), m0, m1, maximum),
    }
    for name, (model, start, end, exact) in cases.items():
        result = igkit.integrated_gradients(model, end[None], baseline=start[None],
                                            method="secant", steps=1, target=0)
        np.testing.assert_allclose(result.attributions[0], exact, rtol=1e-12, atol=1e-14,
                                   err_msg=name)


def test_same_attributions_as_torch_for_the_same_weights() -> None:
    """A ReLU CNN with max-pooling, built in both frameworks from one set of NumPy weights."""
    import torch

    rng = np.random.default_rng(8)
    w1, b1 = 0.5 * rng.normal(size=(3, 3, 3, 6)), 0.1 * rng.normal(size=6)
    w2, b2 = 0.3 * rng.normal(size=(3, 3, 6, 8)), 0.1 * rng.normal(size=8)
    w3, b3 = 0.3 * rng.normal(size=(8 * 2 * 2, 4)), 0.1 * rng.normal(size=4)
    with _float64():
        i = keras.Input((10, 10, 3))
        h = layers.MaxPooling2D(2)(layers.Conv2D(6, 3, activation="relu")(i))
        h = layers.MaxPooling2D(2)(layers.Conv2D(8, 3, padding="same", activation="relu")(h))
        # Flatten in torch's channel-first order, so that one dense weight serves both.
        h = layers.Flatten()(layers.Permute((3, 1, 2))(h))
        k_model = keras.Model(i, layers.Dense(4)(h))
    k_model.set_weights([w1, b1, w2, b2, w3, b3])
    t_model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32, 4)).double()
    with torch.no_grad():
        for layer, (w, b) in zip([t_model[0], t_model[3]], [(w1, b1), (w2, b2)], strict=True):
            layer.weight.copy_(torch.from_numpy(w.transpose(3, 2, 0, 1).copy()))
            layer.bias.copy_(torch.from_numpy(b))
        t_model[7].weight.copy_(torch.from_numpy(w3.T.copy()))
        t_model[7].bias.copy_(torch.from_numpy(b3))
    x = rng.normal(size=(2, 10, 10, 3))
    k = igkit.integrated_gradients(k_model, x, method="secant", steps=12, target=2)
    t = igkit.integrated_gradients(t_model, torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                                   method="secant", steps=12, target=2)
    t_attr = np.asarray(t.attributions).transpose(0, 2, 3, 1)
    assert np.linalg.norm(k.attributions - t_attr) <= 1e-12 * np.linalg.norm(t_attr)
    assert np.abs(k.delta).max() < 1e-12 and np.abs(t.delta).max() < 1e-12


class _Cumulative(tf.Module):
    @tf.function
    def __call__(self, x):
        return tf.math.cumprod(x, axis=1)[:, -2:]


def test_an_operation_without_a_rule_runs_at_the_midpoint_and_is_named() -> None:
    x = 0.5 + np.abs(np.random.default_rng(9).normal(size=(1, 6))).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coarse = igkit.integrated_gradients(_Cumulative(), x, method="secant", steps=4, target=0)
    named = [w for w in caught if issubclass(w.category, igkit.SecantFallbackWarning)]
    assert len(named) == 1 and "Cumprod" in str(named[0].message)
    assert np.abs(coarse.delta).max() > 1e-4  # a real completeness error, measured
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fine = igkit.integrated_gradients(_Cumulative(), x, method="secant", steps="auto",
                                          tol=1e-3, target=0)
    gap = fine.score - fine.baseline_score
    assert np.abs(fine.delta).max() <= 1e-3 * np.abs(gap).max()


def test_control_flow_on_the_input_is_refused_with_the_fix() -> None:
    @tf.function
    def gated(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x * 3.0)

    x = np.ones((1, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="control flow.*gauss_legendre"):
        igkit.integrated_gradients(gated, x, method="secant", steps=4, target=0)


def test_nested_auto_levels_do_not_trace_the_model_again() -> None:
    """``steps="auto"`` with Fejer keeps each level's nodes as paths of their own (3, 4, 8, 16,
    ... per input), so the per-path tensors change size at every level. The graph step takes
    any number of paths: the model is traced once per batch shape, not once per level (each
    trace of a real model costs seconds, and TensorFlow warned of retracing)."""
    with _float64():
        model = _layer_norm_gelu()
    traces: list[bool] = []

    class Counted(tf.Module):
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            traces.append(tf.executing_eagerly())  # in a graph: TensorFlow is tracing
            return model(x)

    x = np.random.default_rng(3).uniform(0.0, 1.0, (1, 6, 6, 3))
    res = igkit.integrated_gradients(Counted(), x, target=0, tol=1e-9, batch_size=8)
    traces = [t for t in traces if not t]
    assert res.method == "fejer" and res.converged.all()
    assert res.evaluations[0] >= 63  # 3, 7, 15, 31, 63, ... nodes: a new size at every level
    print(f"\n{len(traces)} traces, {res.evaluations[0]} evaluations")
    assert len(traces) <= 2, len(traces)  # 6 before: one per level and batch shape
