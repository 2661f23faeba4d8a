"""``method="secant"``: the path cut into pieces, each integrated by one secant backward pass.

The backend integrates a piece ``[a, b]`` exactly when every activation's input moves linearly on
it (``igkit.backends.torch_secant``); what is left is the error of units that switch inside the
same piece as a unit feeding them. Those pile up where the path crosses many switching points,
so the pieces are placed, like ``method="adaptive"``'s nodes, by a pilot:

1. A probe: one piece over the whole first path must be complete to rounding, or the model has
   a nonlinearity the backend cannot follow (2 points; the model is refused before the work).
2. A pilot of ``PILOT_PIECES`` uniform pieces (for budgets of ``MIN_PIECES_FOR_PILOT`` pieces
   or more), each piece's integral kept on its own. Where the average gradient jumps from one
   piece to the next, switching is dense: piece ``c`` gets the roughness ``r_c``, the mean of
   ``||(x - x') * (S_{c+1} - S_c)||`` over its two borders (``S`` the pieces' mean gradients).
3. The final pass: ``steps`` pieces whose density along alpha follows ``r^(2/3)`` (mixed with a
   uniform floor), cut at the quantiles of that density.

Measured on EfficientNet-Lite0 and the three demo photos against a Gauss-Legendre 2048
reference: with 64 pieces the attribution error is 1.2 / 0.8 / 0.6 % placed by the pilot, against
2.8 / 2.2 / 0.7 % uniform and 3.8 / 5.3 / 2.7 % for Gauss-Legendre with 64 points.

``steps="auto"`` refines the placed pieces 48, 96, 192, ... (at tol 1 %) and stops when
``CHANGE_TO_ERROR`` times the change from the previous level is within ``tol``; completeness is
exact at every level, so it cannot serve as the stopping rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from igkit.backends.base import Taken
from igkit.core.completeness import relative_change
from igkit.core.planner import RowBatch, all_rows

__all__ = [
    "PILOT_PIECES",
    "SecantRun",
    "piece_roughness",
    "place_pieces",
    "uniform_pieces",
]

PILOT_PIECES = 16
MIN_PIECES_FOR_PILOT = 32
PLACEMENT_POWER = 2.0 / 3.0
FLOOR_SHARE = 0.1
# "auto" starts at this many pieces for tol = 1 % and scales it as tol^-0.75 (the secant error
# falls about as n^-1.35 on EfficientNet-Lite0). Doubling from 32 stopped the demo photos at 128
# pieces (errors 0.45 / 0.42 %, 261 evaluations); from 48 the second level, 96, can already
# pass. Chosen on the three demo photos; benchmarks/RESULTS.md checks it on three others.
AUTO_FIRST_PIECES = 48
# A piece is complete up to rounding when every nonlinearity of the model was seen; a residual
# above this share of |F(x) - F(x')| (or of the summed |terms|, for a tiny gap) means one was not.
SECANT_RESIDUAL = 1e-3
# "auto" estimates the attribution error as this times the change at the last doubling of the
# pieces; see benchmarks/RESULTS.md for its calibration.
CHANGE_TO_ERROR = 0.7


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


def place_pieces(grid: np.ndarray, roughness: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pieces whose density on each pilot piece follows ``roughness^(2/3)`` with a floor;
    returns the ``n + 1`` ends and their weights."""
    dens = roughness**PLACEMENT_POWER
    total = float(dens.mean())
    dens = (1.0 - FLOOR_SHARE) * dens / total + FLOOR_SHARE if total > 0 else np.ones_like(dens)
    cdf = np.concatenate([[0.0], np.cumsum(dens * np.diff(grid))])
    cdf /= cdf[-1]
    alphas = np.interp(np.linspace(0.0, 1.0, n + 1), cdf, grid)
    alphas[0], alphas[-1] = 0.0, 1.0
    return _with_widths(alphas)


def auto_first_pieces(tol: float, max_steps: int) -> int:
    """The first level of ``steps="auto"``: ``AUTO_FIRST_PIECES`` at tol 1 %, more for tighter
    tolerances (a multiple of 8, from 16 up to ``max_steps``)."""
    n = AUTO_FIRST_PIECES * (0.01 / tol) ** 0.75
    return int(min(max_steps, max(16, 8 * round(n / 8))))


