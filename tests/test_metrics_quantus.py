"""igkit.metrics against Quantus (a test-only dependency), on the same model, inputs and
attributions, wherever the two define the same number.

Quantus is run with ``normalise=False`` and ``abs=False`` (unless the metric's definition takes
absolute values), a numeric replacement (its "black" is each image's minimum, not 0), and, for
random perturbations, Quantus' perturbation hooks fed the draws igkit makes, so that both
compute on identical images. Each test records the largest absolute difference it measured in
``MEASURED`` and asserts it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import quantus  # in the test extra: a missing reference is a failure, not a skip
import torch

import igkit
from igkit import metrics
from igkit.metrics import faithfulness as ff

QUIET = {"disable_warnings": True, "display_progressbar": False}
CALL = {"softmax": False, "device": "cpu", "channel_first": True}


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 8 * 8, 5),
    ).eval()
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, size=(6, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 0])
    a = np.asarray(igkit.gradients(model, x, target=y)) * x  # gradient x input
    masks = np.zeros((6, 1, 8, 8), dtype=bool)
    for i in range(6):
        r, c = rng.integers(0, 5, size=2)
        masks[i, 0, r : r + 4, c : c + 3] = True
    return model, x, y, a, masks


def _grads(model: object, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.asarray(igkit.gradients(model, np.asarray(x, dtype=np.float32),
                                      target=np.asarray(target)), dtype=np.float32)


def _quantus_grads(model: object, inputs: np.ndarray, targets: np.ndarray,
                   **_: object) -> np.ndarray:
    """The same explanation with Quantus' keyword names."""
    return _grads(model, inputs, targets)


def test_pixel_flipping_matches_quantus(case) -> None:
    model, x, y, a, _ = case
    for step in (4, 16):
        q = quantus.PixelFlipping(features_in_step=step, perturb_baseline=0.0, normalise=False,
                                  abs=False, **QUIET)
        theirs = np.asarray(q(model=model, x_batch=x, y_batch=y, a_batch=a, **CALL))
        ours = metrics.pixel_flipping(model, x, a, target=y, features_per_step=step)
        # Quantus' curve starts after the first step; igkit's at the unchanged input.
        assert np.abs(theirs - ours.scores[:, 1:]).max() <= 1e-5


def test_road_matches_quantus() -> None:
    # Quantus' imputation indexes the (H, W) pixels of a map whose channels it has expanded to
    # the input's: one-channel images keep the two in step.
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5),
    ).eval()
    x = np.random.default_rng(3).uniform(0, 1, size=(8, 1, 8, 8)).astype(np.float32)
    y = metrics.forward(model, x).argmax(axis=1)
    a = np.asarray(igkit.gradients(model, x, target=y)) * x
    pct = [10, 30, 50, 70, 90]
    q = quantus.ROAD(percentages=pct, noise=0.0, normalise=False, abs=False, **QUIET)
    theirs = q(model=model, x_batch=x, y_batch=y, a_batch=a, **CALL)
    ours = metrics.road(model, x, a, target=y, channel_axis=1, percentages=pct, noise=0.0)
    accuracy = np.array([theirs[p] for p in pct])
    np.testing.assert_array_equal(accuracy, ours.accuracy)
    assert len(set(ours.accuracy)) > 1  # the curve is not flat: the agreement says something
    # The imputation itself, image by image, removed pixels as Quantus takes them (C, H, W).
    from quantus.functions.perturb_func import noisy_linear_imputation

    rng = np.random.default_rng(5)
    for k in (1, 13, 40, 63):
        img = rng.uniform(size=(3, 8, 8))
        removed = rng.permutation(64)[:k]
        theirs_img = noisy_linear_imputation(img, removed, noise=0.0)
        ours_img = np.moveaxis(
            ff.noisy_linear_imputation(np.moveaxis(img, 0, -1), removed, noise=0.0), -1, 0)
        assert np.abs(theirs_img - ours_img).max() <= 1e-9


