"""Perturbation methods: occlusion, feature ablation, feature permutation, Shapley sampling.

They change some input features, run the model forward and read how the explained score
moved; no gradient is taken, so they run on every backend through ``MethodContext.outputs_at``.
Every perturbed copy of every input goes to the model in full batches, and the copies are
built one batch (``batch_size`` rows) at a time, so memory is bounded by ``batch_size`` however
many copies a method needs (a forward pass costs far more than building its batch, so larger
blocks would buy nothing but memory). A perturbed copy is made per input, not per
explanation: all the classes explained for an input read their scores from the same forward
pass.

* ``occlusion`` (Zeiler & Fergus 2014, as Captum's ``Occlusion``): a window slides over the
  input (``window=``, ``stride=``; ``masks.occlusion_windows`` says how they read); each position
  replaces the window by the baseline, and a feature's attribution is the mean, over the
  windows covering it, of F(x) - F(x with the window replaced). An integer window spans every
  channel, like Captum's ``sliding_window_shapes`` (C, h, w); a window with one entry per axis
  of one example ((1, 1, 1) in (C, H, W)) sets the channel extent itself.
* ``feature_ablation``: each group of ``mask=`` (integer labels; default every feature alone)
  is replaced by the baseline; every feature of the group gets F(x) - F(x with the group
  replaced), as in Captum's ``FeatureAblation``.
* ``feature_permutation`` (Fisher et al. 2019, Captum's ``FeaturePermutation``): each group's
  values are shuffled across the batch by one permutation (``ctx.rng.permutation(N)``, redrawn
  while it is the identity; groups in increasing label order); every feature of the group gets
  F(x) - F(x with the group's values from other inputs). It needs two inputs or more.
* ``shapley_sampling`` (Castro et al. 2009, Captum's ``ShapleyValueSampling``): ``samples``
  orders of the groups are drawn (``ctx.rng.permutation(G)`` each); along each order the groups
  are switched from the baseline to the input one at a time and each is credited with the
  score's change when it switched. A group's Shapley value is the mean of its credits, shared
  equally among its features (Captum gives each feature the whole value; with one feature per
  group the two agree). Each order's credits add up to F(x) - F(x') exactly, so the
  attributions are complete for any sample count, and ``Result.delta`` measures rounding.

With several baselines (``baseline=[...]``) a method's attributions are the mean over them, as
for Integrated Gradients. Groups are read from ``mask=`` by ``masks.feature_groups`` (one
example's shape, its spatial shape shared by the channels, or one mask per input, e.g.
superpixels of each image). What the options cannot fit (a window larger than the input, a
stride that skips features, a mask of another shape, too many groups for Shapley sampling
without a mask, one input to permute) is refused before any perturbed copy is run: after
``igkit.attribute``'s first forward pass, which checks the model's outputs for every method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from igkit.core.result import Result
from igkit.methods.context import MethodContext
from igkit.methods.masks import (
    Groups,
    check_mask,
    check_window,
    feature_groups,
    occlusion_windows,
)
from igkit.methods.options import positive_int
from igkit.methods.registry import MethodSpec, Option, register_method

__all__ = ["SHAPLEY_MAX_GROUPS"]

#: The most groups ``shapley_sampling`` accepts without ``mask=`` (every feature alone costs
#: ``samples`` forward passes per feature).
SHAPLEY_MAX_GROUPS = 1024


def _geometry(ctx: MethodContext) -> tuple[tuple[int, ...], int | None]:
    """One example's shape and its channel axis (batch axis removed), or None."""
    channel = None if ctx.channel_axis is None else ctx.channel_axis - 1
    return tuple(ctx.x.shape[1:]), channel


