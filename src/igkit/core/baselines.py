"""Baselines: the "absence of signal" each path starts from, built in the input's own space.

Named baselines are registered (``@register_baseline``); every builder receives the batch of
inputs, where its channels are, the input's value range and a seeded generator, and returns an
array of the batch's shape. Random baselines draw from ``numpy.random.default_rng(seed)``, so the
same seed gives the same attributions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BaselineContext",
    "available_baselines",
    "gaussian_blur",
    "make_baselines",
    "register_baseline",
]


@dataclass(frozen=True)
class BaselineContext:
    """What a baseline builder may use.

    Attributes:
        inputs: The batch, float, shape ``(N, ...)``.
        channel_axis: Axis of ``inputs`` holding channels, or None when the inputs are not images.
        input_range: ``(low, high)`` of valid input values ("white" is ``high``).
        rng: The seeded generator for random baselines.
    """

    inputs: np.ndarray
    channel_axis: int | None
    input_range: tuple[float, float]
    rng: np.random.Generator

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        axes = tuple(range(1, self.inputs.ndim))
        if self.channel_axis is None:
            return axes
        return tuple(a for a in axes if a != self.channel_axis % self.inputs.ndim)


BaselineBuilder = Callable[[BaselineContext], np.ndarray]
_BASELINES: dict[str, BaselineBuilder] = {}


def register_baseline(name: str) -> Callable[[BaselineBuilder], BaselineBuilder]:
    """Registers a builder under ``name`` for ``baseline=name``."""

    def decorate(builder: BaselineBuilder) -> BaselineBuilder:
        if name in _BASELINES:
            raise ValueError(f"a baseline named {name!r} is already registered")
        _BASELINES[name] = builder
        return builder

    return decorate


def available_baselines() -> list[str]:
    return sorted(_BASELINES)


@register_baseline("black")
def _black(ctx: BaselineContext) -> np.ndarray:
    return np.zeros_like(ctx.inputs)


@register_baseline("white")
def _white(ctx: BaselineContext) -> np.ndarray:
    return np.full_like(ctx.inputs, ctx.input_range[1])


@register_baseline("uniform")
def _uniform(ctx: BaselineContext) -> np.ndarray:
    low, high = ctx.input_range
    return ctx.rng.uniform(low, high, size=ctx.inputs.shape).astype(ctx.inputs.dtype)


@register_baseline("gaussian")
def _gaussian(ctx: BaselineContext) -> np.ndarray:
    # The input with Gaussian noise of a quarter of the value range, clipped back into the range
    # (the "Gaussian" baseline of Sturmfels et al., Distill 2020).
    low, high = ctx.input_range
    noise = ctx.rng.normal(0.0, 0.25 * (high - low), size=ctx.inputs.shape)
    return np.clip(ctx.inputs + noise, low, high).astype(ctx.inputs.dtype)


@register_baseline("blur")
def _blur(ctx: BaselineContext) -> np.ndarray:
    axes = ctx.spatial_axes
    if ctx.channel_axis is None or not axes:
        raise ValueError(
            "baseline 'blur' needs image inputs with a channel axis; pass channel_axis= "
            "or choose another baseline"
        )
    sigma = 0.05 * max(ctx.inputs.shape[a] for a in axes)
    return gaussian_blur(ctx.inputs, sigma, axes).astype(ctx.inputs.dtype)


def gaussian_blur(x: np.ndarray, sigma: float, axes: Sequence[int]) -> np.ndarray:
    """Separable Gaussian blur of ``x`` along ``axes`` with reflected borders (NumPy only)."""
    radius = max(1, int(round(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.asarray(x, dtype=np.float64)
    for axis in axes:
        n = out.shape[axis]
        pad = min(radius, n - 1)
        widths = [(0, 0)] * out.ndim
        widths[axis] = (pad, pad)
        padded = np.pad(out, widths, mode="reflect") if pad > 0 else out
        k = kernel[radius - pad : radius + pad + 1]
        k = k / k.sum()
        moved = np.moveaxis(padded, axis, -1)
        windows = np.lib.stride_tricks.sliding_window_view(moved, k.shape[0], axis=-1)
        out = np.moveaxis(windows @ k, -1, axis)
    return out


def make_baselines(
    spec: object,
    ctx: BaselineContext,
) -> list[tuple[str, np.ndarray]]:
    """Turns a ``baseline=`` argument into named arrays of the batch's shape.

    Args:
        spec: A registered name, a number (a constant image), an array of one example's shape or
            of the batch's shape, or a list of these (their attributions are averaged).
        ctx: The batch and what the builders need.

    Returns:
        ``[(label, array), ...]``, one entry per baseline, each array shaped like ``ctx.inputs``.
    """
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not specs:
        raise ValueError("baseline list is empty; pass at least one baseline, e.g. 'black'")
    out = []
    for item in specs:
        label, array = _one_baseline(item, ctx)
        if not np.all(np.isfinite(array)):
            raise ValueError(
                f"baseline {label} contains NaN or Inf; replace them with finite values"
            )
        out.append((label, array))
    return out


def _one_baseline(item: object, ctx: BaselineContext) -> tuple[str, np.ndarray]:
    x = ctx.inputs
    if isinstance(item, str):
        builder = _BASELINES.get(item)
        if builder is None:
            raise ValueError(
                f"unknown baseline {item!r}; choose one of {', '.join(available_baselines())}, "
                "a number, or an array shaped like the input"
            )
        return item, builder(ctx)
    if isinstance(item, (int, float, np.number)) and not isinstance(item, bool):
        return f"constant {float(item):g}", np.full_like(x, float(item))
    array = _to_numpy(item)
    if array is None:
        raise ValueError(
            f"baseline of type {type(item).__name__} is not understood; pass a name "
            f"({', '.join(available_baselines())}), a number or an array"
        )
    if array.shape == x.shape[1:]:
        array = np.broadcast_to(array, x.shape)
    elif array.shape != x.shape:
        raise ValueError(
            f"baseline shape {array.shape} does not match input shape {x.shape[1:]} "
            f"(or the batch shape {x.shape}); pass an array of one of those shapes"
        )
    return "custom", np.array(array, dtype=x.dtype)


def _to_numpy(item: object) -> np.ndarray | None:
    if isinstance(item, np.ndarray):
        return item
    for attr in ("numpy", "__array__"):
        if hasattr(item, attr):
            try:
                detach = getattr(item, "detach", None)
                if callable(detach):
                    item = detach().cpu()
                return np.asarray(item)
            except Exception:  # noqa: BLE001 - anything that cannot become an array is rejected
                return None
    return None
