"""Feature groups and occlusion windows for the perturbation methods.

The perturbation methods (``igkit.methods.perturbation``) change a set of input features at a
time and watch the score move. This module says which sets, from the user's options, and
refuses what cannot work before the method's model calls:

* ``feature_groups`` reads ``mask=`` (integer labels: one example's shape, its spatial shape
  shared by the channels, or one mask per input) into ``Groups``: per input, the flat indices
  of each group's features;
* ``occlusion_windows`` reads ``window=`` / ``stride=`` into the boxes a sliding window visits
  (Captum's ``Occlusion`` positions, the last one along an axis cut at the border).

Both work on one example's shape (batch axis removed) and the channel axis within it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

__all__ = ["Groups", "check_mask", "check_window", "feature_groups", "occlusion_windows"]


# -- option checks (no shapes yet) ------------------------------------------------------------


def check_mask(value: Any) -> np.ndarray | None:
    """``mask=``: None, or an array of integer group labels."""
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    mask = np.asarray(value)
    if mask.dtype == bool:
        mask = mask.astype(np.int64)
    if mask.dtype.kind not in "iu" or mask.ndim == 0:
        raise TypeError(
            f"pass an array of integer group labels (one per feature), got "
            f"{'a scalar' if mask.ndim == 0 else f'dtype {mask.dtype}'}"
        )
    return mask.astype(np.int64, copy=False)


def check_window(value: Any) -> int | tuple[int, ...]:
    """``window=`` / ``stride=``: a positive integer or a tuple of them."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not items or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items
    ):
        raise ValueError("pass a positive integer, or a tuple of them (one per axis)")
    return tuple(int(v) for v in items) if isinstance(value, (tuple, list)) else int(value)


# -- feature groups ---------------------------------------------------------------------------


@dataclass
class Groups:
    """Feature groups of each input.

    Attributes:
        ids: The group labels, sorted ``(G,)``; group ``g`` is label ``ids[g]``.
        inverse: Per input, each feature's group index ``(D,)`` (flat over one example).
        order: Per input, the features sorted by group (``argsort(inverse)``).
        starts: Per input, ``(G + 1,)``: group ``g``'s features are
            ``order[starts[g]:starts[g + 1]]``.
        shared: Whether every input has the same groups (one mask for all).
    """

    ids: np.ndarray
    inverse: list[np.ndarray]
    order: list[np.ndarray]
    starts: list[np.ndarray]
    shared: bool

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def members(self, i: int, g: int) -> np.ndarray:
        """Flat indices of group ``g``'s features in input ``i`` (empty if it has none)."""
        s = self.starts[i]
        return self.order[i][s[g]:s[g + 1]]

    def present(self, i: int) -> np.ndarray:
        """The groups input ``i`` has features in."""
        return np.flatnonzero(np.diff(self.starts[i]))

    def spread(self, table: np.ndarray, pair_input: np.ndarray) -> np.ndarray:
        """Per-group values ``table`` ``(R, G)`` given to every feature of the group: ``(R, D)``."""
        out = np.empty((table.shape[0], self.inverse[0].shape[0]), dtype=table.dtype)
        for r, i in enumerate(pair_input):
            out[r] = table[r, self.inverse[int(i)]]
        return out


def _spatial_shape(shape: tuple[int, ...], channel: int | None) -> tuple[int, ...] | None:
    if channel is None:
        return None
    return tuple(d for a, d in enumerate(shape) if a != channel)


def _fit_mask(mask: np.ndarray, n: int, shape: tuple[int, ...], channel: int | None,
              method: str) -> np.ndarray:
    """``mask`` as ``(1 or n, *shape)`` labels, or a ValueError saying what fits."""
    spatial = _spatial_shape(shape, channel)
    if spatial is not None and mask.shape == shape == (n, *spatial):
        raise ValueError(
            f"method={method!r}: mask of shape {mask.shape} could be one example's {shape} or "
            f"one {spatial} per input of the {n}: pass {(1, *shape)} for the first or "
            f"{(n, *(1 if a == channel else d for a, d in enumerate(shape)))} for the second"
        )
    if mask.shape == shape:
        return mask[None]
    if mask.shape == (n, *shape):
        return mask
    if spatial is not None and channel is not None:
        if mask.shape == spatial:
            return np.broadcast_to(np.expand_dims(mask, channel), shape)[None]
        if mask.shape == (n, *spatial):
            return np.broadcast_to(np.expand_dims(mask, channel + 1), (n, *shape))
    for target in (shape, (n, *shape)):
        if mask.ndim == len(target):
            try:
                fitted = np.broadcast_to(mask, target)
            except ValueError:
                continue
            if target == shape:
                return fitted[None]
            return fitted[:1] if mask.shape[0] == 1 else fitted
    forms = [f"{shape} (one example)"]
    if spatial is not None:
        forms.append(f"{spatial} (shared by the channels)")
    forms.append(f"{(n, *shape)} (one per input)")
    raise ValueError(
        f"method={method!r}: mask of shape {mask.shape} does not fit inputs of shape "
        f"{(n, *shape)}; pass integer labels of shape {', '.join(forms)}, or one that "
        "broadcasts to one example's shape"
    )


