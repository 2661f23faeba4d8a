"""Analytic models with closed-form Integrated Gradients, and a NumPy Session that runs them.

The NumPy session implements the backend contract without a framework, so the engine's
arithmetic (rules, packing, refinement, back-off) is tested exactly and its model calls counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from igkit.backends.base import OutOfMemory, Taken
from igkit.core.planner import RowBatch


@dataclass
class Analytic:
    """F(x) = outputs(x)[:, class]; grad(x, t) = dF_t/dx; both on flat float64 batches."""

    f: object
    grad: object
    classes: int = 1


def cubic_ridge(u: np.ndarray) -> Analytic:
    """F(x) = (u.x)^4: the path integrand is a cubic in alpha, IG has a closed form."""
    return Analytic(
        f=lambda x: ((x @ u) ** 4)[:, None],
        grad=lambda x, t: 4 * (x @ u)[:, None] ** 3 * u[None, :],
    )


def cubic_ridge_ig(u: np.ndarray, x: np.ndarray, xb: np.ndarray) -> np.ndarray:
    s1, s0 = x @ u, xb @ u
    return (x - xb) * u * ((s1**4 - s0**4) / (s1 - s0))[:, None]


def sigmoid_linear(w: np.ndarray) -> Analytic:
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    return Analytic(
        f=lambda x: sig(x @ w)[:, None],
        grad=lambda x, t: (sig(x @ w) * (1 - sig(x @ w)))[:, None] * w[None, :],
    )


def sigmoid_linear_ig(w: np.ndarray, x: np.ndarray, xb: np.ndarray) -> np.ndarray:
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    return (x - xb) * w * ((sig(x @ w) - sig(xb @ w)) / ((x - xb) @ w))[:, None]


@dataclass
class NumpySession:
    """A Session over an ``Analytic`` model that counts calls and can simulate out-of-memory."""

    model: Analytic
    batch_size: int = 16
    oom_above: int | None = None
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    default_channel_axis: int = -1
    calls: list[int] = field(default_factory=list)
    oom_raised: int = 0

    def outputs(self, x):
        return self.model.f(x.reshape(x.shape[0], -1))

    def set_paths(self, inputs, baselines, path_input, path_target):
        self.shape = inputs.shape[1:]
        self.base = baselines.reshape(baselines.shape[0], -1)
        self.diff = inputs.reshape(inputs.shape[0], -1)[path_input] - self.base
        self.target = path_target
        self.sums = np.zeros_like(self.base)
        self.scores: list[np.ndarray] = []

    def accumulate(self, batch: RowBatch) -> None:
        if self.oom_above is not None and len(batch) > self.oom_above:
            self.oom_raised += 1
            raise OutOfMemory("simulated")
        self.calls.append(len(batch))
        xb = self.base[batch.path] + batch.alpha[:, None] * self.diff[batch.path]
        t = self.target[batch.path]
        g = self.model.grad(xb, t)
        np.add.at(self.sums, batch.path, g * batch.weight[:, None])
        self.scores.append(self.model.f(xb)[np.arange(len(batch)), t])

    def take(self) -> Taken:
        sums = self.sums.reshape(-1, *self.shape).copy()
        scores = np.concatenate(self.scores) if self.scores else np.empty(0)
        self.sums[:] = 0
        self.scores = []
        return Taken(sums, scores, None)

    def close(self) -> None:
        pass
