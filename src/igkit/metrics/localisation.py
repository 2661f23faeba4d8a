"""Localisation: does the attribution fall on the ground-truth region, when one is known?

* :func:`pointing_game` (Zhang et al. 2018): whether the maximum of the map lies in the mask;
* :func:`mask_share` (attribution localisation, Kohlbrenner et al. 2020): the share of the
  map's positive mass inside the mask;
* :func:`relevance_rank_accuracy` (Arras et al. 2022): with ``K`` the mask's size, the share of
  the ``K`` highest-ranked features that lie in the mask.

These need no model. A map with ``channel_axis`` is first reduced to one value per pixel (the
sum over channels, of the positive part for :func:`mask_share`, as
``igkit.microscopy.evaluate.positive_mass`` does); masks are then ``(N, *pixel_shape)`` or one
mask for every input. An empty mask gives NaN for that input.
"""

from __future__ import annotations

import numpy as np

from igkit.metrics._results import MetricResult

__all__ = ["mask_share", "pointing_game", "relevance_rank_accuracy"]


def _maps_and_masks(
    attributions: object, masks: object, channel_axis: int | None, positive: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, P)`` flat maps and ``(N, P)`` boolean masks."""
    a = np.asarray(attributions, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"attributions must be a batch (N, ...), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("attributions contain NaN or Inf; a metric of them means nothing")
    if positive:
        a = np.maximum(a, 0.0)
    if channel_axis is not None:
        if not -a.ndim < channel_axis < a.ndim or channel_axis % a.ndim == 0:
            raise ValueError(
                f"channel_axis={channel_axis} is not an axis of attributions of shape {a.shape}"
            )
        a = a.sum(axis=channel_axis)
    m = np.asarray(masks)
    if m.dtype != bool:
        if not np.all(np.isin(m, (0, 1))):
            raise ValueError("masks must be boolean (or 0/1): True where the region is")
        m = m.astype(bool)
    try:
        m = np.broadcast_to(m, a.shape)
    except ValueError:
        raise ValueError(
            f"masks of shape {m.shape} do not match the maps' shape {a.shape} (after summing "
            "channel_axis); pass one mask per input or one for all"
        ) from None
    return a.reshape(a.shape[0], -1), m.reshape(a.shape[0], -1)


def pointing_game(
    attributions: object, masks: object, *, channel_axis: int | None = None
) -> MetricResult:
    """1.0 where the map's maximum lies in the mask, else 0.0 (a tie for the maximum counts
    as a hit when any tied position is in the mask, but a constant map, e.g. the all-zero
    gradient of a saturated output, points nowhere: 0.0); NaN for an empty mask."""
    a, m = _maps_and_masks(attributions, masks, channel_axis, positive=False)
    top = a == a.max(axis=1, keepdims=True)
    hit = np.any(top & m, axis=1).astype(np.float64)
    hit[a.max(axis=1) == a.min(axis=1)] = 0.0
    hit[~m.any(axis=1)] = np.nan
    return MetricResult("pointing_game", hit, True)


def mask_share(
    attributions: object, masks: object, *, channel_axis: int | None = None,
    positive: bool = True,
) -> MetricResult:
    """Share of the map's mass inside the mask: the positive part by default (``positive``),
    else the signed map (which can leave [0, 1]). 0 for a map with no mass; NaN for an empty
    mask."""
    a, m = _maps_and_masks(attributions, masks, channel_axis, positive=positive)
    total = a.sum(axis=1)
    inside = np.where(m, a, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total != 0, inside / np.where(total != 0, total, 1.0), 0.0)
    share[~m.any(axis=1)] = np.nan
    return MetricResult("mask_share", share, True)


def relevance_rank_accuracy(
    attributions: object, masks: object, *, channel_axis: int | None = None
) -> MetricResult:
    """Share of the ``K = |mask|`` highest features that are in the mask (ties broken by
    position); NaN for an empty mask."""
    a, m = _maps_and_masks(attributions, masks, channel_axis, positive=False)
    order = np.argsort(-a, axis=1, kind="stable")
    k = m.sum(axis=1)
    ranked = np.take_along_axis(m, order, axis=1)
    in_top = np.arange(a.shape[1])[None, :] < k[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (ranked & in_top).sum(axis=1) / k
    acc = np.where(k > 0, acc, np.nan)
    return MetricResult("relevance_rank_accuracy", acc, True)
