"""Path methods beyond the straight line: Blur IG, Guided IG, IDGI and XRAI.

* ``blur_ig`` (Xu et al. 2020): the path runs from the input blurred with a Gaussian of width
  ``max_sigma`` to the input, through the blurs in between; each step adds the change of the
  blurred image with sigma (a forward difference of ``grad_step``) times the gradient there.
  No baseline is needed, and the attributions add up to F(x) - F(blurred x) up to the step
  rule's error, which ``relative_error`` reports.
* ``guided_ig`` (Kapishnikov et al. 2021): the path is chosen while walking it: at each step
  the features with the smallest |gradient| (``fraction`` of them) move toward the input first,
  never straying more than ``max_dist`` (as a fraction of the path) from the straight line.
* ``idgi`` (Yang et al. 2023): on IG's straight path, each step's change of the score
  F(x_{k+1}) - F(x_k) is shared among the features in proportion to g_j^2 / |g|^2, the part of
  the step the gradient direction explains; the noise orthogonal to it is dropped. The sum is
  F(x) - F(x') exactly (the shares of a step add up to 1 and the changes telescope), except
  for steps where the gradient vanishes while the score moves.
* ``xrai`` (Kapishnikov et al. 2019): IG attributions (black and white baselines) summed over
  image regions of several Felzenszwalb segmentations; regions are added greedily by
  attribution density, and each pixel gets the density of the region that first covered it.

All pairs (input, class) walk their paths together: every step's gradients are one batched
call. Methods are checked against PAIR saliency (test-only) in ``tests/test_methods_paths.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from igkit.core.engine import run_integrated_gradients
from igkit.core.result import Result
from igkit.methods.context import MethodContext
from igkit.methods.options import (
    choice,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from igkit.methods.registry import MethodSpec, Option, register_method

__all__ = ["blur", "felzenszwalb_regions", "xrai_map"]


def _image_axes(ctx: MethodContext, method: str) -> tuple[int, tuple[int, int]]:
    """The channel axis and the two spatial axes of one example (batch axis removed)."""
    if ctx.x.ndim != 4 or ctx.channel_axis is None:
        raise ValueError(
            f"method={method!r} works on images (a batch of shape (N, C, H, W) or (N, H, W, C)); "
            f"the inputs have shape {ctx.x.shape}: pass images, or channel_axis= when the "
            "channels are not found"
        )
    channel = ctx.channel_axis - 1
    spatial = tuple(a for a in range(3) if a != channel)
    return channel, (spatial[0], spatial[1])


def blur(image: np.ndarray, sigma: float, channel_axis: int) -> np.ndarray:
    """``image`` (one example, channels on ``channel_axis``) blurred over its spatial axes by
    a Gaussian of standard deviation ``sigma`` pixels, with zeros beyond the border."""
    from scipy import ndimage

    if sigma == 0:
        return image.copy()
    sigmas = [0.0 if a == channel_axis else float(sigma) for a in range(image.ndim)]
    return ndimage.gaussian_filter(image, sigma=sigmas, mode="constant")


# -- Blur IG ---------------------------------------------------------------------------------


def _blur_ig(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    channel, _ = _image_axes(ctx, "blur_ig")
    steps, max_sigma, h = options["steps"], options["max_sigma"], options["grad_step"]
    grid = np.arange(steps + 1) / steps
    sigmas = max_sigma * (np.sqrt(grid) if options["sqrt"] else grid)
    widths = np.diff(sigmas)
    r = ctx.n_pairs
    attr = np.zeros((r, *ctx.x.shape[1:]), dtype=np.float64)
    # The blurs depend on the input only: computed once per input, shared by its classes.
    inputs = ctx.plan.pair_input
    # Steps go to the model in blocks, all pairs' points of a block in one call.
    block = max(1, ctx.chunk // max(r, 1))
    for start in range(0, steps, block):
        ks = range(start, min(steps, start + block))
        points, moves = [], []
        for k in ks:
            for i in range(ctx.x.shape[0]):
                here = blur(ctx.x[i], sigmas[k], channel)
                points.append(here)
                moves.append((blur(ctx.x[i], sigmas[k] + h, channel) - here) / h)
        at = np.asarray(points)  # (len(ks) * N, ...): step-major, then input
        dx = np.asarray(moves, dtype=np.float64)
        n = ctx.x.shape[0]
        rows = np.concatenate([j * n + inputs for j in range(len(ks))])
        pairs = np.tile(np.arange(r), len(ks))
        grads = ctx.gradients(at[rows], pairs).astype(np.float64)
        for j, k in enumerate(ks):
            sl = slice(j * r, (j + 1) * r)
            attr -= widths[k] * dx[rows[sl]] * grads[sl]
    blurred = np.asarray([blur(ctx.x[i], max_sigma, channel) for i in range(ctx.x.shape[0])])
    base_score = ctx.scores(blurred[inputs], np.arange(r))
    return ctx.result(attr, evaluations=steps, steps=steps, baseline_score=base_score,
                      complete=True, baselines=(f"blur(sigma={max_sigma:g})",),
                      baseline_inputs=blurred, requested_steps=steps)


register_method(MethodSpec(
    name="blur_ig",
    answers="which features the score gains as the blur is taken away (IG along a blur path, "
    "no baseline)",
    cost="steps gradients",
    run=_blur_ig,
    images_only=True,
    options=(
        Option("steps", 100, "steps between the most blurred image and the input",
               positive_int),
        Option("max_sigma", 50.0, "width (pixels) of the most blurred image's Gaussian",
               positive_float),
        Option("grad_step", 0.01, "sigma step of the blur's finite-difference derivative",
               positive_float),
        Option("sqrt", False, "space the sigmas as sqrt(k / steps) instead of linearly",
               lambda v: bool(v)),
    ),
    complete=True,
))


# -- Guided IG -------------------------------------------------------------------------------


def _guided_step(
    x: np.ndarray, grad: np.ndarray, x_in: np.ndarray, x_base: np.ndarray, step: int,
    steps: int, frac: float, max_dist: float, l1_total: float,
) -> np.ndarray:
    """Moves one path point ``x`` (flat, float64) by one Guided IG step and returns the
    attribution it adds. ``x`` is changed in place."""
    diff = x_in - x_base
    alpha = (step + 1.0) / steps
    lo_alpha, hi_alpha = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
    lo, hi = x_base + diff * lo_alpha, x_base + diff * hi_alpha
    goal = l1_total * (1.0 - alpha)  # the L1 distance to the input after this step
    added = np.zeros_like(x)
    g = grad.copy()
    moving = diff != 0
    while True:
        before = x.copy()
        # Features left behind the band are pulled up to its lower edge.
        where = np.full_like(x, hi_alpha)
        where[moving] = (x[moving] - x_base[moving]) / diff[moving]
        behind = where < lo_alpha
        x[behind] = lo[behind]
        distance = float(np.abs(x - x_in).sum())
        if np.isclose(goal, distance, rtol=1e-9, atol=1e-9):
            added += (x - before) * grad
            return added
        g[x == hi] = np.inf  # features at the band's upper edge cannot move further
        finite = np.isfinite(g)
        if not finite.any():
            added += (x - before) * grad
            return added
        threshold = np.quantile(np.abs(g), frac, method="lower")
        chosen = (np.abs(g) <= threshold) & finite
        room = float((np.abs(x - hi) * chosen).sum())
        share = (distance - goal) / room if room > 0 else np.inf
        if share > 1.0:
            x[chosen] = hi[chosen]
        else:
            x[chosen] += (hi[chosen] - x[chosen]) * share
        added += (x - before) * grad
        if share <= 1.0:
            return added


def _guided_ig(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    steps, frac, max_dist = options["steps"], options["fraction"], options["max_dist"]
    label, base = ctx.baselines()[0]
    r = ctx.n_pairs
    shape = ctx.x.shape[1:]
    x_in = ctx.pair_inputs.reshape(r, -1).astype(np.float64)
    x_base = base[ctx.plan.pair_input].reshape(r, -1).astype(np.float64)
    x = x_base.copy()
    attr = np.zeros_like(x)
    l1_total = np.abs(x_in - x_base).sum(axis=1)
    live = np.flatnonzero(l1_total > 0)
    for step in range(steps):
        if not live.size:
            break
        grads = ctx.gradients(x[live].reshape(-1, *shape).astype(ctx.x.dtype), live)
        grads = grads.reshape(live.size, -1).astype(np.float64)
        for j, p in enumerate(live):
            attr[p] += _guided_step(x[p], grads[j], x_in[p], x_base[p], step, steps, frac,
                                    max_dist, float(l1_total[p]))
    base_score = ctx.scores(base[ctx.plan.pair_input], np.arange(r))
    return ctx.result(attr.reshape(r, *shape), evaluations=steps, steps=steps,
                      baseline_score=base_score, complete=True, baselines=(label,),
                      requested_steps=steps)


register_method(MethodSpec(
    name="guided_ig",
    answers="IG along a path that moves the features with the smallest gradients first "
    "(less noise from saturated regions)",
    cost="steps gradients (sequential: each step's point depends on the last gradient)",
    run=_guided_ig,
    options=(
        Option("steps", 200, "steps along the guided path", positive_int),
        Option("fraction", 0.25, "fraction of the features moved at each step", fraction),
        Option("max_dist", 0.02, "how far (fraction of the path) a feature may stray from "
               "the straight line; 0 is IG with a left Riemann rule", non_negative_float),
    ),
    uses_baseline=True,
    complete=True,
))


# -- IDGI ------------------------------------------------------------------------------------


def _idgi(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    steps = options["steps"]
    bases = ctx.baselines()
    r = ctx.n_pairs
    shape = ctx.x.shape[1:]
    x = ctx.pair_inputs.astype(np.float64)
    alphas = np.arange(steps) / steps  # x_0 = x' ... x_{steps-1}; x_steps = x
    total = np.zeros((r, *shape), dtype=np.float64)
    base_scores = np.zeros(r)
    block = max(1, ctx.chunk // max(r, 1))
    for _, base in bases:
        b = base[ctx.plan.pair_input].astype(np.float64)
        diff = x - b
        scores = np.empty((steps, r))
        grads = np.empty((steps, r, diff[0].size))
        for start in range(0, steps, block):
            ks = np.arange(start, min(steps, start + block))
            pts = b[None] + alphas[ks].reshape(-1, 1, *([1] * len(shape))) * diff[None]
            g, s = ctx.gradients_and_scores(
                pts.reshape(-1, *shape).astype(ctx.x.dtype), np.tile(np.arange(r), ks.size)
            )
            scores[ks] = s.reshape(ks.size, r)
            grads[ks] = g.reshape(ks.size, r, -1)
        # F(x_{k+1}) - F(x_k) for every step, the last one ending at F(x).
        change = np.concatenate([scores[1:], ctx.pair_score[None]]) - scores
        sq = grads**2
        norm = sq.sum(axis=2, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(norm > 0, sq / norm, 0.0)
        total += (share * change[:, :, None]).sum(axis=0).reshape(r, *shape)
        base_scores += scores[0]
    n = len(bases)
    return ctx.result(total / n, evaluations=steps * n, steps=steps,
                      baseline_score=base_scores / n, complete=True, requested_steps=steps)


register_method(MethodSpec(
    name="idgi",
    answers="IG with each step's score change given only along the gradient direction "
    "(Yang et al. 2023): IG's noise removed, completeness exact",
    cost="steps gradients per baseline",
    run=_idgi,
    options=(Option("steps", 128, "points on the straight path", positive_int),),
    uses_baseline=True,
    complete=True,
))


# -- XRAI ------------------------------------------------------------------------------------

_SCALES = (50, 100, 150, 250, 500, 1200)


def felzenszwalb_regions(image_hwc: np.ndarray, dilation: int = 5) -> np.ndarray:
    """Candidate regions of an image ``(H, W, C)``: every segment of Felzenszwalb
    segmentations at six scales (on the image scaled to [-1, 1] and resized to 224 x 224, the
    segments resized back), each dilated by a disk of ``dilation`` pixels. ``(M, H, W)`` bool."""
    from scipy import ndimage
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize

    h, w = image_hwc.shape[:2]
    im = image_hwc.astype(np.float64)
    lo, hi = float(im.min()), float(im.max())
    im = (im - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(im)
    im = resize(im, (224, 224), order=3, mode="constant", preserve_range=True,
                anti_aliasing=True)
    regions: list[np.ndarray] = []
    for scale in _SCALES:
        seg = felzenszwalb(im, scale=scale, sigma=0.8, min_size=150)
        seg = resize(seg, (h, w), order=0, preserve_range=True, mode="constant",
                     anti_aliasing=False).astype(int)
        regions.extend(seg == label for label in range(seg.min(), seg.max() + 1))
    masks = np.stack(regions).astype(bool)
    if dilation:
        yy, xx = np.mgrid[-dilation:dilation + 1, -dilation:dilation + 1]
        disk = yy**2 + xx**2 <= dilation**2
        masks = np.asarray([ndimage.binary_dilation(m, structure=disk) for m in masks])
    return masks


def xrai_map(
    attr: np.ndarray, regions: np.ndarray, *, area: float = 1.0, min_new_pixels: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """XRAI's greedy region ranking of a 2-D attribution map over candidate ``regions``.

    Repeatedly adds the region whose not-yet-covered pixels have the highest mean attribution
    (regions adding fewer than ``min_new_pixels`` are dropped), until ``area`` of the image is
    covered or no region is left; each pixel gets the mean of the region that covered it, and
    pixels never covered the mean over all of them.

    Returns:
        The map ``(H, W)`` and the ranks ``(H, W)`` (1 = first region added; regions in order
        of their density, the never-covered pixels last).
    """
    h, w = attr.shape
    flat = attr.reshape(-1).astype(np.float64)
    masks = regions.reshape(regions.shape[0], -1)
    new_count = masks.sum(axis=1).astype(np.int64)
    new_sum = masks.astype(np.float64) @ flat
    alive = np.ones(masks.shape[0], dtype=bool)
    covered = np.zeros(h * w, dtype=bool)
    out = np.full(h * w, -np.inf)
    added: list[tuple[np.ndarray, float]] = []
    while covered.mean() <= area:
        alive &= new_count >= min_new_pixels
        if not alive.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(alive, new_sum / np.maximum(new_count, 1), -np.inf)
        best = int(np.argmax(gain))
        diff = masks[best] & ~covered
        added.append((diff, float(gain[best])))
        out[diff] = gain[best]
        covered |= masks[best]
        alive[best] = False
        # The pixels just covered no longer count as new for any region.
        idx = np.flatnonzero(diff)
        sub = masks[:, idx]
        new_count -= sub.sum(axis=1)
        new_sum -= sub.astype(np.float64) @ flat[idx]
    rest = out == -np.inf
    if rest.any():
        out[rest] = flat[rest].mean()
    order = [m for m, _ in sorted(added, key=lambda t: -t[1])]
    if rest.any():
        order.append(rest)
    ranks = np.zeros(h * w, dtype=np.int64)
    for k, m in enumerate(order):
        ranks[m] = k + 1
    return out.reshape(h, w), ranks.reshape(h, w)


def _xrai(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    channel, _ = _image_axes(ctx, "xrai")
    low, high = ctx.input_range
    x = ctx.x
    baselines = [("black", np.full_like(x, low)), ("white", np.full_like(x, high))]
    ig = run_integrated_gradients(
        ctx.session, x, baselines, target=ctx.target_spec(), method=options["rule"],
        steps=options["steps"], tol=1e6, batch_size=ctx.batch_size,
    )
    ig_attr = ig.attributions if ig.target_mask is None else ig.attributions[ig.target_mask]
    evals = ig.evaluations if ig.target_mask is None else ig.evaluations[ig.target_mask]
    r = ctx.n_pairs
    out = np.zeros((r, *x.shape[1:]), dtype=np.float64)
    regions_of: dict[int, np.ndarray] = {}
    for p in range(r):
        i = int(ctx.plan.pair_input[p])
        if i not in regions_of:
            regions_of[i] = felzenszwalb_regions(np.moveaxis(x[i], channel, -1),
                                                 options["dilation"])
        heat, _ = xrai_map(np.asarray(ig_attr[p]).max(axis=channel), regions_of[i],
                           area=options["area"])
        out[p] = np.expand_dims(heat, channel)
    return ctx.result(out, evaluations=np.asarray(evals), baselines=("black", "white"),
                      requested_steps=options["steps"])


register_method(MethodSpec(
    name="xrai",
    answers="which image regions matter most, ranked by their IG attribution density",
    cost="IG with two baselines (black and white), then segmentation on the CPU",
    run=_xrai,
    images_only=True,
    options=(
        Option("steps", 64, "IG gradient evaluations per baseline", positive_int),
        Option("rule", "gauss_legendre", "IG quadrature rule",
               choice(("gauss_legendre", "riemann_trapezoid", "riemann_middle", "secant"))),
        Option("area", 1.0, "fraction of the image to rank into regions", fraction),
        Option("dilation", 5, "radius (pixels) by which each segment is grown",
               non_negative_int),
    ),
))
