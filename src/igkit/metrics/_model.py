"""Forward passes for the metrics: any model igkit runs, in full batches of ``batch_size``.

Every metric asks the model for the scores of many perturbed copies of its inputs (a deletion
curve of 50 steps over 64 images is 3,264 images). ``ModelScores`` opens the model once through
igkit's own machinery (``igkit.api._prepare`` and ``_session``: torch, Keras/TF, JAX and
``LoadedModel``s alike) and :func:`score_rows` packs the rows of *all* inputs and steps into
batches of exactly ``batch_size`` images, built on the host only when their batch is due, so
that memory stays bounded by ``batch_size`` whatever the curve's length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from igkit.api import _describe, _prepare, _session
from igkit.backends.base import Session
from igkit.core.checks import check_finite_outputs
from igkit.core.engine import first_forward
from igkit.core.targets import resolve_targets

__all__ = [
    "ModelScores", "check_attributions", "forward", "open_model", "score_rows", "targets_of",
]

#: Builds the images of some rows: ``rows`` (indices into the metric's own row numbering) to
#: ``(images (len(rows), *example_shape), targets (len(rows),))``.
RowBuilder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class ModelScores:
    """An open model: forward passes only, in batches of at most ``batch_size`` images.

    Attributes:
        session: The backend's session (``igkit.backends.base.Session``).
        dtype: The dtype the model computes in; images are cast to it.
        batch_size: Images per model call.
        calls: Model calls made so far (each a batch of at most ``batch_size`` images).
        images: Images scored so far.
    """

    session: Session
    dtype: np.dtype
    batch_size: int
    calls: int = 0
    images: int = 0

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """``(n, classes)`` float64 outputs (after ``output=``) of the images ``x``."""
        x = np.asarray(x, dtype=self.dtype)
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            out.append(self.session.outputs(x[start : start + self.batch_size]))
            self.calls += 1
        self.images += x.shape[0]
        return np.concatenate(out) if out else np.zeros((0, 0))

    def scores(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``(n,)`` the score of class ``targets[i]`` at image ``x[i]``."""
        out = self.outputs(x)
        return out[np.arange(out.shape[0]), np.asarray(targets, dtype=np.int64)]


@contextlib.contextmanager
def open_model(
    model: object,
    x: np.ndarray,
    *,
    output: object = "raw",
    batch_size: int | None = None,
) -> Iterator[tuple[ModelScores, np.ndarray, np.ndarray]]:
    """Opens ``model`` for forward passes and runs it once on the batch ``x``.

    Everything igkit checks before a model call is checked here (model kind, ``output``,
    ``batch_size``, NaN/Inf in ``x``), and a first pass that fails is explained as
    ``igkit.integrated_gradients`` explains it (a transposed layout, token ids).

    Yields:
        ``(scores, x, outputs)``: the open model, ``x`` as a float array in the model's dtype,
        and its ``(N, classes)`` outputs.
    """
    prep = _prepare(
        model, x, output=output, batch_size=batch_size, channel_axis=None,
        input_range=(0.0, 1.0), batched=True,
    )
    with _session(prep) as session:
        xs = prep.x.astype(session.dtype, copy=False)
        n = xs.shape[0]
        outputs, _ = first_forward(
            session, xs[: prep.options.batch_size], _describe(prep, session, "the inputs"),
            f"the {n} input{'s' if n > 1 else ''}",
        )
        runner = ModelScores(session, np.dtype(session.dtype), prep.options.batch_size, 1,
                             outputs.shape[0])
        if n > prep.options.batch_size:
            outputs = np.concatenate([outputs, runner.outputs(xs[prep.options.batch_size :])])
        check_finite_outputs(outputs, [f"input {i}" for i in range(n)])
        yield runner, xs, np.asarray(outputs, dtype=np.float64)


def forward(
    model: object, x: object, *, output: object = "raw", batch_size: int | None = None
) -> np.ndarray:
    """The ``(N, classes)`` float64 outputs of ``model`` at the batch ``x``, forward only, in
    batches of ``batch_size`` (any model ``igkit.integrated_gradients`` takes)."""
    with open_model(model, np.asarray(x), output=output, batch_size=batch_size) as (_, _, out):
        return out


def targets_of(target: object, outputs: np.ndarray) -> np.ndarray:
    """``(N,)`` one class per input: None (the top-1), an int, or one int per input."""
    return np.asarray(resolve_targets(target, outputs), dtype=np.int64)


def score_rows(
    runner: ModelScores, n_rows: int, build: RowBuilder, *, top1: np.ndarray | None = None
) -> np.ndarray:
    """``(n_rows,)`` the target score of every row, the rows built and scored ``batch_size`` at
    a time: each model call but the last gets a full batch, whichever inputs its rows are of.

    With ``top1`` (a bool array of ``n_rows``), also records whether each row's top class is
    its target."""
    out = np.empty(n_rows, dtype=np.float64)
    for start in range(0, n_rows, runner.batch_size):
        rows = np.arange(start, min(n_rows, start + runner.batch_size))
        images, targets = build(rows)
        outputs = runner.outputs(images)
        out[rows] = outputs[np.arange(rows.shape[0]), targets]
        if top1 is not None:
            top1[rows] = outputs.argmax(axis=1) == targets
    return out


def check_attributions(x: np.ndarray, attributions: object) -> np.ndarray:
    """``attributions`` as float64 broadcast to the shape of ``x`` (a map with one channel
    stands for every channel), refused with the shapes when it cannot be."""
    a = np.asarray(attributions, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("attributions contain NaN or Inf; a metric of them means nothing")
    try:
        return np.broadcast_to(a, x.shape)
    except ValueError:
        raise ValueError(
            f"attributions of shape {a.shape} do not match the inputs' shape {x.shape}; pass "
            "one map per input, shaped like the input (or with one channel)"
        ) from None