class SecantRun:
    """Runs the probe, pilot and pieces for every path of one call.

    Args:
        accumulate: ``rows -> (Taken, evaluations per path index, summed piece residual)``.
        split_paths: ``k -> None``: make path ``p * k + j`` a copy of path ``p`` (``k = 1``
            restores the real paths).
        diff: ``(P, ...)`` input minus baseline per path.
        gap: ``(P,)`` F(x) - F(x') per path.
    """

    def __init__(
        self,
        accumulate: Callable[[RowBatch], tuple[Taken, np.ndarray, float]],
        split_paths: Callable[[int], None],
        diff: np.ndarray,
        gap: np.ndarray,
    ) -> None:
        self._accumulate = accumulate
        self._split = split_paths
        self._diff = diff
        self._gap = gap
        self.evaluations = np.zeros(diff.shape[0], dtype=np.int64)

    def _count(self, counts: np.ndarray, per: int = 1) -> None:
        """Adds the session's evaluations per row path id; ``per`` virtual paths per path."""
        np.add.at(self.evaluations, np.arange(counts.shape[0]) // per, counts)

    def probe(self) -> None:
        """One piece over path 0; raises ValueError when it is not complete to rounding."""
        alphas, weights = uniform_pieces(1)
        taken, counts, residual = self._accumulate(all_rows([0], [alphas], [weights]))
        self._count(counts)
        gap = abs(float(self._gap[0]))
        scale = gap + 0.1 * float(np.abs(self._diff[0] * taken.sums[0]).sum())
        if residual > SECANT_RESIDUAL * scale:
            raise _NotSecantModel(residual / max(gap, 1e-300))

    def pilot(self, paths: np.ndarray) -> list[np.ndarray]:
        """Roughness per pilot piece for each of ``paths``."""
        m = PILOT_PIECES
        grid, weights = uniform_pieces(m)
        self._split(m)
        owners = [np.minimum(np.arange(m + 1), m - 1) + p * m for p in paths]
        rows = RowBatch(np.concatenate(owners), np.tile(grid, paths.shape[0]),
                        np.tile(weights, paths.shape[0]))
        try:
            taken, counts, _ = self._accumulate(rows)
        finally:
            self._split(1)
        self._count(counts, per=m)
        sums = taken.sums.reshape(-1, m, *self._diff.shape[1:])
        return [piece_roughness(sums[p], grid, self._diff[p]) for p in paths]

    def level(self, paths: np.ndarray, ends: list[np.ndarray], weights: list[np.ndarray]):
        """Integrates the given pieces of each path; returns the attributions ``(len(paths),
        ...)`` and the per-path scores at the ends."""
        taken, counts, _ = self._accumulate(all_rows([int(p) for p in paths], ends, weights))
        self._count(counts)
        return self._diff[paths] * taken.sums[paths], taken

    def run(self, paths: np.ndarray, steps: int | None, tol: float, max_steps: int, record):
        """Fixed ``steps`` pieces, or (``steps=None``) refinement until ``tol``.

        Returns ``(attributions, pieces used, met)`` per path.
        """
        self.probe()
        n_paths = paths.shape[0]
        first = steps if steps is not None else auto_first_pieces(tol, max_steps)
        rough = self.pilot(paths) if first >= MIN_PIECES_FOR_PILOT else None

        def plan(n: int, active: np.ndarray):
            if rough is None:
                e, w = uniform_pieces(n)
                return [e] * active.shape[0], [w] * active.shape[0]
            grid = uniform_pieces(PILOT_PIECES)[0]
            placed = [place_pieces(grid, rough[int(np.searchsorted(paths, p))], n)
                      for p in active]
            return [e for e, _ in placed], [w for _, w in placed]

        attr = np.zeros_like(self._diff[paths])
        used = np.zeros(n_paths, dtype=np.int64)
        met = np.ones(n_paths, dtype=bool)
        active, n, prev = paths, first, None
        while True:
            ends, weights = plan(n, active)
            level, taken = self.level(active, ends, weights)
            pos = np.searchsorted(paths, active)
            record(active, ends, taken)
            done = np.ones(active.shape[0], dtype=bool)
            if steps is None:
                done[:] = False
                if prev is not None:
                    done = np.array([CHANGE_TO_ERROR * relative_change(level[j], prev[j]) <= tol
                                     for j in range(active.shape[0])])
            attr[pos] = level
            used[pos] = n
            if done.all():
                break
            if n >= max_steps:
                met[pos[~done]] = False
                break
            active, prev = active[~done], level[~done]
            n = min(2 * n, max_steps)
        return attr, used, met


class _NotSecantModel(ValueError):
    def __init__(self, miss: float) -> None:
        super().__init__(miss)
        self.miss = miss
