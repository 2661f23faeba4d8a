"""Controls: attributions that explain nothing, for a method to be compared against.

``random`` draws each feature's attribution from a seeded standard normal, and ``sobel`` is the
input's edge magnitude (a Sobel filter over the spatial axes, summed over channels), which
looks like an explanation of any image classifier. Neither calls the model beyond the first
forward pass: a method that does not beat them on a faithfulness metric explains nothing
(``igkit evaluate`` always offers both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from igkit.core.result import Result
from igkit.methods.context import MethodContext
from igkit.methods.registry import MethodSpec, register_method

__all__ = ["sobel_edges"]


def _random(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    del options
    attr = ctx.rng.standard_normal((ctx.n_pairs, *ctx.x.shape[1:]))
    return ctx.result(attr, evaluations=0, steps=0)


def sobel_edges(image: np.ndarray, channel_axis: int) -> np.ndarray:
    """The edge magnitude of one example ``image`` (channels on ``channel_axis``): the Sobel
    gradient's norm over the two spatial axes, summed over channels, spread back over them."""
    from scipy import ndimage

    spatial = [a for a in range(image.ndim) if a != channel_axis]
    x = image.astype(np.float64)
    magnitude = np.sqrt(sum(ndimage.sobel(x, axis=a, mode="nearest") ** 2 for a in spatial))
    edges = magnitude.sum(axis=channel_axis, keepdims=True)
    return np.broadcast_to(edges, image.shape).copy()


def _sobel(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    del options
    assert ctx.channel_axis is not None  # images_only
    channel = ctx.channel_axis - 1
    per_input = np.asarray([sobel_edges(x, channel) for x in ctx.x])
    return ctx.result(per_input[ctx.plan.pair_input], evaluations=0, steps=0)


register_method(MethodSpec(
    name="random",
    answers="nothing: seeded noise, the floor a faithful explanation must beat",
    cost="no model call",
    run=_random,
    stochastic=True,
))

register_method(MethodSpec(
    name="sobel",
    answers="nothing about the model: the image's edges, which look like an explanation",
    cost="no model call",
    run=_sobel,
    images_only=True,
))
