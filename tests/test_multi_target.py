"""Several targets per input: one path per (input, baseline, target), one Result with a target
axis, equal to separate single-target calls and complete per (input, target)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from analytic import NumpySession

import igkit
from igkit.core.engine import AutoSteps, run_integrated_gradients
from igkit.core.targets import labels_above, resolve_target_plan


def smooth_cnn(seed: int = 0, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(6, 8, 3, stride=2),
        torch.nn.SiLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).to(dtype)


@pytest.fixture
def images(rng) -> np.ndarray:
    return rng.random((3, 3, 10, 10))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


RAGGED = [[0, 3], [4], [2, 1, 0]]


@pytest.mark.parametrize("target", [np.array([[0, 3], [4, 1], [2, 0]]), RAGGED])
def test_multi_target_equals_separate_single_target_calls(target, images):
    model = smooth_cnn()
    kw = dict(steps=24, output="sigmoid", baseline=["black", "uniform"], seed=3, batch_size=7)
    multi = igkit.integrated_gradients(model, images, target=target, **kw)
    width = max(len(row) for row in target)
    assert multi.multi_target and multi.attributions.shape == (3, width, 3, 10, 10)
    assert multi.delta.shape == multi.target.shape == multi.target_mask.shape == (3, width)
    singles = {}  # the same batch (so the same random baselines), one class for all
    for i, row in enumerate(target):
        for k, t in enumerate(row):
            t = int(t)
            if t not in singles:
                singles[t] = igkit.integrated_gradients(model, images, target=t, **kw)
            one = singles[t]
            assert multi.target[i, k] == t
            assert _rel(multi.attributions[i, k], one.attributions[i]) <= 1e-6
            for name in ("score", "baseline_score", "delta"):
                np.testing.assert_allclose(
                    getattr(multi, name)[i, k], getattr(one, name)[i], rtol=1e-6, atol=1e-12
                )
            # Completeness holds per (input, target).
            gap = multi.score[i, k] - multi.baseline_score[i, k]
            assert abs(multi.attributions[i, k].sum() - gap) <= 1e-3 * abs(gap)
            assert multi.converged[i, k]


def test_float32_multi_target_matches_single_calls_to_float_precision(images):
    model = smooth_cnn(dtype=torch.float32)
    x = images.astype(np.float32)
    multi = igkit.integrated_gradients(model, x, target="all", steps=16, batch_size=16)
    assert multi.attributions.shape == (3, 5, 3, 10, 10)
    for t in range(5):
        one = igkit.integrated_gradients(model, x, target=t, steps=16, batch_size=16)
        assert _rel(multi.attributions[:, t], one.attributions) <= 1e-6


def test_ragged_slots_are_padded_and_skipped_by_pairs_and_per_target(images):
    res = igkit.integrated_gradients(
        smooth_cnn(), images, target=[[1], [], [3, 0]], steps=8, return_path=True
    )
    assert res.target.tolist() == [[1, -1], [-1, -1], [3, 0]]
    assert res.target_mask.tolist() == [[True, False], [False, False], [True, True]]
    assert np.all(res.attributions[1] == 0) and np.all(res.attributions[0, 1] == 0)
    assert np.isnan(res.score[1, 0]) and not res.converged[1].any() and res.steps[1, 0] == 0
    assert res.pairs() == [(0, 0), (2, 0), (2, 1)]
    singles = res.per_target()
    assert [int(s.target[0]) for s in singles] == [1, 3, 0]
    assert all(s.attributions.shape == (1, 3, 10, 10) and not s.multi_target for s in singles)
    np.testing.assert_array_equal(singles[1].attributions[0], res.attributions[2, 0])
    assert len(res.path.alphas) == 3 and singles[2].path.scores[0].shape == (8,)
    assert "relative error" in res.completeness_report(2, slot=1)
    with pytest.raises(IndexError, match="no target in slot 1"):
        res.completeness_report(0, slot=1)


def test_labels_above_explains_every_predicted_label(images):
    model = smooth_cnn()
    probs = 1 / (1 + np.exp(-model(torch.as_tensor(images)).detach().numpy()))
    threshold = float(np.median(probs))
    res = igkit.integrated_gradients(
        model, images, target=labels_above(threshold), steps=8, output="sigmoid"
    )
    for i in range(3):
        expected = np.flatnonzero(probs[i] > threshold).tolist()
        assert res.target[i][res.target_mask[i]].tolist() == expected
    with pytest.raises(ValueError, match="no input has a target"):
        igkit.integrated_gradients(model, images, target=labels_above(2.0), output="sigmoid")


def test_one_unbatched_example_keeps_the_batch_axis_with_several_targets(images):
    res = igkit.integrated_gradients(smooth_cnn(), images[0], target=[[2, 4]], steps=4)
    assert res.attributions.shape == (1, 2, 3, 10, 10)
    single = igkit.integrated_gradients(smooth_cnn(), images[0], target=2, steps=4)
    assert single.attributions.shape == (3, 10, 10)
    assert single.per_target() == [single]


def test_gradients_take_multi_targets(images):
    model = smooth_cnn()
    grads = igkit.gradients(model, images, target=RAGGED)
    assert grads.shape == (3, 3, 3, 10, 10)
    assert np.all(grads[1, 1:] == 0)
    for i, row in enumerate(RAGGED):
        for k, t in enumerate(row):
            one = igkit.gradients(model, images[i], target=t)
            np.testing.assert_allclose(grads[i, k], one, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ([[0, 0], [1], [2]], "lists class 0 twice"),
        ([[0], 1, [2]], "mixes ints and lists"),
        ([[0], [1]], "target has 2 rows but there are 3 inputs"),
        ([[0], [9], [1]], "target 9 is out of range"),
        ([[0.5], [1], [2]], "classes must be ints"),
        (np.zeros((2, 2), dtype=int), "target has 2 rows"),
        ("every", "got 'every'"),
        (lambda out: lambda o: o, "must return targets"),
    ],
)
def test_bad_multi_targets_are_refused(target, message):
    with pytest.raises(ValueError, match=message):
        resolve_target_plan(target, np.zeros((3, 5)))


# ------------------------------------------------------------- shared batches (NumPy session)


@dataclass
class SigmoidHeads:
    """F_c(x) = sigmoid(w_c . x) on flat inputs: several classes with closed-form IG."""

    w: np.ndarray  # (C, D)
    classes: int = field(init=False)

    def __post_init__(self) -> None:
        self.classes = self.w.shape[0]

    def f(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(x @ self.w.T)))

    def grad(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        s = self.f(x)[np.arange(x.shape[0]), t]
        return (s * (1 - s))[:, None] * self.w[t]


def test_rows_of_all_targets_share_batches_and_match_closed_forms(rng):
    heads = SigmoidHeads(rng.normal(size=(5, 6)))
    x, xb = rng.normal(size=(3, 6)), np.zeros((3, 6))
    session = NumpySession(heads, batch_size=10)
    res = run_integrated_gradients(
        session,
        x,
        [("black", xb)],
        target=RAGGED,
        method="gauss_legendre",
        steps=40,
        tol=0.01,
        batch_size=10,
    )
    pairs = sum(len(r) for r in RAGGED)
    # One model call per full batch of rows, whichever path (input, target) the rows are on.
    assert len(session.calls) == math.ceil(pairs * 40 / 10)
    assert all(c == 10 for c in session.calls)
    for i, row in enumerate(RAGGED):
        for k, t in enumerate(row):
            w = heads.w[t]
            exact = (
                (x[i] - xb[i])
                * w
                * (
                    (heads.f(x[i : i + 1])[0, t] - heads.f(xb[i : i + 1])[0, t])
                    / ((x[i] - xb[i]) @ w)
                )
            )
            np.testing.assert_allclose(res.attributions[i, k], exact, rtol=1e-9, atol=1e-12)


def test_auto_steps_and_adaptive_run_per_target(rng):
    heads = SigmoidHeads(rng.normal(size=(3, 5)))
    x, xb = rng.normal(size=(2, 5)), np.zeros((2, 5))
    for method, steps in (("gauss_legendre", AutoSteps(tol=1e-4)), ("adaptive", 32)):
        res = run_integrated_gradients(
            NumpySession(heads),
            x,
            [("black", xb)],
            target=[[0, 2], [1]],
            method=method,
            steps=steps,
            tol=1e-3,
            batch_size=16,
        )
        assert res.target_mask.tolist() == [[True, True], [True, False]]
        assert np.all(res.relative_error[res.target_mask] <= 1e-3), res.relative_error
        assert np.all(res.evaluations[res.target_mask] > 0)
