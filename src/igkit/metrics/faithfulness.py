"""Faithfulness: does removing what the attribution calls important change the model's score?

* :func:`deletion` / :func:`insertion` (Petsiuk et al., RISE 2018): features are removed from
  the input (replaced by black, a blurred copy, the mean or a given image), or inserted into the
  replacement, most important first; the target score traced against the fraction of features
  changed, and the area under that curve (low for deletion, high for insertion is good).
* :func:`pixel_flipping` (Bach et al. 2015, Samek et al. 2017): the same curve in the most
  relevant first (MoRF) or least relevant first (LeRF) order.
* :func:`road` (Rong et al., ICML 2022): removal by *noisy linear imputation* (each removed
  pixel is the weighted mean of its 8 neighbours, solved jointly, plus a little noise), so that
  the shape of the removed region leaks no class information.

A feature is one element of the input, or with ``channel_axis`` one pixel (all its channels
together, ranked by the attribution summed over channels). Ties in the ranking are broken by
position (a stable sort). Every perturbed image of every input goes through the model in full
batches of ``batch_size`` (``igkit.metrics._model.score_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from igkit.core.baselines import gaussian_blur
from igkit.metrics._model import (
    ModelScores,
    check_attributions,
    open_model,
    score_rows,
    targets_of,
)
from igkit.metrics._results import MetricResult

__all__ = [
    "Curve",
    "RoadResult",
    "deletion",
    "insertion",
    "noisy_linear_imputation",
    "pixel_flipping",
    "replacement_images",
    "road",
]

REPLACEMENTS = ("black", "blur", "mean")


@dataclass(frozen=True)
class Curve(MetricResult):
    """A perturbation curve per input.

    Attributes:
        fractions: ``(K+1,)`` share of the features changed at each point, from 0 to 1.
        scores: ``(N, K+1)`` target score at each point (``scores[:, 0]`` is the score of the
            unchanged start image).
        target: ``(N,)`` the class scored.
        values: ``(N,)`` the area under each curve over ``fractions`` (trapezoidal).
    """

    fractions: np.ndarray
    scores: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class RoadResult(MetricResult):
    """ROAD: scores after removing a share of the pixels by noisy linear imputation.

    Attributes:
        percentages: ``(P,)`` percent of the pixels removed.
        scores: ``(N, P)`` target score of each imputed image.
        correct: ``(N, P)`` whether the model's top class is still the target.
        target: ``(N,)`` the class scored.
        values: ``(N,)`` the mean target score over the percentages.
    """

    percentages: np.ndarray
    scores: np.ndarray
    correct: np.ndarray
    target: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """``(P,)`` share of inputs still classified as their target (the ROAD curve)."""
        return np.asarray(self.correct.mean(axis=0))


def _to_features(x: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(N, F, C)``: features along axis 1, a pixel's channels (or 1) along axis 2."""
    if channel_axis is None:
        return x.reshape(x.shape[0], -1, 1)
    return np.moveaxis(x, channel_axis, -1).reshape(x.shape[0], -1, x.shape[channel_axis])


def _from_features(f: np.ndarray, shape: tuple[int, ...], channel_axis: int | None) -> np.ndarray:
    """The inverse of :func:`_to_features` for ``f`` of any number of rows."""
    if channel_axis is None:
        return f.reshape((f.shape[0], *shape[1:]))
    moved = [d for a, d in enumerate(shape) if a != channel_axis] + [shape[channel_axis]]
    return np.moveaxis(f.reshape((f.shape[0], *moved[1:])), -1, channel_axis)


