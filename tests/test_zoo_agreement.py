"""JAX and PyTorch give the same float32 secant attributions on the zoo's nets (issue 16).

The conformance suite (``tests/test_secant_conformance.py``) checks the rules in float64 on
small cases; what it cannot see is float32: a bias or an inference batch norm folded into an
activation's secant slope (``eps * |bias| / |dz|`` of it), or a piecewise-linear slope taken
where the input moved by a few ulps (an SE gate's hard-sigmoid). Here the zoo's ResNet, its
MobileNetV3-style net (hard-swish, squeeze-excite) and the Keras-tutorial Sequential (ReLU
before max-pooling, flatten, softmax) run in float32, built from one seed in both frameworks
(``benchmarks/zoo_nets.py``), at the benchmark's 64 pieces.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import zoo_nets  # noqa: E402

import igkit  # noqa: E402

PIECES = 64
# The bar: the same attributions for the same weights, relative L2.
AGREE = 1e-4


def _secant(model, x: np.ndarray, net: str, target: int | None = None) -> igkit.Result:
    with warnings.catch_warnings():
        # A few pieces of a softmax-saturated net may miss completeness at default tol.
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        return igkit.integrated_gradients(model, x, output=zoo_nets.OUTPUTS[net],
                                          baseline="black", method="secant", steps=PIECES,
                                          batch_size=32, target=target)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize(("net", "size"), [("resnet", 32), ("sequential", 64)])
def test_jax_gives_torchs_float32_secant_attributions(net: str, size: int) -> None:
    """A bias or batch norm before a ReLU (the ResNet: 3.7e-4 before), a ReLU before a
    max-pool after a bias (the Sequential: 6.8e-4 before, even in float64)."""
    x = zoo_nets.zoo_images(1, size=size)
    ref = _secant(zoo_nets.build(net, "torch"), zoo_nets.to_framework_layout(x, "torch"), net)
    res = _secant(zoo_nets.build(net, "jax"), x, net, int(np.ravel(ref.target)[0]))
    assert res.attributions.dtype == np.float32
    diff = _rel(np.asarray(res.attributions).transpose(0, 3, 1, 2), ref.attributions)
    print(f"\n{net}: JAX vs torch secant, float32, {PIECES} pieces: relative L2 {diff:.1e}")
    assert diff <= AGREE, diff


def test_float32_hard_sigmoid_gates_are_as_good_as_float64() -> None:
    """The MobileNetV3-style net: an SE gate's input that barely leaves its bias moves by a few
    ulps, where a float32 secant of hard-sigmoid is all rounding (1.9e-4 off float64 torch
    before the one-linear-piece test in torch, as in JAX). Torch and JAX in float32 are now
    both at float32's level against torch in float64, and so agree with each other."""
    net = "mobilenet"
    x = zoo_nets.zoo_images(1, size=32)
    exact = _secant(zoo_nets.build(net, "torch").double(),
                    zoo_nets.to_framework_layout(x.astype(np.float64), "torch"), net)
    target = int(np.ravel(exact.target)[0])
    torch32 = _secant(zoo_nets.build(net, "torch"), zoo_nets.to_framework_layout(x, "torch"),
                      net, target)
    res = _secant(zoo_nets.build(net, "jax"), x, net, target)
    jax32 = np.asarray(res.attributions).transpose(0, 3, 1, 2)
    diffs = {"torch float32 vs float64": _rel(torch32.attributions, exact.attributions),
             "JAX float32 vs torch float64": _rel(jax32, exact.attributions),
             "JAX vs torch, float32": _rel(jax32, torch32.attributions)}
    print("".join(f"\n{net}: {k}, {PIECES} pieces: relative L2 {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-5, diffs
