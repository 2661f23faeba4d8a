"""Which classes to explain: ``target=`` in all its forms, turned into (input, class) pairs.

One input may be explained for several classes, as a multi-label classifier needs (the HPA
notebook explains every predicted location of a cell). Each (input, class) pair becomes its own
path per baseline, so the engine packs the rows of all pairs into shared batches and nothing else
in the loop changes.

Accepted forms of ``target=``:

* ``None``: the top-1 class of each input; an ``int``: that class for every input; one ``int``
  per input (1-D): one class each. These give *single-target* results, shaped as before.
* a 2-D int array ``(N, T)``: ``T`` classes for every input (rectangular);
* a list of per-input lists of ints, e.g. ``[[0, 3], [5], []]`` (ragged: inputs may have
  different numbers of classes, even none);
* ``"all"``: every class of the model, for every input;
* a callable from the explained outputs ``(N, classes)`` (after ``output=``) to any form above,
  e.g. :func:`labels_above` for "every predicted label".

The last four give *multi-target* results with a target axis (see :class:`igkit.Result`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TargetPlan", "labels_above", "resolve_target_plan", "resolve_targets"]


@dataclass(frozen=True)
class TargetPlan:
    """The (input, class) pairs to explain, in input-major order.

    Attributes:
        pair_input: ``(R,)`` the input of each pair.
        pair_target: ``(R,)`` the class of each pair.
        mask: ``(N, T)`` True where input ``i`` has a ``k``-th target, for multi-target plans;
            None for single-target plans (one pair per input, in input order). Pairs are the
            True entries of ``mask`` in row-major order.
    """

    pair_input: np.ndarray
    pair_target: np.ndarray
    mask: np.ndarray | None

    @property
    def multi(self) -> bool:
        """Whether results get a target axis."""
        return self.mask is not None

    def __len__(self) -> int:
        return int(self.pair_input.shape[0])

    def scatter(self, values: np.ndarray, fill: object) -> np.ndarray:
        """Per-pair ``values`` ``(R, ...)`` laid out per input: ``(N, ...)`` for single-target
        plans, ``(N, T, ...)`` with ``fill`` in the empty slots for multi-target plans."""
        if self.mask is None:
            return values
        out = np.full(self.mask.shape + values.shape[1:], fill, dtype=values.dtype)
        out[self.mask] = values
        return out


def resolve_targets(target: object, outputs: np.ndarray) -> np.ndarray:
    """One class index per input from ``target=`` (None = the top-1 class), range-checked.

    The single-target forms only; :func:`resolve_target_plan` accepts every form.
    """
    n, classes = outputs.shape
    if target is None:
        return np.argmax(outputs, axis=1).astype(np.int64)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t = np.full(n, int(target), dtype=np.int64)
    else:
        try:
            t = np.asarray(target)
        except Exception:  # noqa: BLE001
            t = np.asarray([None])
        if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target must be None, an int, or one int per input; got {target!r}")
        if t.shape[0] != n:
            raise ValueError(
                f"target has {t.shape[0]} entries but there are {n} inputs; "
                "pass one int per input, or a single int for all"
            )
        t = t.astype(np.int64)
    _check_range(t, classes)
    return t


def resolve_target_plan(target: object, outputs: np.ndarray) -> TargetPlan:
    """The pairs to explain for any form of ``target=`` (see the module docstring).

    Args:
        target: The user's ``target=``.
        outputs: The explained outputs ``(N, classes)`` at the inputs (after ``output=``).

    Raises:
        ValueError: For a malformed target, a class out of range, a class listed twice for one
            input, a count of rows that is not the number of inputs, or no pair at all.
    """
    n, classes = outputs.shape
    if callable(target) and not isinstance(target, (np.ndarray, str)):
        chosen = target(np.array(outputs, dtype=np.float64, copy=True))
        if callable(chosen) and not isinstance(chosen, np.ndarray):
            raise ValueError("a target callable must return targets, not another callable")
        return resolve_target_plan(chosen, outputs)
    if isinstance(target, str):
        if target != "all":
            raise ValueError(
                "target must be None, an int, or one int per input; or, for several classes "
                "per input, 'all', a 2-D int array, per-input lists or a callable; "
                f"got {target!r}"
            )
        return _plan_from_rows([list(range(classes))] * n, n, classes)
    rows = _as_rows(target)
    if rows is None:
        t = resolve_targets(target, outputs)
        return TargetPlan(np.arange(n, dtype=np.int64), t, None)
    return _plan_from_rows(rows, n, classes)


def labels_above(threshold: float) -> Callable[[np.ndarray], list[list[int]]]:
    """``target=labels_above(0.4)``: every class whose explained output exceeds ``threshold``.

    The multi-label "predicted labels" of the HPA notebook: with ``output="sigmoid"`` the
    threshold applies to the sigmoid probabilities. An input with no class above it gets no
    target (its slots are empty); when no input has one, the call raises.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    value = float(threshold)

    def choose(outputs: np.ndarray) -> list[list[int]]:
        return [np.flatnonzero(row > value).tolist() for row in outputs]

    choose.__name__ = f"labels_above_{value:g}"
    return choose


def _as_rows(target: object) -> list[Sequence[object]] | None:
    """Per-input rows of a multi-target ``target``, or None for the single-target forms."""
    if isinstance(target, np.ndarray):
        if target.ndim == 2:
            return list(target)
        return None
    if not isinstance(target, (list, tuple)):
        return None
    nested = [_is_sequence(item) for item in target]
    if not any(nested):
        return None
    if not all(nested):
        raise ValueError(
            "target mixes ints and lists; pass one int per input, or one list of ints per input"
        )
    return [
        list(np.asarray(item).ravel()) if isinstance(item, np.ndarray) else list(item)
        for item in target
    ]


def _is_sequence(item: object) -> bool:
    if isinstance(item, np.ndarray):
        return item.ndim >= 1
    return isinstance(item, (list, tuple, range))


def _plan_from_rows(rows: list[Sequence[object]], n: int, classes: int) -> TargetPlan:
    if len(rows) != n:
        raise ValueError(
            f"target has {len(rows)} rows but there are {n} inputs; pass one list of classes "
            "per input"
        )
    width = max((len(r) for r in rows), default=0)
    mask = np.zeros((n, width), dtype=bool)
    pair_input: list[int] = []
    pair_target: list[int] = []
    for i, row in enumerate(rows):
        seen: set[int] = set()
        for k, item in enumerate(row):
            if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
                raise ValueError(f"target for input {i} holds {item!r}; classes must be ints")
            c = int(item)
            if c in seen:
                raise ValueError(f"target for input {i} lists class {c} twice")
            seen.add(c)
            mask[i, k] = True
            pair_input.append(i)
            pair_target.append(c)
    if not pair_input:
        raise ValueError(
            "no input has a target (for labels_above: no class scores above the threshold); "
            "lower the threshold or name the classes"
        )
    t = np.asarray(pair_target, dtype=np.int64)
    _check_range(t, classes)
    return TargetPlan(np.asarray(pair_input, dtype=np.int64), t, mask)


def _check_range(t: np.ndarray, classes: int) -> None:
    bad = (t < 0) | (t >= classes)
    if np.any(bad):
        raise ValueError(
            f"target {int(t[bad][0])} is out of range: the model has {classes} outputs "
            f"(valid targets 0..{classes - 1})"
        )
