"""``method="secant"``: the path cut into pieces, each integrated by one secant backward pass.

The backend integrates a piece ``[a, b]`` exactly when every activation's input moves linearly on
it (``igkit.backends.torch_secant``); what is left is the error of units that switch inside the
same piece as a unit feeding them. Those pile up where the path crosses many switching points,
so the pieces are placed by a pilot:

1. A pilot of ``PILOT_PIECES`` uniform pieces ("regions"), each region's integral kept on its
   own. Where the average gradient jumps from one region to the next, switching is dense: region
   ``c`` gets the roughness ``r_c``, the mean of ``||(x - x') * (S_{c+1} - S_c)||`` over its two
   borders (``S`` the regions' mean gradients).
2. The final pass: ``k_c >= 1`` pieces of equal width in region ``c``, ``k_c`` following
   ``r_c^(2/3)`` (mixed with a uniform floor), ``sum(k_c) = steps``. The pilot's grid is part of
   the final one, so each region's integral is known at both resolutions.
3. The error estimate, free of further model calls: region ``c``'s pilot error is about the
   change ``d_c`` of its integral from the pilot's one piece to the final ``k_c``, and the
   final error there about ``d_c * k_c^(-1.5)``; regions with one piece take
   ``d_c = c * r_c / PILOT_PIECES`` from the roughness, ``c`` the larger of
   ``PILOT_ERROR_PER_ROUGHNESS`` and the median ``d_c / (r_c / PILOT_PIECES)`` of the path's
   measured regions (0.14-0.18 on EfficientNet-Lite0 photos, 0.09-0.22 on the zoo's seeded
   ReLU nets: 2-5 times the floor; with the floor alone
   the unmeasured regions hid a third of the error, and auto stopped at 1.28 % for tol 1 %,
   now at 0.65-0.81 %). The attribution
   error is estimated as ``ERROR_SCALE * sqrt(sum_c (d_c k_c^-1.5)^2)`` relative to the
   attributions' norm.

Budgets under ``MIN_PIECES_FOR_PILOT`` pieces run uniform pieces.

``steps="auto"`` picks the first budget from the same estimate with ``d_c`` predicted from the
roughness, runs it, and stops when the measured estimate is within ``tol``. Otherwise it refines
the regions that miss most, from their measured ``d_c``: only they run again, at their new
``k_c``, and replace their integrals, while the other regions keep theirs. Completeness is exact
for every budget when the backend has an exact rule for every operation of the model, so it
cannot serve as the stopping rule then; an operation it follows by its midpoint gradient (the
fallback) leaves a real completeness error, falling about as the pieces squared, and auto also
refines until that is within ``tol`` (all regions grow alike: the error is not known per
region). Calibration and out-of-sample checks: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from igkit.backends.base import Taken
from igkit.core.completeness import l2_norm
from igkit.core.planner import RowBatch, all_rows

__all__ = [
    "PILOT_PIECES",
    "SecantRun",
    "allocate_pieces",
    "grow_for_completeness",
    "piece_roughness",
    "region_error",
    "region_pieces",
    "uniform_pieces",
]

PILOT_PIECES = 16
MIN_PIECES_FOR_PILOT = 32
PLACEMENT_POWER = 2.0 / 3.0
FLOOR_SHARE = 0.1
# A region's secant error falls as k^-ERROR_POWER with its k pieces (measured on
# EfficientNet-Lite0: the ratio of the true error to the estimate is flat from 48 to 96 pieces).
ERROR_POWER = 1.5
# True attribution error / sqrt(sum_c (d_c k_c^-1.5)^2), measured at 48-128 pieces on nets
# built with seeded random weights in float64 with exact references (ReLU CNNs and MLPs, a
# GELU/LayerNorm net; benchmarks/secant_calibration.py): 0.64-1.28 on the CNNs, 0.48-2.24 on
# the MLP. 1.6 puts the estimate above the true error on the CNNs with a margin, and not so far
# above that auto stops far below tol: with it the default call at tol=1e-3 stops at true
# errors of 0.2-0.9 tol on those nets. (An earlier calibration on photos, 2.1, stopped the same
# nets at 1/20 of tol.)
ERROR_SCALE = 1.6
# The measured sqrt(sum_c (d_c k_c^-1.5)^2) against the same sum with d_c = r_c * width, on the
# same nets: the first budget planned with 0.25 (photos of EfficientNet-Lite0: 0.15-0.30) came
# out 8 times more accurate than asked on them; 0.04 lands the first pass near tol there, and
# where it falls short (a net whose pilot underestimates) the regions that miss most are
# refined.
PILOT_ERROR_PER_ROUGHNESS = 0.04
# "auto" plans the first budget in multiples of this many pieces, at least MIN_PIECES_FOR_PILOT.
AUTO_STEP = 8
# A refinement aims at this share of tol, so that one usually suffices.
AUTO_PLAN_SHARE = 0.8
# A refinement grows a region's pieces in steps of this factor (at least one piece).
REFINE_GROWTH = 1.5
# A fallback operation's completeness error falls as k^-COMPLETENESS_POWER with k pieces (the
# midpoint rule's error per piece, k^-3, summed over the pieces).
COMPLETENESS_POWER = 2.0


def uniform_pieces(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n + 1`` piece ends from 0 to 1 and their weights (the width of the piece each starts;
    0 on the last end)."""
    return _with_widths(np.linspace(0.0, 1.0, n + 1))


