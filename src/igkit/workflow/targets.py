"""Which classes an input's explanation is of: requested targets resolved against predictions.

One implementation for every front end: ``igkit explain`` (``--target``, ``--multilabel``), a
dataset run (``--target`` and a manifest's ``target`` column) and :func:`igkit.explain`.
A class named by index or name is checked once, before any attribution; ``topN`` and
multi-label targets depend on each input's predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from igkit.workflow.inputs import InputError
from igkit.workflow.settings import TargetSpec

__all__ = ["Choice", "choose_targets", "fixed_target", "label_of"]


def label_of(labels: Sequence[str] | None, index: int) -> str:
    """The name of class ``index``, or ``class N`` when the model has none."""
    return labels[index] if labels is not None else f"class {index}"


def fixed_target(
    spec: TargetSpec, labels: Sequence[str] | None, classes: int, model_name: str
) -> int | None:
    """The class index a spec names; None for ``topN`` (it depends on the input).

    Raises:
        InputError: For an index out of range, an unknown or ambiguous name, or a name for a
            model without class names.
    """
    from igkit.models.spec import LabelNotFound, find_label

    if spec.kind == "top":
        if int(spec.value) > classes:
            raise InputError(f"--target {spec.text}: the model has only {classes} classes")
        return None
    if spec.kind == "index":
        index = int(spec.value)
        if not 0 <= index < classes:
            raise InputError(
                f"--target {spec.text}: out of range, {model_name} has classes 0..{classes - 1}"
            )
        return index
    if labels is None:
        raise InputError(
            f"--target {spec.text!r}: {model_name} has no class names; pass a class index"
        )
    try:
        return find_label(list(labels), str(spec.value))
    except LabelNotFound as exc:
        hint = f"; {exc.hint}" if exc.hint else ""
        raise InputError(
            f"--target {spec.text!r}: not a class of {model_name}{hint} (names match a class's "
            "full name, a comma-separated synonym or whole words, in any case; or pass a class "
            "index)"
        ) from None
    except ValueError as exc:
        raise InputError(f"--target {spec.text!r}: {exc}") from None


@dataclass(frozen=True)
class Choice:
    """The classes chosen for one input.

    Attributes:
        targets: The classes to explain, in request order, without repeats.
        predicted: Classes whose score exceeds the threshold (multi-label runs), best first.
        fallback: True when a multi-label run found nothing above the threshold and explains
            the top class instead.
    """

    targets: tuple[int, ...]
    predicted: tuple[int, ...] = ()
    fallback: bool = False


def choose_targets(
    scores: np.ndarray,
    specs: Sequence[TargetSpec],
    fixed: Sequence[int | None],
    *,
    multilabel: bool = False,
    threshold: float = 0.5,
    given: int | None = None,
) -> Choice:
    """The classes to explain for one input with transformed outputs ``scores``.

    Args:
        scores: The input's scores, ``(classes,)`` (probabilities for softmax).
        specs: The requested targets; ``fixed`` holds their resolved indices (None for topN).
        fixed: From :func:`fixed_target`, one per spec.
        multilabel: Also explain every class above ``threshold``.
        threshold: The multi-label threshold.
        given: A class fixed for this input alone (a manifest's target column): it replaces
            ``specs``.
    """
    ranked = np.argsort(-scores, kind="stable")
    predicted = tuple(int(k) for k in ranked if scores[k] > threshold) if multilabel else ()
    chosen: list[int] = []
    if given is not None:
        chosen.append(int(given))
    else:
        for spec, index in zip(specs, fixed, strict=True):
            if index is not None:
                chosen.append(int(index))
            else:
                chosen.extend(int(k) for k in ranked[: min(int(spec.value), scores.shape[0])])
    fallback = False
    if multilabel:
        chosen.extend(predicted)
        fallback = not predicted and not chosen
    if not chosen:
        chosen = [int(ranked[0])]
    return Choice(tuple(dict.fromkeys(chosen)), predicted, fallback)
