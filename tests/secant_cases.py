"""The secant conformance cases: small networks built from the same seeded NumPy weights in
PyTorch, JAX and Keras, for ``tests/test_secant_conformance.py``.

Each case is one architecture class the secant rules must follow (``CASES``); ``build(framework,
case)`` returns a model that takes NHWC float64 images and returns ``(n, 4)`` scores, the same
function in every framework (``test_builders_agree`` checks the outputs). Every model takes its
input in NHWC so that attributions compare without a transpose.

Adding a backend to the suite means adding its name to ``BACKENDS`` in the test module; the
builders for all three frameworks are here already.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

CASES = ("relu_maxpool_cnn", "se_hardswish", "layernorm_gelu", "attention", "dense_softmax",
         "bias_relu_maxpool")
SHAPE = (6, 6, 3)  # one image, HWC
CLASSES = 4
EPS = 1e-5  # LayerNorm's epsilon in every framework


def images(n: int = 2, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SHAPE))


def weights(case: str) -> dict[str, np.ndarray]:
    """Seeded float64 weights: convolution kernels HWIO, dense kernels (in, out)."""
    rng = np.random.default_rng(CASES.index(case) + 11)

    def w(*shape: int, scale: float = 1.0) -> np.ndarray:
        fan_in = int(np.prod(shape[:-1]))
        return rng.standard_normal(shape) * scale * np.sqrt(2.0 / fan_in)

    def b(n: int) -> np.ndarray:
        return 0.1 * rng.standard_normal(n)

    c = SHAPE[-1]
    if case == "relu_maxpool_cnn":
        return {"k1": w(3, 3, c, 6), "b1": b(6), "k2": w(3, 3, 6, 8), "b2": b(8),
                "d": w(8, CLASSES), "db": b(CLASSES)}
    if case == "se_hardswish":
        return {"k1": w(3, 3, c, 8, scale=2.0), "b1": b(8), "s1": w(8, 4), "sb1": b(4),
                "s2": w(4, 8, scale=2.0), "sb2": b(8), "d": w(8, CLASSES), "db": b(CLASSES)}
    if case == "layernorm_gelu":
        return {"e": w(c, 12, scale=2.0), "eb": b(12), "g": 1.0 + b(12), "gb": b(12),
                "d": w(12, CLASSES), "db": b(CLASSES)}
    if case == "attention":
        return {"e": w(c, 8, scale=2.0), "eb": b(8), "q": w(8, 8), "k": w(8, 8), "v": w(8, 8),
                "d": w(8, CLASSES), "db": b(CLASSES)}
    if case == "dense_softmax":
        return {"h": w(int(np.prod(SHAPE)), 16), "hb": b(16), "d": w(16, CLASSES, scale=2.0),
                "db": b(CLASSES)}
    if case == "bias_relu_maxpool":
        # A bias per position and channel after the convolution: the pooled windows' lines
        # start apart, so winners change inside pieces where the maximum crosses zero, and
        # pool(relu(z)) and relu(pool(z)) are different relations there (JAX put the bias
        # into the ReLU's chain and no longer fused the ReLU behind the pool: 7.8e-4).
        return {"k1": w(3, 3, c, 16, scale=4.0), "b1": b(16),
                "pos": 0.5 * rng.standard_normal((*SHAPE[:2], 16)), "d": w(16, CLASSES),
                "db": b(CLASSES)}
    raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")


# --- PyTorch -----------------------------------------------------------------------------------


def _torch_model(case: str, p: dict[str, np.ndarray]) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    t = {k: torch.from_numpy(v) for k, v in p.items()}

    def conv(x, k, b):  # NCHW, HWIO kernel
        return F.conv2d(x, k.permute(3, 2, 0, 1), b, padding=1)

    class Net(nn.Module):
        def forward(self, x):  # NHWC in
            if case == "relu_maxpool_cnn":
                y = F.max_pool2d(F.relu(conv(x.permute(0, 3, 1, 2), t["k1"], t["b1"])), 2)
                y = F.relu(conv(y, t["k2"], t["b2"])).mean((2, 3))
                return y @ t["d"] + t["db"]
            if case == "bias_relu_maxpool":
                y = conv(x.permute(0, 3, 1, 2), t["k1"], t["b1"]) + t["pos"].permute(2, 0, 1)
                y = F.max_pool2d(F.relu(y), 2).mean((2, 3))
                return y @ t["d"] + t["db"]
            if case == "se_hardswish":
                y = F.hardswish(conv(x.permute(0, 3, 1, 2), t["k1"], t["b1"]))
                s = F.relu(y.mean((2, 3)) @ t["s1"] + t["sb1"])
                s = F.hardsigmoid(s @ t["s2"] + t["sb2"])
                y = y * s[:, :, None, None]
                return y.mean((2, 3)) @ t["d"] + t["db"]
            tokens = x.reshape(x.shape[0], -1, x.shape[-1])
            if case == "layernorm_gelu":
                h = tokens @ t["e"] + t["eb"]
                h = F.layer_norm(h, (h.shape[-1],), t["g"], t["gb"], EPS)
                return F.gelu(h).mean(1) @ t["d"] + t["db"]
            if case == "attention":
                h = tokens @ t["e"] + t["eb"]
                q, k, v = h @ t["q"], h @ t["k"], h @ t["v"]
                a = torch.softmax(q @ k.transpose(1, 2) / np.sqrt(q.shape[-1]), -1)
                return (a @ v).mean(1) @ t["d"] + t["db"]
            h = F.relu(x.reshape(x.shape[0], -1) @ t["h"] + t["hb"])
            return torch.softmax(h @ t["d"] + t["db"], -1)

    return Net().double().eval()


# --- JAX ---------------------------------------------------------------------------------------


def _jax_forward(case: str, p: dict[str, Any], x: Any) -> Any:
    import jax
    import jax.numpy as jnp

    def conv(y, k, b):
        return jax.lax.conv_general_dilated(
            y, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    if case == "relu_maxpool_cnn":
        y = jax.nn.relu(conv(x, p["k1"], p["b1"]))
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        y = jax.nn.relu(conv(y, p["k2"], p["b2"])).mean((1, 2))
        return y @ p["d"] + p["db"]
    if case == "bias_relu_maxpool":
        y = jax.nn.relu(conv(x, p["k1"], p["b1"]) + p["pos"])
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return y.mean((1, 2)) @ p["d"] + p["db"]
    if case == "se_hardswish":
        y = jax.nn.hard_swish(conv(x, p["k1"], p["b1"]))
        s = jax.nn.relu(y.mean((1, 2)) @ p["s1"] + p["sb1"])
        s = jax.nn.hard_sigmoid(s @ p["s2"] + p["sb2"])
        y = y * s[:, None, None, :]
        return y.mean((1, 2)) @ p["d"] + p["db"]
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])
    if case == "layernorm_gelu":
        h = tokens @ p["e"] + p["eb"]
        mean = h.mean(-1, keepdims=True)
        var = ((h - mean) ** 2).mean(-1, keepdims=True)
        h = (h - mean) * jax.lax.rsqrt(var + EPS) * p["g"] + p["gb"]
        return jax.nn.gelu(h, approximate=False).mean(1) @ p["d"] + p["db"]
    if case == "attention":
        h = tokens @ p["e"] + p["eb"]
        q, k, v = h @ p["q"], h @ p["k"], h @ p["v"]
        a = jax.nn.softmax(q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1]), -1)
        return (a @ v).mean(1) @ p["d"] + p["db"]
    h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["h"] + p["hb"])
    return jax.nn.softmax(h @ p["d"] + p["db"], -1)


def _jax_model(case: str, p: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp

    return jax.jit(functools.partial(_jax_forward, case, {k: jnp.asarray(v) for k, v in
                                                          p.items()}))


# --- Keras -------------------------------------------------------------------------------------


def _keras_model(case: str, p: dict[str, np.ndarray]) -> Any:
    import keras
    from keras import layers, ops

    inp = keras.Input(SHAPE, dtype="float64")

    def dense(y, w, b=None, act=None):
        layer = layers.Dense(w.shape[1], activation=act, use_bias=b is not None, dtype="float64")
        out = layer(y)
        layer.set_weights([w] if b is None else [w, b])
        return out

    def conv(y, k, b, act=None):
        layer = layers.Conv2D(k.shape[-1], 3, padding="same", activation=act, dtype="float64")
        out = layer(y)
        layer.set_weights([k, b])
        return out

    if case == "relu_maxpool_cnn":
        y = layers.MaxPooling2D(2, dtype="float64")(conv(inp, p["k1"], p["b1"], "relu"))
        y = layers.GlobalAveragePooling2D(dtype="float64")(conv(y, p["k2"], p["b2"], "relu"))
        out = dense(y, p["d"], p["db"])
    elif case == "bias_relu_maxpool":
        y = layers.Activation("relu", dtype="float64")(ops.add(conv(inp, p["k1"], p["b1"]),
                                                               p["pos"]))
        y = layers.GlobalAveragePooling2D(dtype="float64")(
            layers.MaxPooling2D(2, dtype="float64")(y))
        out = dense(y, p["d"], p["db"])
    elif case == "se_hardswish":
        y = conv(inp, p["k1"], p["b1"], "hard_silu")
        s = layers.GlobalAveragePooling2D(dtype="float64")(y)
        s = dense(dense(s, p["s1"], p["sb1"], "relu"), p["s2"], p["sb2"], "hard_sigmoid")
        y = layers.Multiply(dtype="float64")([y, layers.Reshape((1, 1, -1), dtype="float64")(s)])
        out = dense(layers.GlobalAveragePooling2D(dtype="float64")(y), p["d"], p["db"])
    else:
        tokens = layers.Reshape((-1, SHAPE[-1]), dtype="float64")(inp)
        if case == "layernorm_gelu":
            h = dense(tokens, p["e"], p["eb"])
            norm = layers.LayerNormalization(epsilon=EPS, dtype="float64")
            h = norm(h)
            norm.set_weights([p["g"], p["gb"]])
            h = layers.Activation(lambda t: keras.activations.gelu(t, approximate=False),
                                  dtype="float64")(h)
            out = dense(layers.GlobalAveragePooling1D(dtype="float64")(h), p["d"], p["db"])
        elif case == "attention":
            h = dense(tokens, p["e"], p["eb"])
            q, k, v = dense(h, p["q"]), dense(h, p["k"]), dense(h, p["v"])
            scale = 1.0 / np.sqrt(p["q"].shape[1])
            s = layers.Lambda(lambda qk: ops.matmul(qk[0], ops.transpose(qk[1], (0, 2, 1)))
                              * scale, dtype="float64")([q, k])
            a = layers.Softmax(axis=-1, dtype="float64")(s)
            y = layers.Lambda(lambda av: ops.matmul(av[0], av[1]), dtype="float64")([a, v])
            out = dense(layers.GlobalAveragePooling1D(dtype="float64")(y), p["d"], p["db"])
        else:
            h = dense(layers.Flatten(dtype="float64")(inp), p["h"], p["hb"], "relu")
            out = dense(h, p["d"], p["db"], "softmax")
    return keras.Model(inp, out)


_BUILDERS: dict[str, Callable[[str, dict[str, np.ndarray]], Any]] = {
    "torch": _torch_model,
    "jax": _jax_model,
    "tensorflow": _keras_model,
}


def build(framework: str, case: str) -> Any:
    """The case's model in ``framework`` ("torch", "jax" or "tensorflow" for Keras)."""
    return _BUILDERS[framework](case, weights(case))


