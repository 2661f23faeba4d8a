"""Checks of method option values, shared by the methods' ``Option`` declarations.

Each returns the value the method uses or raises ValueError / TypeError saying what to pass;
``Option.value`` prefixes the option's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "choice",
    "fraction",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
]


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError("pass a positive integer")
    return int(value)


def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError("pass an integer >= 0")
    return int(value)


def positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError("pass a positive number")
    if not (np.isfinite(value) and value > 0):
        raise ValueError("pass a positive, finite number")
    return float(value)


def non_negative_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError("pass a number >= 0")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError("pass a finite number >= 0")
    return float(value)


def fraction(value: Any) -> float:
    """A number in (0, 1]."""
    v = positive_float(value)
    if v > 1:
        raise ValueError("pass a number in (0, 1]")
    return v


def choice(names: Sequence[str]) -> Callable[[Any], str]:
    """A check accepting one of ``names``."""

    def check(value: Any) -> str:
        if value not in names:
            raise ValueError(f"choose one of {', '.join(map(repr, names))}")
        return str(value)

    return check
