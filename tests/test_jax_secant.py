"""method="secant" on JAX (``igkit.backends.jax_secant``): Flax models, the fallback, batching,
float32, and the evaluations it saves against Gauss-Legendre. The rules shared with the other
backends are checked in ``tests/test_secant_conformance.py``."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import secant_cases as cases

import igkit

jax = pytest.importorskip("jax")
jnp = jax.numpy


@pytest.fixture
def x64() -> Iterator[None]:
    """64-bit JAX for one test (the flag is process-wide, so it is restored)."""
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield None
    finally:
        jax.config.update("jax_enable_x64", old)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _gl(model: Any, x: np.ndarray, steps: int, **kw: Any) -> igkit.Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        return igkit.integrated_gradients(model, x, method="gauss_legendre", steps=steps, **kw)


def test_a_flax_model_with_max_pool_layernorm_and_attention_is_complete(x64: None) -> None:
    """Flax's own layers (convolution, ReLU, max-pooling, LayerNorm, self-attention, GELU):
    their jaxprs nest jit calls and custom JVPs, and every piece stays exact."""
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            f64 = {"dtype": jnp.float64, "param_dtype": jnp.float64}
            y = nn.relu(nn.Conv(6, (3, 3), **f64)(x))
            y = nn.max_pool(y, (2, 2), strides=(2, 2))
            t = y.reshape(y.shape[0], -1, y.shape[-1])
            t = nn.LayerNorm(**f64)(t)
            t = t + nn.MultiHeadDotProductAttention(num_heads=2, **f64)(t)
            t = nn.gelu(nn.Dense(8, **f64)(t))
            return nn.Dense(3, **f64)(t.mean(1))

    x = cases.images()
    net = Net()
    params = net.init(jax.random.PRNGKey(0), jnp.asarray(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = igkit.integrated_gradients((net, params), x, target=[0, 2], method="secant",
                                         steps=4)
    assert res.method == "secant"
    assert res.attributions.dtype == np.float64
    assert np.all(res.relative_error <= 1e-10), res.relative_error
    assert np.abs(res.attributions).sum() > 0


def test_an_operation_without_a_rule_runs_at_its_midpoint_and_is_named(x64: None) -> None:
    """``cumprod`` has no secant rule: its midpoint gradient leaves a completeness error, which
    a warning names, and ``steps="auto"`` refines until it is within tol."""
    w = jnp.asarray(np.random.default_rng(0).standard_normal((5, 5)))

    @jax.jit
    def model(x):
        return jnp.cumprod(1.0 + 0.9 * jnp.tanh(2.0 * x @ w), axis=-1)[:, -1:]

    x = np.linspace(-1.0, 2.0, 5)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        with pytest.warns(igkit.SecantFallbackWarning, match="cumprod"):
            igkit.integrated_gradients(model, x, method="secant", steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", igkit.SecantFallbackWarning)
        res = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=1e-3)
    assert res.relative_error[0] <= 1e-3


def test_a_condition_that_flips_inside_a_piece_is_named(x64: None) -> None:
    """``where`` on a condition of another value than its branches: exact while it holds, a
    jump (named, no relation) where it flips."""

    @jax.jit
    def model(x):
        return jnp.where(x.sum(-1, keepdims=True) > 1.0, x[:, :1] * 2.0, x[:, 1:2])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        with pytest.warns(igkit.SecantFallbackWarning, match="select_n"):
            igkit.integrated_gradients(model, np.array([[1.5, 0.3]]), method="secant", steps=4)


def test_batches_pack_without_changing_the_result(x64: None) -> None:
    """Pieces of several paths share batches, split anywhere, and cross batch borders."""
    batch_size = 3
    model = cases.build("jax", "se_hardswish")
    x = cases.images(3)
    kw = {"target": [0, 1, 3], "method": "secant", "steps": 6}
    one = igkit.integrated_gradients(model, x, batch_size=64, **kw)
    res = igkit.integrated_gradients(model, x, batch_size=batch_size, **kw)
    np.testing.assert_allclose(res.attributions, one.attributions, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(res.evaluations, one.evaluations)


def test_float32_is_complete_to_float32_rounding() -> None:
    """The default float32: completeness within float32 rounding, and the float64 result of
    the same rule (PyTorch's, the same in JAX) to float32 accuracy."""
    model = jax.jit(functools.partial(cases._jax_forward, "attention", {
        k: jnp.asarray(v, dtype=jnp.float32) for k, v in cases.weights("attention").items()}))
    x = cases.images()
    kw = {"target": [1, 2], "method": "secant", "steps": 16}
    res = igkit.integrated_gradients(model, x.astype(np.float32), **kw)
    assert res.attributions.dtype == np.float32
    assert np.all(res.relative_error <= 1e-4), res.relative_error
    ref = igkit.integrated_gradients(cases.build("torch", "attention"), x, **kw)
    assert _rel(res.attributions, ref.attributions) < 1e-4


def test_secant_reaches_one_percent_with_fewer_evaluations_than_gauss_legendre(x64: None
                                                                              ) -> None:
    """On the ReLU CNN with a max-pool stem, the evaluations each rule needs for 1 % error
    (L2, against Gauss-Legendre at 512 nodes), over powers of two."""
    model = cases.build("jax", "relu_maxpool_cnn")
    x = cases.images()
    kw = {"target": [0, 2]}
    ref = _gl(model, x, 512, **kw).attributions

    def needed(run: Any) -> int:
        for n in (4, 8, 16, 32, 64, 128, 256, 512):
            res = run(n)
            if _rel(res.attributions, ref) <= 0.01:
                return int(res.evaluations.max())
        return 1024

    secant = needed(lambda n: igkit.integrated_gradients(
        model, x, method="secant", steps=n, **kw))
    gl = needed(lambda n: _gl(model, x, n, **kw))
    print(f"\nReLU CNN, 1 % error: secant {secant} evaluations, Gauss-Legendre {gl}")
    assert secant * 2 <= gl, (secant, gl)