def feature_groups(mask: np.ndarray | None, n: int, shape: tuple[int, ...],
                   channel: int | None, method: str) -> Groups:
    """The groups of ``mask=`` for ``n`` inputs of one example's ``shape`` (channels on
    ``channel``); None makes every feature its own group."""
    size = math.prod(shape)
    if mask is None:
        inverse = np.arange(size, dtype=np.int64)
        bounds = np.arange(size + 1, dtype=np.int64)
        return Groups(ids=inverse.copy(), inverse=[inverse] * n, order=[inverse] * n,
                      starts=[bounds] * n, shared=True)
    fitted = _fit_mask(mask, n, shape, channel, method)
    ids, inv = np.unique(fitted.reshape(fitted.shape[0], -1), return_inverse=True)
    inv = inv.reshape(fitted.shape[0], size)
    g = ids.shape[0]
    inverses: list[np.ndarray] = []
    orders: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for row in inv:
        order = np.argsort(row, kind="stable")
        inverses.append(row)
        orders.append(order)
        starts.append(np.searchsorted(row[order], np.arange(g + 1)))
    shared = fitted.shape[0] == 1
    if shared:
        inverses, orders, starts = inverses * n, orders * n, starts * n
    return Groups(ids=ids, inverse=inverses, order=orders, starts=starts, shared=shared)


# -- occlusion windows ------------------------------------------------------------------------


def _per_axis(value: int | tuple[int, ...], name: str, shape: tuple[int, ...],
              channel: int | None, full_channel: int) -> tuple[int, ...]:
    """``value`` as one entry per axis of ``shape``: an int or a tuple over the non-channel
    axes leaves the channel axis at ``full_channel``."""
    spatial_axes = [a for a in range(len(shape)) if a != channel]
    if isinstance(value, int):
        value = (value,) * len(spatial_axes)
    if len(value) == len(shape):
        return tuple(value)
    if len(value) == len(spatial_axes):
        out = list(value)
        if channel is not None:
            out.insert(channel, full_channel)
        return tuple(out)
    forms = [f"{len(shape)} (one per axis of one example {shape})"]
    if channel is not None:
        forms.insert(0, f"{len(spatial_axes)} (the spatial axes; the channel axis is spanned)")
    raise ValueError(f"{name}={value!r}: pass an integer or a tuple of length "
                     f"{' or '.join(forms)}")


def occlusion_windows(
    window: int | tuple[int, ...], stride: int | tuple[int, ...] | None,
    shape: tuple[int, ...], channel: int | None,
) -> list[tuple[slice, ...]]:
    """The boxes (one slice per axis of ``shape``) a window visits.

    An integer ``window`` or one per spatial axis spans every channel (Captum's
    ``sliding_window_shapes`` (C, h, w)); a tuple with one entry per axis of one example sets
    the channel extent too ((1, 1, 1) occludes one value at a time). An integer ``stride`` or
    one per spatial axis moves one channel at a time along the channel axis; None is half the
    window along each axis (at least 1). Along each axis
    windows start at 0, stride, 2 * stride, ... until one reaches the end; the last is cut at
    the border (Captum's positions).

    Raises:
        ValueError: A window larger than the input, or a stride larger than the window (the
            features between windows would never be occluded).
    """
    full = shape[channel] if channel is not None else 1
    win = _per_axis(window, "window", shape, channel, full)
    step = (tuple(max(1, w // 2) for w in win) if stride is None
            else _per_axis(stride, "stride", shape, channel, 1))
    for a, (w, s, d) in enumerate(zip(win, step, shape, strict=True)):
        if w > d:
            raise ValueError(
                f"window={window!r} is {w} along axis {a} of one example {shape}, larger than "
                f"the input's {d}: pass a window no larger than the input"
            )
        if s > w and w < d:
            raise ValueError(
                f"stride={stride!r} is {s} along axis {a} of one example {shape}, larger than "
                f"the window's {w}: features between windows would never be occluded; pass a "
                "stride no larger than the window"
            )
    starts = [
        [k * s for k in range(math.ceil((d - w) / s) + 1)]
        for w, s, d in zip(win, step, shape, strict=True)
    ]
    return [
        tuple(slice(b, min(b + w, d)) for b, w, d in zip(corner, win, shape, strict=True))
        for corner in product(*starts)
    ]
