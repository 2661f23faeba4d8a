"""igkit.metrics against closed forms: analytic models whose curves, shares and errors are known
exactly, hand-made masks, and the published behaviour of the randomisation sanity check on a
small CNN trained here for a few seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import igkit
from igkit import metrics
from igkit.metrics import faithfulness as ff


def _linear(w: np.ndarray, bias: float = 0.0, classes: int = 1) -> torch.nn.Module:
    """f(x)_k = (k + 1) * w.x + bias, in float64 (exact sums)."""
    lin = torch.nn.Linear(w.size, classes, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(np.stack([(k + 1) * w.ravel() for k in range(classes)])))
        lin.bias.fill_(bias)
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


class _Counting(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.sizes = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(x.shape[0]))
        return self.inner(x)


@pytest.fixture
def linear_case(rng: np.random.Generator):
    w = rng.normal(size=(2, 3, 4))
    x = rng.uniform(0, 1, size=(5, 2, 3, 4))
    model = _linear(w, bias=0.25)
    ig = igkit.integrated_gradients(model, x, target=0, steps=4).attributions
    return w, x, model, ig


def test_ig_of_a_linear_model_is_w_times_x(linear_case) -> None:
    w, x, _, ig = linear_case
    np.testing.assert_allclose(ig, w * x, atol=1e-12)


def test_deletion_and_insertion_curves_of_a_linear_model_in_closed_form(linear_case) -> None:
    w, x, model, ig = linear_case
    contrib = np.sort((w * x).reshape(5, -1), axis=1)[:, ::-1]
    removed = np.concatenate([np.zeros((5, 1)), np.cumsum(contrib, axis=1)], axis=1)
    full = (w * x).reshape(5, -1).sum(axis=1, keepdims=True)
    dele = metrics.deletion(model, x, ig, target=0, features_per_step=1, batch_size=7)
    np.testing.assert_allclose(dele.scores, 0.25 + full - removed, atol=1e-12)
    ins = metrics.insertion(model, x, ig, target=0, replacement="black", features_per_step=1)
    np.testing.assert_allclose(ins.scores, 0.25 + removed, atol=1e-12)
    f = np.arange(25) / 24
    np.testing.assert_allclose(dele.fractions, f)
    expected_auc = ((dele.scores[:, 1:] + dele.scores[:, :-1]) / 2 / 24).sum(axis=1)
    np.testing.assert_allclose(dele.values, expected_auc, atol=1e-12)
    assert not dele.higher_is_better and ins.higher_is_better
    # Deleting the features with the largest contributions first makes the steepest fall: no
    # other order has a lower curve at any step.
    shuffled = metrics.deletion(model, x, np.random.default_rng(0).normal(size=x.shape),
                                target=0, features_per_step=1)
    assert np.all(dele.scores <= shuffled.scores + 1e-12)


def test_lerf_is_the_reverse_order_and_steps_pack_full_batches(linear_case) -> None:
    w, x, model, ig = linear_case
    counting = _Counting(model)
    contrib = np.sort((w * x).reshape(5, -1), axis=1)
    removed = np.concatenate([np.zeros((5, 1)), np.cumsum(contrib, axis=1)], axis=1)
    full = (w * x).reshape(5, -1).sum(axis=1, keepdims=True)
    lerf = metrics.pixel_flipping(counting, x, ig, order="lerf", target=0, batch_size=16)
    np.testing.assert_allclose(lerf.scores, 0.25 + full - removed, atol=1e-12)
    # 5 inputs x 25 points = 125 images after the first pass over the 5 inputs: 7 full batches
    # of 16 and one of 13, whatever input each image comes from.
    assert counting.sizes == [5] + [16] * 7 + [13]


def test_pixels_move_all_their_channels_and_replacements(linear_case) -> None:
    w, x, model, ig = linear_case
    # Channels on axis 1: a pixel is (2,) values, ranked by the sum of its channels.
    per_pixel = (w * x).sum(axis=1).reshape(5, -1)
    order = np.argsort(-per_pixel, axis=1, kind="stable")
    removed = np.concatenate(
        [np.zeros((5, 1)), np.cumsum(np.take_along_axis(per_pixel, order, 1), axis=1)], axis=1)
    full = per_pixel.sum(axis=1, keepdims=True)
    dele = metrics.deletion(model, x, ig, target=0, channel_axis=1, features_per_step=1)
    np.testing.assert_allclose(dele.scores, 0.25 + full - removed, atol=1e-12)
    # "mean": the removed values become each channel's mean over the image.
    mean = x.mean(axis=(2, 3), keepdims=True)
    gain = (w * (np.broadcast_to(mean, x.shape) - x)).sum(axis=1).reshape(5, -1)
    dm = metrics.deletion(model, x, ig, target=0, channel_axis=1, replacement="mean",
                          features_per_step=12)
    np.testing.assert_allclose(dm.scores[:, -1], 0.25 + full[:, 0] + gain.sum(axis=1),
                               atol=1e-12)
    blur = ff.replacement_images(x, "blur", channel_axis=1, blur_sigma=1.0)
    assert blur.shape == x.shape and np.allclose(blur.mean(), x.mean(), atol=0.05)
    with pytest.raises(ValueError, match="unknown replacement 'white'"):
        metrics.deletion(model, x, ig, replacement="white")
    with pytest.raises(ValueError, match="do not match the inputs' shape"):
        metrics.deletion(model, x, ig[:, :1, :2])


def test_road_imputation_is_the_neighbours_weighted_mean() -> None:
    img = np.arange(25, dtype=np.float64).reshape(5, 5, 1) ** 1.5
    out = ff.noisy_linear_imputation(img, np.array([12]), noise=0.0)  # the centre pixel
    sides = img[1, 2] + img[3, 2] + img[2, 1] + img[2, 3]
    diagonals = img[1, 1] + img[1, 3] + img[3, 1] + img[3, 3]
    np.testing.assert_allclose(out[2, 2], sides / 6 + diagonals / 12, rtol=1e-9)
    # A corner has 3 neighbours: weights 1/6, 1/6, 1/12 normalised by their sum 5/12.
    corner = ff.noisy_linear_imputation(img, np.array([0]), noise=0.0)
    np.testing.assert_allclose(corner[0, 0], (img[0, 1] + img[1, 0]) * 0.4 + img[1, 1] * 0.2,
                               rtol=1e-9)
    # Two removed neighbours are solved jointly: each is the weighted mean of the other and
    # its kept neighbours.
    two = ff.noisy_linear_imputation(img, np.array([12, 13]), noise=0.0)
    for r, q in ((2, 2), (2, 3)):
        nb = [(r + dr, q + dq, 1 / 6 if 0 in (dr, dq) else 1 / 12)
              for dr in (-1, 0, 1) for dq in (-1, 0, 1) if (dr, dq) != (0, 0)
              and 0 <= r + dr < 5 and 0 <= q + dq < 5]
        mean = sum(wt * two[a, b, 0] for a, b, wt in nb) / sum(wt for *_, wt in nb)
        np.testing.assert_allclose(two[r, q, 0], mean, rtol=1e-9)
    untouched = np.ones((5, 5), dtype=bool)
    untouched.ravel()[[12, 13]] = False
    np.testing.assert_array_equal(two[untouched], img[untouched])
    # A linear image is imputed exactly (the mean of a plane's neighbours is the plane).
    plane = (2.0 * np.arange(6)[:, None] + 3.0 * np.arange(6)[None, :])[..., None]
    holes = np.array([7, 8, 14, 21, 27, 28])
    np.testing.assert_allclose(ff.noisy_linear_imputation(plane, holes, noise=0.0), plane,
                               atol=1e-8)
    noisy = ff.noisy_linear_imputation(plane, holes, noise=0.5, rng=np.random.default_rng(0))
    assert 0.1 < np.std((noisy - plane).ravel()[holes]) < 1.5


def test_road_on_a_linear_model(rng: np.random.Generator) -> None:
    w = rng.normal(size=(1, 6, 6))
    x = rng.uniform(0, 1, size=(3, 1, 6, 6))
    model = _linear(w, classes=3)
    res = metrics.road(model, x, w * x, target=2, channel_axis=1, percentages=[0, 25, 50],
                       noise=0.0)
    assert res.scores.shape == (3, 3) and res.correct.dtype == bool
    np.testing.assert_allclose(res.scores[:, 0], 3 * (w * x).reshape(3, -1).sum(axis=1))
    for i in range(3):
        img = np.moveaxis(x[i], 0, -1)
        rel = (w * x)[i].ravel()
        removed = np.argsort(-rel, kind="stable")[:18]
        imputed = ff.noisy_linear_imputation(img, removed, noise=0.0)
        np.testing.assert_allclose(res.scores[i, 2], 3 * (w[0] * imputed[..., 0]).sum(),
                                   rtol=1e-6)


def test_localisation_on_hand_made_masks() -> None:
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 1], maps[0, 3, 3] = 5.0, 1.0  # maximum inside the mask
    maps[1, 3, 3], maps[1, 1, 1] = 5.0, 1.0  # maximum outside
    maps[2, 0, 0] = -2.0
    maps[2, 1, 2] = 3.0
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    np.testing.assert_array_equal(metrics.pointing_game(maps, mask).values, [1.0, 0.0, 0.0])
    # Positive mass: 5/6 and 1/6 inside; the third map's positive part is all outside.
    np.testing.assert_allclose(metrics.mask_share(maps, mask).values, [5 / 6, 1 / 6, 0.0])
    signed = metrics.mask_share(maps, mask, positive=False).values
    np.testing.assert_allclose(signed, [5 / 6, 1 / 6, -2.0])
    # |mask| = 4: the 4 highest of map 0 are (1,1), (3,3) and two zeros, the first zeros in row
    # order being (0,0) and (0,1): 3 of 4 in the mask. Map 2: 3.0 at (1,2) outside, then the
    # zeros (0,1), (0,2), (0,3) ((0,0) holds -2): 1 of 4.
    np.testing.assert_allclose(metrics.relevance_rank_accuracy(maps, mask).values,
                               [0.75, 0.75, 0.25])
    # Channels are summed first (the positive part for the share); empty masks give NaN.
    chans = np.stack([maps, maps], axis=1)
    masks = np.stack([mask, mask, np.zeros_like(mask)])
    np.testing.assert_allclose(metrics.mask_share(chans, masks, channel_axis=1).values,
                               [5 / 6, 1 / 6, np.nan])
    assert np.isnan(metrics.pointing_game(chans, masks, channel_axis=1).values[2])
    # Ties for the maximum: a hit when one of them is in the mask; a constant map (the zero
    # gradient of a saturated output) points nowhere.
    tied = np.zeros((1, 4, 4))
    tied[0, 0, 0] = tied[0, 3, 3] = 1.0
    assert metrics.pointing_game(tied, mask).values[0] == 1.0
    assert metrics.pointing_game(np.ones((1, 4, 4)), mask).values[0] == 0.0
    with pytest.raises(ValueError, match="do not match the maps' shape"):
        metrics.mask_share(maps, mask[:3])


def test_infidelity_is_zero_for_the_gradient_of_a_linear_model(linear_case) -> None:
    w, x, model, ig = linear_case
    grad = np.broadcast_to(w, x.shape)
    for perturbation in ("gaussian", "square"):
        res = metrics.infidelity(model, x, grad, target=0, perturbation=perturbation,
                                 channel_axis=1, samples=8, batch_size=6)
        np.testing.assert_allclose(res.values, 0.0, atol=1e-20)
    # Other attributions: (I . (a - w))^2 averaged, with the same perturbations.
    draws = {}

    def perturb(xi: np.ndarray, s: int, r: np.random.Generator) -> np.ndarray:
        d = r.normal(size=xi.shape)
        draws[(xi.tobytes(), s)] = d
        return xi - d

    res = metrics.infidelity(model, x, ig, target=0, perturbation=perturb, samples=3)
    expected = [np.mean([((ig[i] - w) * draws[(x[i].tobytes(), s)]).sum() ** 2
                         for s in range(3)]) for i in range(5)]
    np.testing.assert_allclose(res.values, expected, rtol=1e-10)
    assert not res.higher_is_better


def test_max_sensitivity_of_gradient_times_input_on_a_linear_model(linear_case) -> None:
    w, x, model, ig = linear_case
    seen = []

    def grad_x_input(m: object, xb: np.ndarray, t: np.ndarray) -> np.ndarray:
        seen.append(xb.shape[0])
        return np.asarray(igkit.gradients(m, xb, target=t)) * xb

    res = metrics.max_sensitivity(model, x, ig, grad_x_input, target=0, radius=0.1,
                                  samples=4, batch_size=8)
    # a(x + d) - a(x) = w * d: its norm over a(x)'s, the largest of the 4 draws.
    expected = np.empty((5, 4))
    for i in range(5):
        for s in range(4):
            d = np.random.default_rng([0, i, s]).uniform(-0.1, 0.1, x.shape[1:])
            expected[i, s] = np.linalg.norm(w * d) / np.linalg.norm(w * x[i])
    np.testing.assert_allclose(res.sensitivities, expected, rtol=1e-10)
    np.testing.assert_allclose(res.values, expected.max(axis=1))
    assert seen == [8, 8, 4]


def _shapes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16 x 16 images of a 4 x 4 square (class 0) or a 2 x 5 bar (class 1)."""
    x = rng.normal(0.0, 0.3, size=(n, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in range(n):
        r, c = rng.integers(2, 11, size=2)
        if y[i] == 0:
            x[i, 0, r : r + 4, c : c + 4] += 2.0
        else:
            x[i, 0, r + 1 : r + 3, c : c + 5] += 2.0
    return x, y


@pytest.fixture(scope="module")
def trained_cnn():
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net trains faster on one thread than on two shared ones
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2),
        )
        x, y = _shapes(512, rng)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(80):
            idx = torch.as_tensor(rng.integers(0, 512, size=64))
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    x_test, y_test = _shapes(16, rng)
    return model, x_test, y_test


