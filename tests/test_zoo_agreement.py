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


def test_jax_float32_hard_sigmoid_gates_are_as_good_as_float64() -> None:
    """The MobileNetV3-style net: against float32 torch, what is left is torch's own rounding
    (its hard-sigmoid slopes on SE gates whose input moves by a few ulps, 1.9e-4 here);
    against torch in float64, JAX's float32 is at float32's level."""
    net = "mobilenet"
    x = zoo_nets.zoo_images(1, size=32)
    exact = _secant(zoo_nets.build(net, "torch").double(),
                    zoo_nets.to_framework_layout(x.astype(np.float64), "torch"), net)
    res = _secant(zoo_nets.build(net, "jax"), x, net, int(np.ravel(exact.target)[0]))
    diff = _rel(np.asarray(res.attributions).transpose(0, 3, 1, 2), exact.attributions)
    print(f"\n{net}: JAX float32 vs torch float64 secant, {PIECES} pieces: relative L2 {diff:.1e}")
    assert diff <= 1e-5, diff