def _relevance(a: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(N, F)`` the relevance of each feature (summed over a pixel's channels)."""
    return _to_features(a, channel_axis).sum(axis=2)


def _axis(channel_axis: int | None, ndim: int) -> int | None:
    if channel_axis is None:
        return None
    if not -ndim < channel_axis < ndim or channel_axis % ndim == 0:
        raise ValueError(
            f"channel_axis={channel_axis} is not an axis of inputs with {ndim} dimensions "
            "(axis 0 is the batch); pass 1 for (N, C, H, W) or -1 for (N, H, W, C)"
        )
    return channel_axis % ndim


def replacement_images(
    x: np.ndarray,
    replacement: object = "black",
    *,
    channel_axis: int | None = None,
    blur_sigma: float | None = None,
) -> np.ndarray:
    """What removed features are replaced by, one image per input.

    Args:
        x: ``(N, ...)`` the inputs.
        replacement: "black" (zeros), "blur" (a Gaussian blur of the input over its spatial
            axes; ``blur_sigma`` pixels, default 5% of the largest side), "mean" (each input's
            mean, per channel with ``channel_axis``), a number, or an array of one input's or
            the batch's shape.
        channel_axis: Axis of ``x`` holding channels (not blurred, averaged per channel).
        blur_sigma: The blur's standard deviation in pixels.
    """
    if isinstance(replacement, str):
        if replacement == "black":
            return np.zeros_like(x)
        if replacement == "mean":
            axes = tuple(a for a in range(1, x.ndim) if a != channel_axis)
            return np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape).astype(x.dtype)
        if replacement == "blur":
            axes = tuple(a for a in range(1, x.ndim) if a != channel_axis)
            sigma = 0.05 * max(x.shape[a] for a in axes) if blur_sigma is None else blur_sigma
            if not sigma > 0:
                raise ValueError(f"blur_sigma must be positive, got {blur_sigma!r}")
            return gaussian_blur(x, sigma, axes).astype(x.dtype)
        raise ValueError(
            f"unknown replacement {replacement!r}; choose one of {', '.join(REPLACEMENTS)}, a "
            "number or an image"
        )
    r = np.asarray(replacement, dtype=x.dtype)
    if r.shape not in ((), x.shape, x.shape[1:]):
        raise ValueError(
            f"replacement of shape {r.shape} matches neither one input {x.shape[1:]} nor the "
            f"batch {x.shape}"
        )
    return np.broadcast_to(r, x.shape).copy()


def _counts(n_features: int, steps: int | None, features_per_step: int | None) -> np.ndarray:
    if features_per_step is None:
        if steps is None or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        features_per_step = math.ceil(n_features / int(steps))
    elif isinstance(features_per_step, bool) or features_per_step < 1:
        raise ValueError(f"features_per_step must be a positive integer, got {features_per_step!r}")
    k = math.ceil(n_features / features_per_step)
    return np.minimum(np.arange(k + 1) * int(features_per_step), n_features)


def _auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)
    return np.asarray(((scores[:, 1:] + scores[:, :-1]) * 0.5 * widths).sum(axis=1))


