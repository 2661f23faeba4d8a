"""``method="auto"`` (the default), ``Result.error_estimate`` and stopping at the tolerance.

Every net has seeded random weights and runs in float64, so the references are exact to far
below the tolerances checked: secant with 2048 pieces on ReLU nets (about 1e-5 from exact),
Gauss-Legendre 256 on smooth ones.
"""

from __future__ import annotations

import argparse
import inspect
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import igkit
from igkit import api
from igkit.cli.options import add_ig_arguments
from igkit.workflow.settings import ExplainSettings

SIZE = 16


def relu_cnn(seed: int, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * width * (SIZE // 4) ** 2, 10),
    ).double().eval()


class SmoothNet(nn.Module):
    """Convolution, LayerNorm and GELU: a ConvNeXt-like block and a linear head."""

    def __init__(self, seed: int, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.LayerNorm([width, SIZE, SIZE])
        self.down = nn.Conv2d(width, width, 3, padding=1, stride=2)
        self.head = nn.Linear(width * (SIZE // 2) ** 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.norm(self.conv(x)))
        x = nn.functional.gelu(self.down(x))
        return self.head(x.flatten(1))


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(100 + seed).uniform(0.0, 1.0, (1, 3, SIZE, SIZE))


def reference(net: nn.Module, x: np.ndarray, smooth: bool = False) -> np.ndarray:
    method, steps = ("gauss_legendre", 256) if smooth else ("secant", 2048)
    return igkit.integrated_gradients(net, x, target=0, method=method, steps=steps,
                                      tol=1.0).attributions


def relative(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def relu_case():
    net, x = relu_cnn(0), image(0)
    return net, x, reference(net, x)


def test_auto_is_a_registered_rule_and_the_default_everywhere():
    assert "auto" in igkit.available_methods()
    for framework in ("torch", "tensorflow", "jax"):
        assert api.why_unsupported(framework, "auto") is None
    # Secant is refused at reduced precision; "auto" then runs Gauss-Legendre instead.
    assert api.why_unsupported("torch", "auto", precision="bf16") is None
    signature = inspect.signature(igkit.integrated_gradients).parameters
    python = {k: signature[k].default for k in ("method", "steps", "tol", "max_steps")}
    assert python == {"method": "auto", "steps": "auto", "tol": 0.01, "max_steps": 1024}
    settings = ExplainSettings()
    assert {k: getattr(settings, k) for k in python} == python
    parser = argparse.ArgumentParser()
    add_ig_arguments(parser)
    args = parser.parse_args([])
    assert {k: getattr(args, k) for k in python} == python


def test_auto_picks_secant_on_a_relu_net_and_records_it(relu_case):
    net, x, ref = relu_case
    res = igkit.integrated_gradients(net, x, target=0)
    assert res.method == "secant"
    assert res.converged.all()
    # Fejer at 3, 7 and 15 nested nodes (the probe), the 16-piece pilot, then the pieces.
    assert res.evaluations[0] >= 15 + 16 + 32
    assert relative(res.attributions, ref) <= 0.01


def test_auto_keeps_fejer_on_a_smooth_net():
    net = SmoothNet(0).double().eval()
    x = image(1)
    ref = reference(net, x, smooth=True)
    res = igkit.integrated_gradients(net, x, target=0, tol=1e-3)
    assert res.method == "fejer"
    assert res.converged.all()
    # Fejer's nested levels converge geometrically here: 3, 7 and 15 nodes meet 1e-3 in 15
    # evaluations (the 15 contain the 7 and the 3), and the estimate bounds the true error.
    assert res.evaluations[0] == 15
    true = relative(res.attributions, ref)
    assert true <= res.error_estimate[0] <= 1e-3
    # The nested levels give exactly the fixed rule at the same node count: the kept nodes are
    # re-weighted, not summed with the coarser level's weights.
    fixed = igkit.integrated_gradients(net, x, target=0, method="fejer", steps=15, tol=1.0)
    np.testing.assert_allclose(res.attributions, fixed.attributions, rtol=0, atol=1e-15)
    # Tighter, the call keeps going with Fejer: 31 nodes, 16 more evaluations.
    tight = igkit.integrated_gradients(net, x, target=0, tol=1e-8)
    assert tight.method == "fejer" and tight.converged.all()
    assert tight.evaluations[0] == 31
    assert relative(tight.attributions, ref) <= 1e-8
    # Secant would need far more on this net: 424 evaluations for 1e-5.
    secant = igkit.integrated_gradients(net, x, target=0, tol=1e-5, method="secant")
    assert secant.evaluations[0] > 4 * tight.evaluations[0]


def test_fixed_steps_auto_is_gauss_legendre_on_every_backend(relu_case):
    net, x, _ = relu_case
    auto = igkit.integrated_gradients(net, x, target=0, steps=16, tol=1.0)
    gl = igkit.integrated_gradients(net, x, target=0, steps=16, method="gauss_legendre",
                                    tol=1.0)
    assert auto.method == "gauss_legendre" and auto.evaluations[0] == 16
    np.testing.assert_array_equal(auto.attributions, gl.attributions)
    # One level has no error estimate.
    assert np.isnan(auto.error_estimate[0])


def test_reduced_precision_auto_runs_gauss_legendre():
    net = relu_cnn(1).float()
    x = image(1).astype(np.float32)
    res = igkit.integrated_gradients(net, x, target=0, precision="bf16", tol=0.05)
    assert res.method == "gauss_legendre"


def test_error_estimate_tracks_the_true_error(relu_case):
    # Secant at fixed piece counts: true / estimate within [0.2, 2] on this net (the
    # calibration nets give 0.3-1.4, benchmarks/secant_calibration.py).
    net, x, ref = relu_case
    for pieces in (48, 96):
        res = igkit.integrated_gradients(net, x, target=0, method="secant", steps=pieces,
                                         tol=1.0)
        ratio = relative(res.attributions, ref) / res.error_estimate[0]
        assert 0.2 <= ratio <= 2.0, (pieces, ratio)
        assert res.numbers()["error_estimate"] == pytest.approx(res.error_estimate[0])
        assert "estimated attribution error" in res.completeness_report(0)
    # Gauss-Legendre auto on the ReLU net: its estimate (the change between the last two
    # levels, extrapolated with their rate) is within a factor 4 of the true error.
    res = igkit.integrated_gradients(net, x, target=0, method="gauss_legendre", tol=0.01)
    ratio = relative(res.attributions, ref) / res.error_estimate[0]
    assert 0.25 <= ratio <= 4.0, ratio


def test_error_estimate_is_per_explanation_and_scatters_like_the_others(relu_case):
    net, _, _ = relu_case
    x = np.concatenate([image(2), image(3)])
    res = igkit.integrated_gradients(net, x, target=[[0, 1], [2, 3]], method="secant",
                                     steps=48, tol=1.0)
    assert res.error_estimate.shape == res.relative_error.shape == (2, 2)
    singles = res.per_target()
    assert [float(s.error_estimate[0]) for s in singles] == res.error_estimate.ravel().tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_default_auto_stops_between_a_quarter_of_tol_and_tol(seed):
    # Two of the calibration nets (benchmarks/secant_calibration.py). At looser tolerances the
    # least auto spends (the probe, the pilot and 32 pieces: 63 evaluations) is already more
    # accurate than asked on nets this small.
    net, x = relu_cnn(seed), image(seed)
    ref = reference(net, x)
    tol = 1e-3
    res = igkit.integrated_gradients(net, x, target=0, tol=tol)
    true = relative(res.attributions, ref)
    assert tol / 4 <= true <= tol, true
    # The goal: tol 1e-3 on a float64 ReLU CNN within 256 evaluations.
    assert res.evaluations[0] <= 256


@pytest.mark.parametrize("method", ["auto", "secant", "gauss_legendre", "adaptive"])
def test_auto_steps_never_spend_more_than_max_steps(method, relu_case):
    net, x, _ = relu_case
    with pytest.warns(igkit.NotConvergedWarning, match="converged is False"):
        res = igkit.integrated_gradients(net, x, target=0, method=method, tol=1e-7,
                                         max_steps=100)
    assert res.evaluations[0] <= 100
    # The bug: completeness was enough for converged=True after a NotConvergedWarning
    # (secant's completeness is exact by construction).
    assert not res.converged.any()


def test_not_converged_is_per_explanation(relu_case):
    net, _, _ = relu_case
    x = np.concatenate([image(0), image(0) * 0.0 + 0.5])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = igkit.integrated_gradients(net, x, target=0, tol=3e-3, max_steps=120)
    missed = [w for w in caught if issubclass(w.category, igkit.NotConvergedWarning)]
    converged = res.converged.tolist()
    assert (not missed) == all(converged)
    assert (res.evaluations <= 120).all()


def test_the_report_counts_evaluations(relu_case):
    net, x, _ = relu_case
    res = igkit.integrated_gradients(net, x, target=0, method="gauss_legendre", tol=0.01)
    assert f"after {int(res.evaluations[0])} evaluations (gauss_legendre)" in (
        res.completeness_report(0))
    assert res.evaluations[0] > res.steps[0]  # the refinement's levels, not the last one


def test_the_rule_figure_of_an_auto_run_draws_the_rule_auto_runs():
    # A run's settings say "auto"; the figure draws what auto runs for its steps.
    from igkit.viz.styles import riemann_figure

    auto = riemann_figure("auto", "auto")
    assert "secant rule" in auto._suptitle.get_text()
    fixed = riemann_figure("auto", 8)
    assert "Gauss-Legendre" in fixed._suptitle.get_text()
