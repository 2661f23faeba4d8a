"""Named types of igkit's public options, for signatures that document themselves.

The ``Literal`` aliases list the names igkit ships; the registries they mirror
(``igkit.available_methods()``, ``igkit.core.baselines.available_baselines()``) stay the source
of truth at run time, and a test keeps the two equal. Only the standard library and NumPy are
imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np

__all__ = [
    "BaselineName",
    "BaselineSpec",
    "Method",
    "Output",
    "OutputSpec",
    "Precision",
    "Steps",
    "TargetSpec",
    "Tensor",
]

#: A quadrature rule (``method=``): where along the path gradients are evaluated; "auto" picks
#: secant, Fejer or Gauss-Legendre per call.
Method: TypeAlias = Literal[
    "adaptive",
    "auto",
    "fejer",
    "gauss_legendre",
    "riemann_left",
    "riemann_middle",
    "riemann_right",
    "riemann_trapezoid",
    "secant",
]

#: A named output transform: the model's own outputs, or their softmax or sigmoid.
Output: TypeAlias = Literal["raw", "softmax", "sigmoid"]

#: ``output=``: a named transform, or a callable from the model's output (a framework tensor)
#: to per-class scores ``(N, classes)``.
OutputSpec: TypeAlias = Output | Callable[[Any], Any]

#: Arithmetic of the model's passes: exact "float32" (the compute dtype), or faster "tf32",
#: "bf16", "fp16" where the backend declares them.
Precision: TypeAlias = Literal["float32", "tf32", "bf16", "fp16"]

#: A named baseline.
BaselineName: TypeAlias = Literal["black", "white", "uniform", "gaussian", "blur"]

#: A torch, TensorFlow or JAX tensor (typed loosely: no framework is imported here).
Tensor: TypeAlias = Any

#: One baseline: a name, a constant, or an array of one example's or the batch's shape.
_OneBaseline: TypeAlias = BaselineName | float | np.ndarray | Tensor

#: ``baseline=``: one baseline, or a sequence of them whose attributions are averaged.
BaselineSpec: TypeAlias = _OneBaseline | Sequence[_OneBaseline]

#: Targets given directly: one int for every input, one int per input, a ``(N, T)`` int array,
#: per-input lists of classes (ragged), or "all" (every class of every input).
_DirectTarget: TypeAlias = (
    int | np.integer | Sequence[int] | Sequence[Sequence[int]] | np.ndarray | Literal["all"]
)

#: ``target=``: None (each input's top-1 class), a direct target, or a callable from the
#: explained outputs ``(N, classes)`` to a direct target (e.g. ``igkit.labels_above(0.4)``).
TargetSpec: TypeAlias = None | _DirectTarget | Callable[[np.ndarray], _DirectTarget]

#: ``steps=``: gradient evaluations per path, or "auto" to refine until the tolerance is met.
Steps: TypeAlias = int | Literal["auto"]