def forward(framework: str, model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs at ``x`` as float64 NumPy (for the builders' agreement test)."""
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    if framework == "jax":
        import jax.numpy as jnp

        return np.asarray(model(jnp.asarray(x)))
    return np.asarray(model(x))


# --- analytic cases: one piece of secant is the exact IG ---------------------------------------

ANALYTIC = ("relu_unit", "product", "max_of_two")
D = 5  # input length of the analytic cases


def analytic_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two weight vectors and two biases; the units cross zero (and each other) inside (0, 1)
    on the path from 0 to ``analytic_input()``."""
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal(D), rng.standard_normal(D)
    x = analytic_input()[0]
    b = np.array([-0.4 * float(w1 @ x), -0.3 * float(w2 @ x) + 0.2 * float(w1 @ x)])
    return w1, w2, b


def analytic_input() -> np.ndarray:
    return np.linspace(0.5, 1.5, D)[None]


def analytic_exact(name: str) -> np.ndarray:
    """The exact IG from the zero baseline of the analytic case ``name`` (units linear in
    alpha: ``u(alpha) = alpha s + b``)."""
    w1, w2, b = analytic_weights()
    x = analytic_input()[0]
    s1, s2 = float(w1 @ x), float(w2 @ x)
    if name == "relu_unit":
        # relu'(u) averaged over alpha: the share of [0, 1] where u > 0.
        cross = -b[0] / s1
        frac = (1 - cross) if s1 > 0 else cross
        return (x * w1 * np.clip(frac, 0, 1))[None]
    if name == "product":
        # u v with u, v linear in alpha: the gradient averages to the midpoint's.
        u, v = 0.5 * s1 + b[0], 0.5 * s2 + b[1]
        return (x * (w1 * v + w2 * u))[None]
    # max(u1, u2): each unit's share of [0, 1] where it is the larger.
    cross = (b[1] - b[0]) / (s1 - s2)
    first_wins_at_start = b[0] > b[1]
    f1 = np.clip(cross, 0, 1) if first_wins_at_start else 1 - np.clip(cross, 0, 1)
    return (x * (w1 * f1 + w2 * (1 - f1)))[None]


def build_analytic(framework: str, name: str) -> Any:
    """The analytic case ``name`` in ``framework``: ``(n, D) -> (n, 1)``."""
    w1, w2, b = analytic_weights()
    if framework == "torch":
        import torch

        t1, t2, tb = (torch.from_numpy(a) for a in (w1, w2, b))

        class Unit(torch.nn.Module):
            def forward(self, x):
                u, v = x @ t1 + tb[0], x @ t2 + tb[1]
                if name == "relu_unit":
                    out = torch.relu(u)
                elif name == "product":
                    out = u * v
                else:
                    out = torch.maximum(u, v)
                return out[:, None]

        return Unit().double()
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        j1, j2, jb = (jnp.asarray(a) for a in (w1, w2, b))

        def unit(x):
            u, v = x @ j1 + jb[0], x @ j2 + jb[1]
            if name == "relu_unit":
                out = jax.nn.relu(u)
            elif name == "product":
                out = u * v
            else:
                out = jnp.maximum(u, v)
            return out[:, None]

        return jax.jit(unit)
    import keras
    from keras import ops

    inp = keras.Input((D,), dtype="float64")

    def unit(x):
        u = ops.matmul(x, w1[:, None]) + b[0]
        v = ops.matmul(x, w2[:, None]) + b[1]
        if name == "relu_unit":
            return ops.relu(u)
        if name == "product":
            return u * v
        return ops.maximum(u, v)

    return keras.Model(inp, keras.layers.Lambda(unit, dtype="float64")(inp))
