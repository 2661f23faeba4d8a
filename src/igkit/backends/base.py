"""The contract between the NumPy core and a framework: give me gradients of this batch.

A backend module exposes ``matches(model) -> bool`` (cheap, imports nothing new),
``probe(model, example) -> bool`` (for bare callables: does the model run on this framework's
tensors?) and ``open_session(model, ...) -> Session``. The session holds the inputs and baselines
on the device, evaluates batches of path points, reduces their weighted gradients into one
image-sized sum per path on the device, and hands back only those sums and scalar scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from igkit.core.planner import RowBatch

__all__ = [
    "OUTPUT_NAMES",
    "PRECISIONS",
    "DisconnectedModelError",
    "OutOfMemory",
    "Session",
    "SessionOptions",
    "Taken",
    "check_output_shape",
]

OUTPUT_NAMES = ("raw", "softmax", "sigmoid")
# "float32": exact arithmetic in the compute dtype (the default). "tf32": TF32 convolutions and
# matmuls on CUDA. "bf16" / "fp16": forward and backward under autocast, sums in float32.
PRECISIONS = ("float32", "tf32", "bf16", "fp16")


class DisconnectedModelError(ValueError):
    """The explained output does not depend on the input (no gradient path)."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory on a batch; the caller may retry with a smaller one."""


@dataclass(frozen=True)
class SessionOptions:
    """How a session computes.

    Attributes:
        output: "raw", "softmax", "sigmoid" or a callable on the framework's output tensor.
        batch_size: The most path points per model call.
        dtype: NumPy dtype to compute in, or None for the model's own (float64 models stay
            float64; others use float32).
        input_dtype: The inputs' dtype: a model without floating parameters computes in float64
            when its inputs are float64.
        trace: Also record the mean |gradient| of every row (for the saturation plots).
        precision: One of ``PRECISIONS``; anything but "float32" trades completeness for speed
            and is supported by the torch backend only.
    """

    output: object = "raw"
    batch_size: int = 16
    dtype: np.dtype | None = None
    input_dtype: np.dtype | None = None
    trace: bool = False
    precision: str = "float32"

    def fallback_dtype(self) -> str:
        """The dtype name for a model that has no floating parameters to take it from."""
        if self.input_dtype is not None and np.dtype(self.input_dtype) == np.float64:
            return "float64"
        return "float32"


@dataclass(frozen=True)
class Taken:
    """What ``Session.take`` returns for the rows evaluated since the previous take."""

    sums: np.ndarray  # (P, *example_shape): weighted gradient sum per path
    scores: np.ndarray  # (rows,): target score at each row, in evaluation order
    mean_abs_gradient: np.ndarray | None  # (rows,) when tracing, else None


def check_output_shape(out, n: int):
    """Returns the model output as ``(n, classes)``: a ``(n,)`` output becomes one class.

    Works on any framework's tensor (only ``.shape`` and ``[:, None]`` are used).
    """
    shape = tuple(int(d) for d in out.shape)
    if len(shape) == 1 and shape[0] == n:
        return out[:, None]
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(
            f"the explained output has shape {shape}; igkit needs (batch, classes) = ({n}, C). "
            "Pass output= a callable that maps the model output to per-class scores"
        )
    return out


class Session(Protocol):
    """A model bound to a device, ready to evaluate paths."""

    dtype: np.dtype
    default_channel_axis: int

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Forward only: the transformed outputs ``(N, classes)`` as float64, in batches."""
        ...

    def set_paths(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        path_input: np.ndarray,
        path_target: np.ndarray,
    ) -> None:
        """Moves the paths to the device: path ``p`` runs from ``baselines[p]`` to
        ``inputs[path_input[p]]`` and explains class ``path_target[p]``; zeroes the sums."""
        ...

    def accumulate(self, batch: RowBatch) -> None:
        """Evaluates one batch of rows and adds ``weight * grad`` into each row's path sum.

        Raises:
            OutOfMemory: nothing was added; retry with fewer rows.
            DisconnectedModelError: the output does not depend on the input.
        """
        ...

    def take(self) -> Taken:
        """Returns the sums and scores gathered since the last take and zeroes the sums."""
        ...
