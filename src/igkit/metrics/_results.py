"""The one shape of every metric's answer: one number per input, and what it is.

Each metric returns a frozen dataclass deriving from :class:`MetricResult` (curves, ROAD scores,
MPRT similarities per layer add their own arrays), so that a caller, e.g. a command writing
Parquet, reads ``metric``, ``values`` and ``higher_is_better`` from any of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MetricResult"]


@dataclass(frozen=True)
class MetricResult:
    """One metric's scores of a batch of explanations.

    Attributes:
        metric: The metric's registered name (``igkit.metrics.metric_names()``).
        values: ``(N,)`` one score per input (NaN where the metric is undefined for it).
        higher_is_better: Whether a larger value means a better explanation.
    """

    metric: str
    values: np.ndarray
    higher_is_better: bool

    def summary(self) -> dict[str, float | int | str | bool]:
        """``metric``, ``mean``, ``std`` and ``n`` over the inputs with a defined value."""
        v = np.asarray(self.values, dtype=np.float64)
        v = v[np.isfinite(v)]
        return {
            "metric": self.metric,
            "mean": float(v.mean()) if v.size else float("nan"),
            "std": float(v.std()) if v.size else float("nan"),
            "n": int(v.size),
            "higher_is_better": self.higher_is_better,
        }
