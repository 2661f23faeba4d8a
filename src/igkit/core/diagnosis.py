"""The likely mistake behind a model failing on the inputs it was given, and its fix.

A framework's error on the first forward pass speaks of its own internals, and of a batch igkit
built (the inputs and their baselines together), not of what the caller did. Two mistakes are
common enough to name from the inputs alone: an image in the other channel layout, and integer
token ids, which a straight-line path from a baseline cannot interpolate. NumPy only: the
framework is known by its title and its layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

__all__ = ["TOKEN_IDS", "failure_describer", "layout_problem", "looks_like_token_ids"]

#: What integer inputs that a model cannot take as floats are, and the fix.
TOKEN_IDS = (
    "integer inputs (token ids?) cannot be interpolated: attribute at the embedding layer "
    "(pass the embeddings as inputs, to a model that starts after the embedding). Integrated "
    "Gradients moves the inputs along a straight line from the baseline, through values "
    "between the integers"
)


def looks_like_token_ids(dtype: np.dtype | None) -> bool:
    """Integer inputs other than 8- and 16-bit images (uint8, uint16)."""
    return dtype is not None and dtype.kind in "iu" and dtype not in (np.uint8, np.uint16)


def layout_problem(
    shape: tuple[int, ...], batched: bool, channels_first: bool, title: str
) -> str | None:
    """``inputs of shape (224, 224, 3) look channels-last; this PyTorch model takes
    channels-first: transpose to (3, 224, 224)`` (with how), or None when the shape does not
    look like the other layout: images of 1, 3 or 4 channels, more than 4 pixels a side."""
    lead = shape[:1] if batched else ()
    ex = shape[1:] if batched else shape
    if len(ex) != 3:
        return None
    if channels_first and ex[2] in (1, 3, 4) and ex[0] > 4 and ex[1] > 4:
        want, axes = (ex[2], ex[0], ex[1]), ((0, 3, 1, 2) if batched else (2, 0, 1))
        have, need = "channels-last", "channels-first"
    elif not channels_first and ex[0] in (1, 3, 4) and ex[1] > 4 and ex[2] > 4:
        want, axes = (ex[1], ex[2], ex[0]), ((0, 2, 3, 1) if batched else (1, 2, 0))
        have, need = "channels-first", "channels-last"
    else:
        return None
    tensor = f" or x.permute{axes} for a tensor" if channels_first else ""
    return (
        f"inputs of shape {tuple(shape)} look {have}; this {title} model takes {need}: "
        f"transpose to {(*lead, *want)} (np.transpose(x, {axes}){tensor})"
    )


def failure_describer(
    *,
    shape: tuple[int, ...],
    batched: bool,
    dtype: np.dtype | None,
    channels_first: bool,
    title: str,
    batch: str,
) -> Callable[[BaseException], str | None]:
    """``describe_failure`` for ``igkit.core.engine.first_forward``: from the inputs as the
    caller passed them (``shape``, ``dtype``, whether a batch), the framework's layout and
    title, and what the failing call held (``batch``), the message naming the mistake and the
    fix, the framework's own error quoted after it; None when neither mistake fits, or when
    igkit itself raised (its messages already name the fix)."""

    def describe(exc: BaseException) -> str | None:
        if _raised_by_igkit(exc):
            return None
        failed = f"The model failed on {batch} with {type(exc).__name__}: {_gist(exc)}"
        problem = layout_problem(shape, batched, channels_first, title)
        if problem:
            return f"{problem}. {failed}"
        if looks_like_token_ids(dtype):
            return f"{TOKEN_IDS}. {failed}"
        return None

    return describe


def _gist(exc: BaseException) -> str:
    """The line of a framework's error that says what went wrong: the first, unless it only
    names the call (Keras: "Exception encountered when calling ..."), without terminal
    colours, at most 300 characters."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):
        lines = lines[1:]
    return lines[0][:300] if lines else ""


def _raised_by_igkit(exc: BaseException) -> bool:
    """Whether igkit's own code raised ``exc``, rather than the model or its framework."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("igkit.")