def _pairs_of(ctx: MethodContext) -> list[np.ndarray]:
    """The explanations of each input (an input without any is never perturbed)."""
    order = np.argsort(ctx.plan.pair_input, kind="stable")
    bounds = np.searchsorted(ctx.plan.pair_input[order], np.arange(ctx.x.shape[0] + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(ctx.x.shape[0])]


class _Credit:
    """Scores a block of perturbed copies and reads each copy's scores for its input's pairs
    (row -1 stands for the input itself: F(x), known from the first forward pass)."""

    def __init__(self, ctx: MethodContext, pairs_of: list[np.ndarray]):
        self.ctx, self.pairs_of = ctx, pairs_of
        self.score = ctx.pair_score
        self.target = ctx.plan.pair_target

    def scores_of(self, out: np.ndarray | None, i: int, row: int) -> np.ndarray:
        rs = self.pairs_of[i]
        if row < 0 or out is None:
            return self.score[rs]
        return out[row, self.target[rs]]

    def evaluate(self, copies: np.ndarray) -> np.ndarray | None:
        if not copies.shape[0]:
            return None
        return self.ctx.outputs_at(copies.reshape((-1, *self.ctx.x.shape[1:])))


def _blocks(count: int, size: int) -> list[slice]:
    return [slice(s, min(count, s + size)) for s in range(0, count, size)]


# -- occlusion --------------------------------------------------------------------------------


def _occlusion(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    shape, channel = _geometry(ctx)
    boxes = occlusion_windows(options["window"], options["stride"], shape, channel)
    counts = np.zeros(shape)
    for box in boxes:
        counts[box] += 1
    pairs_of = _pairs_of(ctx)
    inputs = [i for i in range(ctx.x.shape[0]) if pairs_of[i].size]
    jobs = [(w, i) for w in range(len(boxes)) for i in inputs]
    baselines = ctx.baselines()
    total = np.zeros((ctx.n_pairs, *shape))
    credit = _Credit(ctx, pairs_of)
    for _, base in baselines:
        for block in _blocks(len(jobs), ctx.batch_size):
            todo = jobs[block]
            copies = ctx.x[[i for _, i in todo]]
            for j, (w, i) in enumerate(todo):
                copies[j][boxes[w]] = base[i][boxes[w]]
            out = credit.evaluate(copies)
            for j, (w, i) in enumerate(todo):
                drop = credit.score[pairs_of[i]] - credit.scores_of(out, i, j)
                for r, d in zip(pairs_of[i].tolist(), drop.tolist(), strict=True):
                    total[r][boxes[w]] += d
    attr = total / counts / len(baselines)
    return ctx.result(attr, evaluations=len(boxes) * len(baselines), steps=len(boxes))


register_method(MethodSpec(
    name="occlusion",
    answers="how much the score drops when a window around each feature is replaced by the "
    "baseline (mean over the windows covering it)",
    cost="1 forward pass per window position (per baseline)",
    run=_occlusion,
    options=(
        Option("window", 16, "the window: an integer (square, every channel), one per spatial "
               "axis, or one per axis of one example (e.g. (1, 1, 1) per channel)",
               check_window),
        Option("stride", None, "how far the window moves (same forms; None: half the window)",
               lambda v: None if v is None else check_window(v)),
    ),
    uses_baseline=True,
))


# -- feature ablation and permutation ---------------------------------------------------------


def _group_jobs(groups: Groups, inputs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(input, group) of every group each input has, input-major."""
    present = [groups.present(i) for i in inputs]
    ji = np.repeat(np.asarray(inputs, dtype=np.int64), [p.size for p in present])
    jg = np.concatenate(present) if present else np.zeros(0, np.int64)
    return ji, jg


def _replace_groups(ctx: MethodContext, groups: Groups, source: np.ndarray,
                    source_row: np.ndarray) -> np.ndarray:
    """Per-group drops F(x) - F(x with group g taken from ``source[source_row[g, i]]``),
    ``(R, G)``."""
    pairs_of = _pairs_of(ctx)
    inputs = [i for i in range(ctx.x.shape[0]) if pairs_of[i].size]
    ji, jg = _group_jobs(groups, inputs)
    table = np.zeros((ctx.n_pairs, groups.count))
    credit = _Credit(ctx, pairs_of)
    flat_x = ctx.x.reshape(ctx.x.shape[0], -1)
    flat_src = source.reshape(source.shape[0], -1)
    for block in _blocks(ji.shape[0], ctx.batch_size):
        bi, bg = ji[block], jg[block]
        copies = flat_x[bi]
        for j, (i, g) in enumerate(zip(bi.tolist(), bg.tolist(), strict=True)):
            m = groups.members(i, g)
            copies[j, m] = flat_src[source_row[g, i], m]
        out = credit.evaluate(copies)
        for j, (i, g) in enumerate(zip(bi.tolist(), bg.tolist(), strict=True)):
            rs = pairs_of[i]
            table[rs, g] = credit.score[rs] - credit.scores_of(out, i, j)
    return table


def _feature_ablation(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    shape, channel = _geometry(ctx)
    n = ctx.x.shape[0]
    groups = feature_groups(options["mask"], n, shape, channel, "feature_ablation")
    baselines = ctx.baselines()
    rows = np.broadcast_to(np.arange(n), (groups.count, n))
    table = sum(
        (_replace_groups(ctx, groups, base, rows) for _, base in baselines),
        np.zeros((ctx.n_pairs, groups.count)),
    ) / len(baselines)
    attr = groups.spread(table, ctx.plan.pair_input).reshape((ctx.n_pairs, *shape))
    evaluations = [groups.present(int(i)).size * len(baselines) for i in ctx.plan.pair_input]
    return ctx.result(attr, evaluations=np.asarray(evaluations), steps=groups.count)


def _batch_permutations(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``count`` permutations of ``n`` inputs, none the identity, ``(count, n)``."""
    identity = np.arange(n)
    out = np.empty((count, n), dtype=np.int64)
    for g in range(count):
        perm = rng.permutation(n)
        while np.array_equal(perm, identity):
            perm = rng.permutation(n)
        out[g] = perm
    return out


def _feature_permutation(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    shape, channel = _geometry(ctx)
    n = ctx.x.shape[0]
    if n < 2:
        raise ValueError(
            "method='feature_permutation' shuffles each feature group's values across the "
            f"batch, so it needs at least 2 inputs; got {n}: pass a batch of examples (N >= 2), "
            "or use 'feature_ablation' to replace groups by a baseline instead"
        )
    groups = feature_groups(options["mask"], n, shape, channel, "feature_permutation")
    perms = _batch_permutations(ctx.rng, n, groups.count)
    table = _replace_groups(ctx, groups, ctx.x, perms)
    attr = groups.spread(table, ctx.plan.pair_input).reshape((ctx.n_pairs, *shape))
    evaluations = [groups.present(int(i)).size for i in ctx.plan.pair_input]
    return ctx.result(attr, evaluations=np.asarray(evaluations), steps=groups.count,
                      baselines=(), baseline_inputs=None)


_MASK_DOC = ("integer group labels: one example's shape, its spatial shape (shared by the "
             "channels) or one per input; None: every feature alone")

register_method(MethodSpec(
    name="feature_ablation",
    answers="how much the score drops when each feature group is replaced by the baseline",
    cost="1 forward pass per feature group (per baseline)",
    run=_feature_ablation,
    options=(Option("mask", None, _MASK_DOC, check_mask),),
    uses_baseline=True,
))

register_method(MethodSpec(
    name="feature_permutation",
    answers="how much the score drops when each feature group's values are shuffled across "
    "the batch (needs 2 inputs or more)",
    cost="1 forward pass per feature group",
    run=_feature_permutation,
    options=(Option("mask", None, _MASK_DOC, check_mask),),
    stochastic=True,
))


# -- Shapley value sampling -------------------------------------------------------------------


class _Walk:
    """Walks the orders of ``shapley_sampling`` for one baseline, crediting each switch."""

    def __init__(self, ctx: MethodContext, groups: Groups, base: np.ndarray,
                 base_score: np.ndarray, pairs_of: list[np.ndarray]):
        self.ctx, self.groups, self.pairs_of = ctx, groups, pairs_of
        self.table = np.zeros((ctx.n_pairs, groups.count))
        self.credit = _Credit(ctx, pairs_of)
        self.base_score = base_score
        self.flat_x = ctx.x.reshape(ctx.x.shape[0], -1)
        self.flat_base = base.reshape(base.shape[0], -1)
        self.copies = np.empty((ctx.batch_size, self.flat_x.shape[1]), dtype=ctx.x.dtype)
        self.used = 0
        self.jobs: list[tuple[int, int, int, bool]] = []
        self.prev = np.zeros(0)

    def walk(self, i: int, order: np.ndarray) -> None:
        """Input ``i`` from its baseline to itself, switching groups in ``order``."""
        state = self.flat_base[i].copy()
        last = order.shape[0] - 1
        for k, g in enumerate(order.tolist()):
            if k == last:  # every group switched: the input itself, F(x) already known
                self.jobs.append((i, g, -1, k == 0))
                continue
            m = self.groups.members(i, g)
            state[m] = self.flat_x[i, m]
            self.copies[self.used] = state
            self.jobs.append((i, g, self.used, k == 0))
            self.used += 1
            if self.used == self.copies.shape[0]:
                self.flush()

    def flush(self) -> None:
        out = self.credit.evaluate(self.copies[:self.used])
        for i, g, row, first in self.jobs:
            rs = self.pairs_of[i]
            now = self.credit.scores_of(out, i, row)
            self.table[rs, g] += now - (self.base_score[rs] if first else self.prev)
            self.prev = now
        self.jobs.clear()
        self.used = 0


def _shapley_sampling(ctx: MethodContext, options: Mapping[str, Any]) -> Result:
    shape, channel = _geometry(ctx)
    n = ctx.x.shape[0]
    groups = feature_groups(options["mask"], n, shape, channel, "shapley_sampling")
    if options["mask"] is None and groups.count > SHAPLEY_MAX_GROUPS:
        raise ValueError(
            f"method='shapley_sampling' without mask= makes every feature a group: "
            f"{groups.count} groups, {options['samples']} forward passes each; pass mask= "
            f"with at most a few hundred groups (e.g. superpixels from "
            "skimage.segmentation.slic, or a grid of patches)"
        )
    samples = options["samples"]
    orders = np.asarray([ctx.rng.permutation(groups.count) for _ in range(samples)])
    pairs_of = _pairs_of(ctx)
    inputs = [i for i in range(n) if pairs_of[i].size]
    present = np.zeros((n, groups.count), dtype=bool)
    for i in inputs:
        present[i, groups.present(i)] = True
    baselines = ctx.baselines()
    table = np.zeros((ctx.n_pairs, groups.count))
    base_scores = np.zeros(ctx.n_pairs)
    for _, base in baselines:
        base_score = ctx.scores(base[ctx.plan.pair_input], np.arange(ctx.n_pairs))
        walk = _Walk(ctx, groups, base, base_score, pairs_of)
        for order in orders:
            for i in inputs:
                walk.walk(i, order[present[i][order]])
        walk.flush()
        table += walk.table / samples
        base_scores += base_score
    table /= len(baselines)
    sizes = np.stack([np.diff(groups.starts[int(i)]) for i in ctx.plan.pair_input])
    share = np.divide(table, sizes, out=np.zeros_like(table), where=sizes > 0)
    attr = groups.spread(share, ctx.plan.pair_input).reshape((ctx.n_pairs, *shape))
    evaluations = [(samples * (present[int(i)].sum() - 1) + 1) * len(baselines)
                   for i in ctx.plan.pair_input]
    return ctx.result(attr, evaluations=np.asarray(evaluations), steps=samples,
                      baseline_score=base_scores / len(baselines), complete=True,
                      requested_steps=samples)


register_method(MethodSpec(
    name="shapley_sampling",
    answers="each feature group's average contribution over random orders of switching the "
    "groups from the baseline to the input (Shapley values, shared among the group's "
    "features; they add up to F(x) - F(x'))",
    cost="samples x (groups - 1) forward passes, + 1 (per baseline)",
    run=_shapley_sampling,
    options=(
        Option("samples", 25, "random orders of the groups (Shapley value sampling)",
               positive_int),
        Option("mask", None, _MASK_DOC + f" (at most {SHAPLEY_MAX_GROUPS} features then)",
               check_mask),
    ),
    uses_baseline=True,
    complete=True,
    stochastic=True,
))
