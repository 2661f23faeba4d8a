"""The contract between the NumPy core and a framework: give me gradients of this batch.

A backend module exposes ``name`` and ``title`` (e.g. "torch", "PyTorch"), ``CAPABILITIES``
(what its sessions can do, readable before any work), ``matches(model) -> bool`` (cheap,
imports nothing new), ``probe(model, example) -> bool`` (for bare callables: does the model run
on this framework's tensors?), ``adapt_model(model) -> model`` (framework-specific forms a user
may pass, made callable, or refused with the fix), ``is_tensor``, ``to_numpy``,
``predict(model, x) -> float64 outputs`` (forward only) and ``open_session(model, ...) ->
Session``. The session holds the inputs and baselines on the device, evaluates batches of path
points, reduces their weighted gradients into one image-sized sum per path on the device, and
hands back only those sums and scalar scores.

What a session can do beyond the minimal contract is declared in its ``capabilities``, never
found by probing for methods: the engine and ``igkit.api`` read the declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Protocol, get_args

import numpy as np

from igkit.core.planner import RowBatch
from igkit.typing import Output, Precision

__all__ = [
    "OUTPUT_NAMES",
    "PLAIN",
    "PRECISIONS",
    "Capabilities",
    "DisconnectedModelError",
    "IntervalSession",
    "OutOfMemory",
    "RawOutputSession",
    "RowSession",
    "RowSizes",
    "Session",
    "SessionOptions",
    "Taken",
    "capabilities_of",
    "check_output_shape",
]

OUTPUT_NAMES: tuple[str, ...] = get_args(Output)
# "float32": exact arithmetic in the compute dtype (the default). "tf32": TF32 convolutions and
# matmuls on CUDA. "bf16" / "fp16": forward and backward under autocast, sums in float32.
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class Capabilities:
    """What a backend's sessions do beyond the minimal contract (``outputs``, ``set_paths``,
    ``accumulate``, ``take``), declared once per backend so that callers ask instead of probing.

    A backend module holds it as ``CAPABILITIES`` (readable without a session, e.g. by the
    command line before loading anything heavy) and its sessions as ``capabilities``.

    Attributes:
        precisions: The ``precision=`` values the sessions honour ("float32" always).
        row_accumulation: Sessions implement ``accumulate_rows(rows, batch_size)`` (see
            ``RowSession``): a whole level of rows at once, in batches of their own, with their
            own out-of-memory back-off. Without it the engine feeds ``accumulate`` batch by
            batch and halves a batch that runs out of memory.
        interval_accumulation: Sessions implement the secant contract (see
            ``IntervalSession``): ``accumulate_intervals``, ``piece_residual`` and
            ``unhandled_ops``. ``method="secant"`` needs it.
        closing: Sessions hold something that ``close()`` releases or restores (device arrays,
            module training flags, global TF32 switches), so whoever opens one closes it, also
            when the call fails. Sessions without it need not be closed.
        raw_outputs: Sessions implement ``outputs_and_raw`` (see ``RawOutputSession``): the
            transformed outputs and the model's own outputs from one forward pass, so the
            engine can tell a model that already returns probabilities from one returning
            logits before it explains ``output="softmax"`` of it. Without it that check is
            skipped.
    """

    precisions: tuple[str, ...] = ("float32",)
    row_accumulation: bool = False
    interval_accumulation: bool = False
    closing: bool = False
    raw_outputs: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.precisions) - set(PRECISIONS))
        if unknown or "float32" not in self.precisions:
            raise ValueError(
                f"precisions must include 'float32' and only names of {', '.join(PRECISIONS)}; "
                f"got {self.precisions!r}"
            )

    def lacks(self, needs: Iterable[str]) -> list[str]:
        """The names among ``needs`` (boolean capability fields) that are not declared."""
        flags = {f.name for f in fields(self) if f.type in (bool, "bool")}
        missing = []
        for need in needs:
            if need not in flags:
                raise ValueError(
                    f"unknown capability {need!r}; choose one of {', '.join(sorted(flags))}"
                )
            if not getattr(self, need):
                missing.append(need)
        return missing


#: The capabilities of a session that declares none: the minimal contract only.
PLAIN = Capabilities()


def capabilities_of(session: object) -> Capabilities:
    """The capabilities ``session`` declares, or ``PLAIN`` for a session that declares none (a
    minimal session written against the four-method contract, such as a test double)."""
    declared = getattr(session, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else PLAIN


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
    precision: Precision = "float32"

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


class RowSizes:
    """How many rows a batch is padded to before a compiled step (a JAX ``jit``, a TensorFlow
    graph) runs it: one record per program that sessions share, per step (``"point"``,
    ``"secant"``).

    A compiled step has a static batch size, so a short batch (a call's last, the levels of
    ``steps="auto"``, the 3, 4 and 8 new nodes of its Fejér probe, a secant pilot) is padded with
    rows that count for nothing. Padded to the full ``batch_size`` it costs a full batch (the
    probe: 96 rows for 15 evaluations); compiled at its own size it costs its own rows, but every
    size is one more compile, seconds on a CPU. Compiles pay off only over repeated calls, so:
    the first call on a program compiles one size, ``batch_size``, and pads every batch to it
    (one compile, as a one-off call wants); a later call gets a step compiled for a batch's own
    bucket (the next power of two, at most ``batch_size``) when an earlier call asked for that
    bucket too, and otherwise pads to the smallest size compiled already. Rows, not results,
    depend on it: padded rows have weight 0.
    """

    def __init__(self) -> None:
        self._call = 0
        #: (step, bucket) -> the call that first asked for it
        self._first_asked: dict[tuple[str, int], int] = {}
        self._compiled: set[tuple[str, int]] = set()

    def new_call(self) -> None:
        """A session opened on the program: buckets asked for so far are "asked before"."""
        self._call += 1

    def rows(self, step: str, n: int, cap: int) -> int:
        """The rows to run a batch of ``n`` with through ``step``, ``cap`` (the batch size) at
        most unless ``n`` is larger."""
        cap = max(n, cap)
        bucket = min(cap, 1 << max(0, n - 1).bit_length())
        first = self._first_asked.setdefault((step, bucket), self._call)
        if (step, bucket) not in self._compiled and first == self._call:
            ready = [r for s, r in self._compiled if s == step and n <= r <= cap]
            bucket = min(ready) if ready else cap
        self._compiled.add((step, bucket))
        return bucket


class Session(Protocol):
    """A model bound to a device, ready to evaluate paths.

    ``capabilities`` says which of the optional contracts below (``RowSession``,
    ``IntervalSession``) the session implements, and whether it must be closed.
    """

    capabilities: Capabilities
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

    def close(self) -> None:
        """Releases what the session holds and restores what it changed (see
        ``Capabilities.closing``)."""
        ...


class RowSession(Session, Protocol):
    """A session declaring ``Capabilities.row_accumulation``."""

    def accumulate_rows(self, rows: RowBatch, batch_size: int) -> None:
        """Evaluates all ``rows`` in batches of at most ``batch_size``, adding ``weight * grad``
        into each row's path sum, and retries a batch that runs out of memory in halves.

        Raises:
            OutOfMemory: a single row did not fit.
        """
        ...


class RawOutputSession(Session, Protocol):
    """A session declaring ``Capabilities.raw_outputs``."""

    def outputs_and_raw(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Forward only, in batches: the transformed outputs ``(N, classes)`` as ``outputs``
        returns them, and the model's outputs before a named transform ("raw", "softmax",
        "sigmoid"), also ``(N, classes)`` float64; None for a user's output callable (what it
        reads from the model need not be class scores)."""
        ...


class IntervalSession(Session, Protocol):
    """A session declaring ``Capabilities.interval_accumulation`` (``method="secant"``).

    Attributes:
        piece_residual: The summed |completeness residual| of every piece integrated so far:
            rounding only, when the session followed every nonlinearity of the model.
        unhandled_ops: Names of the operations the session could not follow, for the error
            that refuses such a model.
    """

    piece_residual: float
    unhandled_ops: set[str]

    def accumulate_intervals(self, rows: RowBatch, batch_size: int) -> np.ndarray:
        """Integrates each piece between consecutive rows of a path with one secant backward
        pass; a row's weight is the width of the piece it starts (0 on a path's last point).

        Returns:
            The rows evaluated per path index.
        """
        ...


def self_placing(title: str) -> Callable[..., None]:
    """The ``place(model, *, threads, device)`` of a framework that chooses its own threads and
    devices: ``threads`` is left to it, and a ``device`` other than None is refused."""

    def place(model: object, *, threads: int | None = None, device: str | None = None) -> None:
        del model, threads
        if device is not None:
            raise ValueError(
                f"placing a {title} model on {device!r} is not supported; {title} chooses its "
                "device itself"
            )

    return place