def _with_widths(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = np.zeros(alphas.shape[0])
    weights[:-1] = np.diff(alphas)
    return alphas, weights


def piece_roughness(integrals: np.ndarray, grid: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Roughness per pilot piece from the pieces' integrals ``(m, ...)`` of one path."""
    m = grid.shape[0] - 1
    mean_grad = integrals.reshape(m, -1) / np.diff(grid)[:, None]
    jumps = np.linalg.norm((mean_grad[1:] - mean_grad[:-1]) * diff.reshape(1, -1), axis=1)
    r = np.zeros(m)
    r[:-1] += 0.5 * jumps
    r[1:] += 0.5 * jumps
    r[[0, -1]] *= 2.0  # an end piece has one border
    return r


def allocate_pieces(roughness: np.ndarray, n: int) -> np.ndarray:
    """Pieces per region, ``>= 1`` each and ``n`` in all (``n >= len(roughness)``): shares
    follow ``roughness^(2/3)`` mixed with a ``FLOOR_SHARE`` uniform floor, rounded by largest
    remainders."""
    m = roughness.shape[0]
    dens = roughness**PLACEMENT_POWER
    total = float(dens.sum())
    share = ((1.0 - FLOOR_SHARE) * dens / total + FLOOR_SHARE / m) if total > 0 else (
        np.full(m, 1.0 / m))
    raw = share * n
    k = np.maximum(1, np.floor(raw)).astype(np.int64)
    while k.sum() > n:  # the floor of one piece took more than the shares gave
        k[np.argmax(np.where(k > 1, k - raw, -np.inf))] -= 1
    k[np.argsort(k - raw, kind="stable")[: n - int(k.sum())]] += 1
    return k


def region_pieces(counts: np.ndarray, keep: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ends of ``counts[c]`` equal pieces in each of ``len(counts)`` equal regions of
    [0, 1], their weights, and the region of the piece each end starts (the last end: the last
    region). With ``keep`` (a bool per region), only the pieces of the kept regions: a run of
    kept regions ends in a point of weight 0."""
    m = counts.shape[0]
    grid = np.linspace(0.0, 1.0, m + 1)
    alphas = np.concatenate(
        [np.linspace(grid[c], grid[c + 1], int(counts[c]) + 1)[:-1] for c in range(m)] + [[1.0]]
    )
    regions = np.append(np.repeat(np.arange(m), counts), m - 1)
    alphas, weights = _with_widths(alphas)
    if keep is None:
        return alphas, weights, regions
    starts = keep[regions] & (weights > 0)
    rows = starts.copy()
    rows[1:] |= starts[:-1]
    return alphas[rows], np.where(starts, weights, 0.0)[rows], regions[rows]


def _pilot_errors(change: np.ndarray | None, roughness: np.ndarray,
                  counts: np.ndarray) -> np.ndarray:
    """Each region's pilot error: the measured ``change`` where it has two pieces or more,
    else (or with ``change=None``) predicted from the roughness, with the larger of
    ``PILOT_ERROR_PER_ROUGHNESS`` and the median ratio of change to roughness measured on this
    path's other regions (a model whose pilot errors are larger per unit of roughness than the
    calibration nets' shows it in the regions that were refined)."""
    per_roughness = roughness / roughness.shape[0]
    if change is None:
        return PILOT_ERROR_PER_ROUGHNESS * per_roughness
    measured = counts >= 2
    coefficient = PILOT_ERROR_PER_ROUGHNESS
    usable = measured & (per_roughness > 0)
    if usable.any():
        coefficient = max(coefficient, float(np.median(change[usable] / per_roughness[usable])))
    return np.where(measured, change, coefficient * per_roughness)


def _estimate(pilot_error: np.ndarray, counts: np.ndarray) -> float:
    left = pilot_error * counts.astype(np.float64) ** -ERROR_POWER
    return ERROR_SCALE * float(np.sqrt(np.sum(left**2)))


def region_error(change: np.ndarray | None, roughness: np.ndarray, counts: np.ndarray) -> float:
    """Estimated attribution error (a norm) of a final pass with ``counts`` pieces per region.

    ``change[c]``: ``||pilot integral - final integral||`` of region ``c`` (the pilot's error
    there), or ``None`` to predict it from the roughness. Regions with one piece cannot measure
    it and predict it too."""
    return _estimate(_pilot_errors(change, roughness, counts), counts)


def plan_pieces(roughness: np.ndarray, target: float, low: int, high: int) -> int:
    """The fewest pieces (a multiple of ``AUTO_STEP`` in ``[low, high]``) whose error, predicted
    from the roughness, is within ``target`` (a norm); ``high`` when none is."""
    n = low
    while n < high and region_error(None, roughness, allocate_pieces(roughness, n)) > target:
        n += AUTO_STEP
    return min(n, high)


def refine_pieces(change: np.ndarray, roughness: np.ndarray, counts: np.ndarray, target: float,
                  high: int) -> np.ndarray:
    """New pieces per region after a pass with ``counts`` missed ``target``.

    Regions that do not grow keep their integrals; one that grows runs again in full. So the
    regions grow one step (``REFINE_GROWTH``) at a time, each step the one that removes the most
    squared estimated error per point it costs (its new pieces, plus all of its old ones if it
    had not grown yet), until the estimate is within ``target`` or ``high`` pieces are placed.
    """
    pilot_error = _pilot_errors(change, roughness, counts)
    k = counts.astype(np.int64).copy()
    while _estimate(pilot_error, k) > target and k.sum() < high:
        step = np.maximum(1, np.ceil((REFINE_GROWTH - 1.0) * k)).astype(np.int64)
        power = -2.0 * ERROR_POWER  # of the squared error
        gain = pilot_error**2 * (k.astype(np.float64) ** power
                                 - (k + step).astype(np.float64) ** power)
        cost = np.where(k > counts, step, k + step + 1)
        c = int(np.argmax(gain / cost))
        k[c] += min(int(step[c]), high - int(k.sum()))
    return k


def grow_for_completeness(counts: np.ndarray, miss: float, tol: float, high: int) -> np.ndarray:
    """Pieces per region after a pass whose completeness error ``miss`` (relative) missed
    ``tol``: every region grows by the factor that brings the error, falling as
    ``k^-COMPLETENESS_POWER``, to ``AUTO_PLAN_SHARE * tol`` (by one piece at least), within
    ``high`` pieces in all."""
    factor = (miss / (AUTO_PLAN_SHARE * tol)) ** (1.0 / COMPLETENESS_POWER)
    k = np.maximum(counts + 1, np.ceil(counts * factor)).astype(np.int64)
    room = high - int(counts.sum())
    if k.sum() > high and room > 0:
        # Share the room left in proportion to the growth asked for, by largest remainders.
        raw = (k - counts) * room / float((k - counts).sum())
        add = np.floor(raw).astype(np.int64)
        add[np.argsort(add - raw, kind="stable")[: room - int(add.sum())]] += 1
        k = counts + add
    return k if room > 0 else counts.copy()


def _within_budget(k: np.ndarray, counts: np.ndarray, room: int) -> np.ndarray | None:
    """``k`` pieces per region, shrunk so that re-running the regions that grow (each in
    full) costs at most ``room`` evaluations; None when not even one region can grow."""
    k = k.copy()
    while True:
        grows = k > counts
        if not grows.any():
            return None
        cost = int(k[grows].sum())
        if cost <= room:
            return k
        # Drop the growth of the region that costs most per piece added.
        c = int(np.argmax(np.where(grows, k / np.maximum(k - counts, 1), -np.inf)))
        k[c] = counts[c]


class SecantRun:
    """Runs the pilot and the pieces for every path of one call.

    Args:
        accumulate: ``rows -> (Taken, evaluations per path index, summed piece residual)``.
        split_paths: ``k -> None``: make path ``p * k + j`` a copy of path ``p`` (``k = 1``
            restores the real paths).
        diff: ``(P, ...)`` input minus baseline per path.
        gap: ``(P,)`` F(x) - F(x') per path.
        unchanged: ``(P,)`` True where F(x) = F(x') to rounding (completeness says nothing
            there), or None.

    ``residual`` sums the pieces' |completeness residual| (rounding only when the backend
    followed every operation exactly).
    """

    def __init__(
        self,
        accumulate: Callable[[RowBatch], tuple[Taken, np.ndarray, float]],
        split_paths: Callable[[int], None],
        diff: np.ndarray,
        gap: np.ndarray,
        unchanged: np.ndarray | None = None,
    ) -> None:
        self._accumulate = accumulate
        self._split = split_paths
        self._diff = diff
        self._gap = gap
        self._unchanged = unchanged
        self.evaluations = np.zeros(diff.shape[0], dtype=np.int64)
        self.residual = 0.0

    def _count(self, counts: np.ndarray, per: int = 1) -> None:
        """Adds the session's evaluations per row path id; ``per`` virtual paths per path."""
        np.add.at(self.evaluations, np.arange(counts.shape[0]) // per, counts)

    def completeness_miss(self, path: int, attributions: np.ndarray) -> float:
        """``|sum(attributions) - (F(x) - F(x'))| / |F(x) - F(x')|`` of one path (0 where the
        output did not change)."""
        gap = float(self._gap[path])
        if gap == 0 or (self._unchanged is not None and bool(self._unchanged[path])):
            return 0.0
        return abs(float(attributions.sum()) - gap) / abs(gap)

    def _by_region(self, paths: np.ndarray, ends: list, weights: list, regions: list):
        """Integrates the given pieces, keeping each region's gradient sum apart: ``(len(paths),
        m, ...)``, the Taken (scores per row) and the summed piece residual."""
        m = PILOT_PIECES
        owners = [r + p * m for p, r in zip(paths, regions, strict=True)]
        rows = RowBatch(np.concatenate(owners), np.concatenate(ends), np.concatenate(weights))
        self._split(m)
        try:
            taken, counts, residual = self._accumulate(rows)
        finally:
            self._split(1)
        self.residual += residual
        self._count(counts, per=m)
        sums = taken.sums.reshape(-1, m, *self._diff.shape[1:])[paths]
        return sums, taken, residual

    def pilot(self, paths: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The pilot's region attributions ``(len(paths), m, ...)`` and roughness per path."""
        m = PILOT_PIECES
        ends, weights, regions = region_pieces(np.ones(m, dtype=np.int64))
        n = paths.shape[0]
        sums, _, _ = self._by_region(paths, [ends] * n, [weights] * n, [regions] * n)
        grid = uniform_pieces(m)[0]
        rough = [piece_roughness(sums[j], grid, self._diff[p]) for j, p in enumerate(paths)]
        return self._diff[paths][:, None] * sums, rough

    def run(self, paths: np.ndarray, steps: int | None, tol: float, max_steps: int, record,
            pilot: tuple[np.ndarray, list[np.ndarray]] | None = None):
        """Fixed ``steps`` pieces, or (``steps=None``) pieces until the estimated error is
        within ``tol``, spending at most ``max_steps`` evaluations per path in all (those
        already in ``self.evaluations`` included: a pilot or another rule's probe). ``pilot``:
        the result of :meth:`pilot` when it has run already.

        Returns ``(attributions, pieces used, met, error estimate)`` per path: the estimate is
        the relative L2 attribution error (``||error|| / ||attributions||``, see
        :func:`region_error`), NaN for a run too short to have a pilot."""
        n_paths = paths.shape[0]
        no_estimate = np.full(n_paths, np.nan)
        if steps is None and pilot is None and max_steps < PILOT_PIECES + MIN_PIECES_FOR_PILOT:
            # Too few evaluations for a pilot and a pass, so nothing to estimate the error
            # with: the whole budget as uniform pieces, reported unmet.
            left = max(1, max_steps - int(self.evaluations[paths].max(initial=0)))
            return (*self._uniform(paths, left, record), np.zeros(n_paths, dtype=bool),
                    no_estimate)
        if steps is not None and steps < MIN_PIECES_FOR_PILOT:
            return (*self._uniform(paths, steps, record), np.ones(n_paths, dtype=bool),
                    no_estimate)
        pilot_attr, rough = self.pilot(paths) if pilot is None else pilot
        if steps is None:
            norms = [l2_norm(a.sum(axis=0)) for a in pilot_attr]
            room = [max(MIN_PIECES_FOR_PILOT, max_steps - int(self.evaluations[p])) for p in paths]
            n = [plan_pieces(r, tol * s, MIN_PIECES_FOR_PILOT, high)
                 for r, s, high in zip(rough, norms, room, strict=True)]
        else:
            n = [int(steps)] * n_paths
        counts = [allocate_pieces(r, k) for r, k in zip(rough, n, strict=True)]
        final = self._regions(paths, counts, None, record)
        met = np.ones(n_paths, dtype=bool)
        estimate = np.zeros(n_paths)
        active = np.arange(n_paths)
        while active.size:
            grown = {}
            for j in active:
                change = np.linalg.norm((pilot_attr[j] - final[j]).reshape(PILOT_PIECES, -1),
                                        axis=1)
                scale = l2_norm(final[j].sum(axis=0))
                error = region_error(change, rough[j], counts[j])
                estimate[j] = error / scale if scale > 0 else (0.0 if error == 0 else np.inf)
                if steps is not None:
                    continue
                # A fallback operation leaves a completeness error: it must meet tol as well.
                miss = self.completeness_miss(int(paths[j]), final[j])
                if error <= tol * scale and miss <= tol:
                    continue
                spent = int(self.evaluations[paths[j]])
                k = refine_pieces(change, rough[j], counts[j], AUTO_PLAN_SHARE * tol * scale,
                                  max_steps)
                if miss > tol:
                    k = np.maximum(k, grow_for_completeness(counts[j], miss, tol, max_steps))
                affordable = _within_budget(k, counts[j], max_steps - spent)
                if affordable is None:
                    met[j] = False
                    continue
                grown[j] = affordable
            active = np.array(sorted(grown), dtype=np.int64)
            if active.size:
                keep = [grown[j] > counts[j] for j in active]
                for j in active:
                    counts[j] = grown[j]
                again = self._regions(paths[active], [counts[j] for j in active], keep, record)
                for i, j in enumerate(active):
                    final[j][keep[i]] = again[i][keep[i]]
        attr = np.stack([f.sum(axis=0) for f in final])
        return attr, np.array([int(k.sum()) for k in counts]), met, estimate

    def _uniform(self, paths: np.ndarray, n: int, record) -> tuple[np.ndarray, np.ndarray]:
        """``n`` uniform pieces on every path, no pilot: attributions and pieces used."""
        n_paths = paths.shape[0]
        ends, weights = uniform_pieces(n)
        taken, evaluated, residual = self._accumulate(
            all_rows([int(p) for p in paths], [ends] * n_paths, [weights] * n_paths))
        self.residual += residual
        self._count(evaluated)
        record(paths, [ends] * n_paths, taken, True)
        return self._diff[paths] * taken.sums[paths], np.full(n_paths, n)

    def _regions(self, paths: np.ndarray, counts: list, keep: list | None, record):
        """One pass of ``counts[i][c]`` pieces in region ``c`` of path ``paths[i]`` (only the
        regions ``keep[i]`` when given): the regions' attributions ``(len(paths), m, ...)``."""
        placed = [region_pieces(k, None if keep is None else keep[i])
                  for i, k in enumerate(counts)]
        sums, taken, _ = self._by_region(paths, [e for e, _, _ in placed],
                                          [w for _, w, _ in placed], [r for _, _, r in placed])
        record(paths, [e for e, _, _ in placed], taken, keep is None)
        return self._diff[paths][:, None] * sums