def _grads(model: object, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.asarray(igkit.gradients(model, x, target=target))


def test_cascading_randomisation_decorrelates_gradients_of_a_trained_cnn(trained_cnn) -> None:
    model, x, y = trained_cnn
    assert (metrics.forward(model, x).argmax(axis=1) == y).mean() >= 0.9  # it learnt the task
    before = [p.detach().clone() for p in model.parameters()]
    a = _grads(model, x, y)
    res = metrics.mprt(model, x, a, _grads, target=y, channel_axis=1, seed=0)
    assert res.layers == ("6", "2", "0")  # top-down: the classifier first
    # The model explained is left as it was (the cascade runs on a copy).
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    sab, hog = res.similarity["spearman_abs"].mean(axis=0), res.similarity["hog"].mean(axis=0)
    # As Adebayo et al. report for gradients: the rank correlation of |gradient| falls as
    # layers are randomised from the top, and HOG and SSIM similarity fall with it.
    assert sab[0] > sab[-1] and sab[-1] < 0.75 and sab[0] > 0.9
    assert hog[-1] < 0.4 < hog[0]
    assert res.similarity["ssim"].mean(axis=0)[-1] < 0.4
    np.testing.assert_allclose(res.values, res.similarity["spearman_abs"].mean(axis=1))
    # The same explanation of the trained model scores 1 on every similarity.
    same = {n: f(a, a, 1) for n, f in metrics.randomisation.SIMILARITIES.items()}
    for name, v in same.items():
        np.testing.assert_allclose(v, 1.0, atol=1e-12, err_msg=name)
    # Same seed, same randomised models.
    again = metrics.mprt(model, x, a, _grads, target=y, channel_axis=1, seed=0,
                         similarities=["spearman_abs"])
    np.testing.assert_array_equal(again.similarity["spearman_abs"],
                                  res.similarity["spearman_abs"])


def test_random_logit_and_similarities(trained_cnn) -> None:
    model, x, y = trained_cnn
    a = _grads(model, x, y)
    res = metrics.random_logit(model, x, a, _grads, target=y, similarity="spearman")
    np.testing.assert_array_equal(res.off_target, 1 - y)  # two classes: the other one
    np.testing.assert_allclose(
        res.values, metrics.randomisation.spearman(a, _grads(model, x, 1 - y)))
    with pytest.raises(ValueError, match="other than its target"):
        metrics.random_logit(model, x, a, _grads, target=y, off_target=y)
    with pytest.raises(ValueError, match="unknown similarity 'pearson'"):
        metrics.random_logit(model, x, a, _grads, target=y, similarity="pearson")


def test_similarities_match_scipy_and_skimage(rng: np.random.Generator) -> None:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    a = rng.normal(size=(3, 12, 10))
    b = a + rng.normal(size=a.shape)
    b[0, :3] = 0.0  # ties
    for i in range(3):
        assert metrics.randomisation.spearman(a, b)[i] == pytest.approx(
            spearmanr(a[i].ravel(), b[i].ravel())[0], abs=1e-12)
        rng_i = max(a[i].max(), b[i].max()) - min(a[i].min(), b[i].min())
        assert metrics.randomisation.ssim(a, b)[i] == pytest.approx(
            structural_similarity(a[i], b[i], data_range=rng_i), abs=1e-12)


def test_completeness_and_stability(linear_case) -> None:
    w, x, model, ig = linear_case
    res = metrics.completeness(model, x, ig, target=0)
    np.testing.assert_allclose(res.delta, 0.0, atol=1e-12)  # IG of a linear model adds up
    np.testing.assert_allclose(res.score - res.baseline_score, (w * x).reshape(5, -1).sum(1))
    off = metrics.completeness(model, x, 2 * ig, target=0)
    np.testing.assert_allclose(off.values, 1.0, rtol=1e-12)  # twice the gap: 100% off
    result = igkit.integrated_gradients(model, x, target=0, steps=4)
    np.testing.assert_allclose(metrics.completeness_of(result).delta, result.delta)
    st = metrics.stability([ig, ig, 2 * ig])
    np.testing.assert_allclose(st.values, 1.0)  # scaling keeps ranks
    np.testing.assert_allclose(st.spread, np.sqrt(2 / 9) / (4 / 3), rtol=1e-12)
    with pytest.raises(ValueError, match="at least two explanations"):
        metrics.stability([ig])


def test_registry_runs_every_metric_by_name(linear_case) -> None:
    w, x, model, ig = linear_case
    masks = np.zeros((5, 3, 4), dtype=bool)
    masks[:, :2, :2] = True

    def explain(m: object, xb: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray(igkit.gradients(m, xb, target=t)) * xb

    two = _linear(w, classes=2)
    names = metrics.metric_names()
    assert "deletion" in names and "mprt" in names and len(names) == 14
    for name in names:
        spec = metrics.get_metric(name)
        opts: dict = {"target": 0} if "model" in spec.needs else {}
        if name.startswith("road") or spec.needs == ("masks",):
            opts["channel_axis"] = 1
        if name == "mprt":  # 3 x 4 maps are smaller than the SSIM window
            opts["similarities"] = ["spearman_abs", "spearman"]
        if name == "random_logit":
            opts["similarity"] = "spearman_abs"
        res = metrics.evaluate_metric(name, two, x, ig, explain=explain, masks=masks, **opts)
        assert res.values.shape == (5,) and res.higher_is_better == spec.higher_is_better
        assert res.metric == name, name
        assert set(res.summary()) == {"metric", "mean", "std", "n", "higher_is_better"}
    with pytest.raises(ValueError, match="unknown metric 'auc'; choose one of"):
        metrics.evaluate_metric("auc", model, x, ig)
    with pytest.raises(ValueError, match="needs explain"):
        metrics.evaluate_metric("mprt", model, x, ig)


def test_keras_models_run_through_the_same_metrics(rng: np.random.Generator) -> None:
    import keras

    w = rng.normal(size=(4, 4, 2)).astype(np.float32)
    x = rng.uniform(0, 1, size=(3, 4, 4, 2)).astype(np.float32)
    dense = keras.layers.Dense(2, use_bias=False)
    hidden = keras.layers.Dense(8, activation="relu")
    linear = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(),
                               keras.layers.Dense(1, use_bias=False)])
    linear.layers[-1].set_weights([w.reshape(-1, 1)])
    # Channels last: a pixel is (2,) values; the deletion curve of w * x in closed form.
    a = w * x
    per_pixel = a.sum(axis=-1).reshape(3, -1).astype(np.float64)
    order = np.argsort(-per_pixel, axis=1, kind="stable")
    removed = np.cumsum(np.take_along_axis(per_pixel, order, 1), axis=1)
    dele = metrics.deletion(linear, x, a, target=0, channel_axis=-1, features_per_step=1)
    np.testing.assert_allclose(dele.scores[:, 1:], per_pixel.sum(1, keepdims=True) - removed,
                               atol=1e-5)
    # The cascade sets a Keras model's weights and puts them back afterwards.
    deep = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), hidden, dense])
    before = [v.copy() for v in deep.get_weights()]
    grads = _grads(deep, x, np.zeros(3, dtype=np.int64))
    res = metrics.mprt(deep, x, grads, _grads, target=0, similarities=["spearman_abs"])
    assert res.layers == (dense.name, hidden.name)
    assert np.all(res.similarity["spearman_abs"][:, -1] < 0.9)
    for v, u in zip(before, deep.get_weights(), strict=True):
        np.testing.assert_array_equal(v, u)