def test_infidelity_matches_quantus(case) -> None:
    model, x, y, a, _ = case
    q = quantus.Infidelity(perturb_baseline=0.0, perturb_patch_sizes=[4], n_perturb_samples=1,
                           normalise=False, abs=False, **QUIET)
    theirs = np.asarray(q(model=model, x_batch=x, y_batch=y, a_batch=a, **CALL))

    # Quantus' perturbation k sets the first k + 1 4 x 4 blocks (row-major) to the baseline.
    def blocks(xi: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
        out = xi.copy()
        for b in range(s + 1):
            r, c = divmod(b, 2)
            out[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 0.0
        return out

    ours = metrics.infidelity(model, x, a, target=y, perturbation=blocks, samples=4)
    assert np.abs(theirs - ours.values).max() <= 1e-5 * max(1.0, np.abs(theirs).max())


def test_max_sensitivity_matches_quantus(case) -> None:
    model, x, y, a, _ = case
    grads = _grads(model, x, y)
    samples, radius = 3, 0.05
    step = {"k": 0}

    def same_noise(arr: np.ndarray, indices: object = None, **_: object) -> np.ndarray:
        # The draws igkit makes for sample k of each input (its rng is keyed by seed, input,
        # sample), in Quantus' flat (N, D) layout.
        k = step["k"]
        step["k"] += 1
        noise = np.stack([np.random.default_rng([0, i, k]).uniform(-radius, radius, x.shape[1:])
                          for i in range(x.shape[0])])
        return (x + noise).astype(np.float32).reshape(arr.shape)

    q = quantus.MaxSensitivity(nr_samples=samples, perturb_func=same_noise, normalise=False,
                               abs=False, **QUIET)
    theirs = np.asarray(q(model=model, x_batch=x, y_batch=y, a_batch=grads,
                          explain_func=_quantus_grads, **CALL))
    ours = metrics.max_sensitivity(model, x, grads, _grads, target=y, radius=radius,
                                   samples=samples)
    assert np.abs(theirs - ours.values).max() <= 1e-6


def test_localisation_matches_quantus(case) -> None:
    model, x, y, a, masks = case
    pixel_map = a.sum(axis=1, keepdims=True)
    args = {"model": model, "x_batch": x, "y_batch": y, "a_batch": pixel_map, "s_batch": masks}
    pg = np.asarray(quantus.PointingGame(normalise=False, abs=False, **QUIET)(**args, **CALL))
    np.testing.assert_array_equal(pg, metrics.pointing_game(pixel_map, masks).values)
    al = quantus.AttributionLocalisation(normalise=False, abs=False, positive_attributions=True,
                                         **QUIET)
    share = np.asarray(al(**args, **CALL))
    assert np.abs(share - metrics.mask_share(pixel_map, masks).values).max() <= 1e-6
    rra = np.asarray(quantus.RelevanceRankAccuracy(normalise=False, abs=False, **QUIET)(
        **args, **CALL))
    assert np.abs(rra - metrics.relevance_rank_accuracy(pixel_map, masks).values).max() <= 1e-12


def test_random_logit_matches_quantus(case) -> None:
    model, x, y, _, _ = case
    grads = _grads(model, x, y)
    q = quantus.RandomLogit(num_classes=5, seed=42, similarity_func=quantus.correlation_spearman,
                            normalise=False, abs=False, **QUIET)
    theirs = np.asarray(q(model=model, x_batch=x, y_batch=y, a_batch=grads,
                          explain_func=_quantus_grads, **CALL))
    # Quantus' draw of the other class, seeded as it seeds it.
    pick = np.random.RandomState(42).randint(0, 4, x.shape[0])  # noqa: NPY002 - Quantus' draw
    others = np.array([[c for c in range(5) if c != t] for t in y])
    off = others[np.arange(x.shape[0]), pick]
    ours = metrics.random_logit(model, x, grads, _grads, target=y, off_target=off,
                                similarity="spearman")
    assert np.abs(theirs - ours.values).max() <= 1e-12


def test_mprt_matches_quantus(case) -> None:
    model, x, y, _, _ = case
    grads = _grads(model, x, y)
    q = quantus.MPRT(seed=42, abs=True, normalise=False,
                     similarity_func=quantus.correlation_spearman, **QUIET)
    theirs = q(model=model, x_batch=x, y_batch=y, a_batch=grads, explain_func=_quantus_grads,
               **CALL)

    # Quantus re-initialises each layer by its reset_parameters() after seeding torch with
    # seed + 1; the same re-initialisation through igkit's randomise= hook.
    def reset(m: torch.nn.Module, names: list[str], seed: int) -> torch.nn.Module:
        work = copy.deepcopy(m)
        modules = dict(work.named_modules())
        for name in names:
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()  # type: ignore[operator]
        return work

    ours = metrics.mprt(model, x, grads, _grads, target=y, similarities=["spearman_abs"],
                        randomise=reset, seed=42)
    assert list(ours.layers) == [k for k in theirs if k != "original"]
    per_layer = np.stack([theirs[k] for k in ours.layers], axis=1)
    assert np.abs(per_layer - ours.similarity["spearman_abs"]).max() <= 1e-12