def _curve(
    runner: ModelScores, start: np.ndarray, end: np.ndarray, order: np.ndarray,
    counts: np.ndarray, targets: np.ndarray, shape: tuple[int, ...], channel_axis: int | None,
) -> np.ndarray:
    """``(N, K+1)`` scores of the images that take the first ``counts[k]`` features of
    ``order[i]`` from ``end[i]`` and the rest from ``start[i]`` (both ``(N, F, C)``)."""
    n, steps = start.shape[0], counts.shape[0]
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :], axis=1)

    def build(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, k = rows // steps, rows % steps
        changed = rank[i] < counts[k][:, None]
        images = np.where(changed[..., None], end[i], start[i])
        return _from_features(images, shape, channel_axis), targets[i]

    return score_rows(runner, n * steps, build).reshape(n, steps)


def _perturbation_curve(
    name: str, model: object, x: object, attributions: object, *, insert: bool,
    most_relevant_first: bool, target: object, replacement: object, channel_axis: int | None,
    steps: int | None, features_per_step: int | None, blur_sigma: float | None,
    output: object, batch_size: int | None,
) -> Curve:
    xa = np.asarray(x)
    axis = _axis(channel_axis, xa.ndim)
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (runner, xs, out):
        targets = targets_of(target, out)
        base = replacement_images(xs, replacement, channel_axis=axis, blur_sigma=blur_sigma)
        fx, fb = _to_features(xs, axis), _to_features(base, axis)
        rel = _relevance(a, axis)
        order = np.argsort(-rel if most_relevant_first else rel, axis=1, kind="stable")
        counts = _counts(fx.shape[1], steps, features_per_step)
        start, end = (fb, fx) if insert else (fx, fb)
        scores = _curve(runner, start, end, order, counts, targets, xs.shape, axis)
    fractions = counts / counts[-1]
    # Insertion and LeRF curves should stay high; deletion and MoRF curves should fall fast.
    higher = insert or not most_relevant_first
    return Curve(name, _auc(fractions, scores), higher, fractions, scores, targets)


def deletion(
    model: object,
    x: object,
    attributions: object,
    *,
    target: object = None,
    replacement: object = "black",
    channel_axis: int | None = None,
    steps: int | None = 50,
    features_per_step: int | None = None,
    blur_sigma: float | None = None,
    output: object = "raw",
    batch_size: int | None = None,
) -> Curve:
    """The deletion curve: features replaced most important first; a low area is good.

    Args:
        model: Any model ``igkit.integrated_gradients`` takes.
        x: ``(N, ...)`` the inputs, in the model's layout.
        attributions: ``(N, ...)`` one map per input, shaped like it (or with one channel).
        target: None (each input's top class), an int, or one int per input.
        replacement: "black", "blur", "mean", a number or an image (:func:`replacement_images`).
        channel_axis: With it a feature is a pixel (all channels); without, one element.
        steps: Points of the curve after the start (ignored with ``features_per_step``).
        features_per_step: Features changed per step (the last step may change fewer).
        blur_sigma: The blur replacement's sigma in pixels.
        output: "raw", "softmax", "sigmoid" or a callable (RISE scores softmax probabilities).
        batch_size: Images per model call.
    """
    return _perturbation_curve(
        "deletion", model, x, attributions, insert=False, most_relevant_first=True,
        target=target, replacement=replacement, channel_axis=channel_axis, steps=steps,
        features_per_step=features_per_step, blur_sigma=blur_sigma, output=output,
        batch_size=batch_size,
    )


def insertion(
    model: object,
    x: object,
    attributions: object,
    *,
    target: object = None,
    replacement: object = "blur",
    channel_axis: int | None = None,
    steps: int | None = 50,
    features_per_step: int | None = None,
    blur_sigma: float | None = None,
    output: object = "raw",
    batch_size: int | None = None,
) -> Curve:
    """The insertion curve: from the replacement (RISE: a blurred copy), the input's features
    put back most important first; a high area is good. Arguments as for :func:`deletion`."""
    return _perturbation_curve(
        "insertion", model, x, attributions, insert=True, most_relevant_first=True,
        target=target, replacement=replacement, channel_axis=channel_axis, steps=steps,
        features_per_step=features_per_step, blur_sigma=blur_sigma, output=output,
        batch_size=batch_size,
    )


def pixel_flipping(
    model: object,
    x: object,
    attributions: object,
    *,
    order: str = "morf",
    target: object = None,
    replacement: object = "black",
    channel_axis: int | None = None,
    steps: int | None = None,
    features_per_step: int | None = 1,
    blur_sigma: float | None = None,
    output: object = "raw",
    batch_size: int | None = None,
) -> Curve:
    """Pixel flipping: features replaced in the most relevant first ("morf", a fast fall is
    good) or least relevant first ("lerf", a slow fall is good) order. By default one feature
    per step, as Bach et al. flip; other arguments as for :func:`deletion`."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"unknown order {order!r}; choose 'morf' or 'lerf'")
    return _perturbation_curve(
        f"pixel_flipping_{order}", model, x, attributions, insert=False,
        most_relevant_first=order == "morf", target=target, replacement=replacement,
        channel_axis=channel_axis, steps=steps, features_per_step=features_per_step,
        blur_sigma=blur_sigma, output=output, batch_size=batch_size,
    )


_NEIGHBOURS = (
    ((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12),
)


def noisy_linear_imputation(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``image`` ``(H, W, C)`` with the pixels ``removed`` (flat indices into ``H * W``) imputed.

    Each removed pixel is the weighted mean of its in-image 8-neighbours (weight 1/6 for the
    four sharing a side, 1/12 for the diagonals), removed neighbours included as unknowns, so
    the values solve one sparse linear system per image (Rong et al. 2022); Gaussian noise of
    standard deviation ``noise`` is then added to the imputed values. A region with no kept
    pixel around it takes the mean of the kept pixels.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w, c = image.shape
    gone = np.zeros(h * w, dtype=bool)
    gone[np.asarray(removed, dtype=np.int64)] = True
    removed = np.flatnonzero(gone)  # sorted, each once (cheaper than np.unique)
    out = np.array(image, dtype=np.float64)
    m = removed.shape[0]
    if m == 0:
        return out
    flat = out.reshape(h * w, c)
    var = np.full(h * w, -1, dtype=np.int64)
    var[removed] = np.arange(m)
    r, q = removed // w, removed % w
    rows, cols, vals = [], [], []
    diag = np.zeros(m)
    rhs = np.zeros((m, c))
    for (dr, dq), weight in _NEIGHBOURS:
        nr, nq = r + dr, q + dq
        ok = (nr >= 0) & (nr < h) & (nq >= 0) & (nq < w)
        idx = np.where(ok)[0]
        nb = nr[ok] * w + nq[ok]
        diag[idx] += weight
        unknown = var[nb] >= 0
        rows.append(idx[unknown])
        cols.append(var[nb[unknown]])
        vals.append(np.full(int(unknown.sum()), -weight))
        np.add.at(rhs, idx[~unknown], weight * flat[nb[~unknown]])
    # A tiny pull towards the kept pixels' mean makes regions cut off from every kept pixel
    # solvable; elsewhere it moves the values by about 1e-12 of their range.
    kept = ~gone
    eps = 1e-12
    mean = flat[kept].mean(axis=0) if kept.any() else np.zeros(c)
    matrix = coo_matrix(
        (np.concatenate([*vals, diag + eps]),
         (np.concatenate([*rows, np.arange(m)]), np.concatenate([*cols, np.arange(m)]))),
        shape=(m, m),
    ).tocsc()
    solved = np.asarray(spsolve(matrix, rhs + eps * mean[None, :])).reshape(m, c)
    if noise:
        generator = rng if rng is not None else np.random.default_rng()
        solved = solved + noise * generator.standard_normal(solved.shape)
    flat[removed] = solved
    return out


def road(
    model: object,
    x: object,
    attributions: object,
    *,
    target: object = None,
    channel_axis: int | None = None,
    percentages: Sequence[float] = tuple(range(10, 100, 10)),
    order: str = "morf",
    noise: float = 0.01,
    seed: int = 0,
    output: object = "raw",
    batch_size: int | None = None,
) -> RoadResult:
    """ROAD: remove ``p`` percent of the pixels (most relevant first for "morf", least for
    "lerf") by noisy linear imputation and score the model; a fast fall under MoRF is good.

    Args:
        model, x, attributions, target, output, batch_size: As for :func:`deletion`; ``x`` is
            a batch of images ``(N, H, W)``, or ``(N, C, H, W)`` / ``(N, H, W, C)`` with
            ``channel_axis``.
        percentages: Percent of the ``H * W`` pixels removed, ``int(H * W * p / 100)`` each.
        order: "morf" or "lerf".
        noise: Standard deviation of the noise added to imputed values.
        seed: Seeds the noise (image ``i`` at percentage ``j`` draws from ``[seed, i, j]``).
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"unknown order {order!r}; choose 'morf' or 'lerf'")
    xa = np.asarray(x)
    axis = _axis(channel_axis, xa.ndim)
    if xa.ndim != (3 if axis is None else 4):
        raise ValueError(
            f"ROAD imputes pixels of images: pass inputs (N, H, W), or (N, C, H, W) / "
            f"(N, H, W, C) with channel_axis; got shape {xa.shape}"
        )
    pct = np.asarray(percentages, dtype=np.float64)
    if pct.ndim != 1 or pct.size == 0 or np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"percentages must be numbers in [0, 100], got {percentages!r}")
    a = check_attributions(xa, attributions)
    with open_model(model, xa, output=output, batch_size=batch_size) as (runner, xs, out):
        targets = targets_of(target, out)
        hwc = xs[..., None] if axis is None else np.moveaxis(xs, axis, -1)
        rel = _relevance(a, axis)
        ordered = np.argsort(-rel if order == "morf" else rel, axis=1, kind="stable")
        n_pix, n_p = rel.shape[1], pct.shape[0]
        counts = [int(n_pix * p / 100) for p in pct]
        top1 = np.zeros(xs.shape[0] * n_p, dtype=bool)

        def build(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            images = np.stack([
                noisy_linear_imputation(
                    hwc[i], ordered[i, : counts[j]], noise=noise,
                    rng=np.random.default_rng([seed, int(i), int(j)]),
                )
                for i, j in zip(rows // n_p, rows % n_p, strict=True)
            ]).astype(xs.dtype)
            images = images[..., 0] if axis is None else np.moveaxis(images, -1, axis)
            return images, targets[rows // n_p]

        scores = score_rows(runner, xs.shape[0] * n_p, build, top1=top1)
    scores = scores.reshape(-1, n_p)
    return RoadResult(f"road_{order}", scores.mean(axis=1), order == "lerf", pct, scores,
                      top1.reshape(-1, n_p), targets)
