"""Pure array transforms for display: layout, value ranges, masks, sign masks, RGBY, overlays.

Every function here takes NumPy arrays and returns NumPy arrays, so each step of a figure can be
checked exactly without drawing anything. Layout convention: images and attributions are
channels-last, ``(H, W, C)`` with any ``C``; :func:`to_hwc` converts from channels-first.
matplotlib (for named colormaps and colours) is imported inside :func:`overlay` only, so
importing this module costs NumPy only.

The processing follows two sources of figures (the third, the Keras example's gradient
visualiser, is :mod:`igkit.viz.gradvis`):

* the TensorFlow IG tutorial: the attribution mask is the sum of ``|attribution|`` over channels,
  drawn with a colormap and blended with the image (:func:`attribution_mask`, :func:`overlay`);
* the HPA notebook: positive attributions in red and negative in blue with a rescale power, and
  the RGBY-to-RGB display of four-channel microscopy (:func:`sign_masks`, :func:`rgby_to_rgb`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = [
    "RGBY_COLORS",
    "SignMasks",
    "attribution_mask",
    "channel_views",
    "display_rgb",
    "image_for_display",
    "infer_value_range",
    "normalize_for_display",
    "overlay",
    "rgby_to_rgb",
    "sign_masks",
    "to_hwc",
]


#: Display colours of the four HPA channels: red, green, blue, and yellow shown as red + green.
RGBY_COLORS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (1.0, 1.0, 0.0),
)


# --------------------------------------------------------------------------------------- layout


def to_hwc(array: np.ndarray, channel_axis: int = 0) -> np.ndarray:
    """Move the channel axis of one image to the end.

    Args:
        array: One image or attribution map, ``(C, H, W)`` for the default ``channel_axis=0``;
            any 3-D layout when ``channel_axis`` names its channel axis. A 2-D ``(H, W)`` array is
            taken as a single channel.
        channel_axis: The axis that holds the channels (negative values count from the end).

    Returns:
        The same values as ``(H, W, C)``; a 2-D input becomes ``(H, W, 1)``.

    Raises:
        ValueError: If ``array`` is not 2-D or 3-D, or ``channel_axis`` is not one of its axes.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(
            f"to_hwc expects one image, 2-D (H, W) or 3-D; got shape {arr.shape}. "
            "Index a batch first, e.g. attributions[0]"
        )
    if not -3 <= channel_axis < 3:
        raise ValueError(f"channel_axis={channel_axis} is not an axis of shape {arr.shape}")
    return np.moveaxis(arr, channel_axis, -1)


def _as_hwc(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as a float ``(H, W, C)`` array; 2-D input gains a channel axis."""
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (H, W, C) or (H, W); got shape {arr.shape}")
    return arr.astype(np.float64, copy=False)


# --------------------------------------------------------------------------- display ranges


def infer_value_range(array: np.ndarray) -> tuple[float, float]:
    """The value range an image is most likely stored in, for display.

    Integer images use their dtype's range (``uint8`` is ``[0, 255]``); boolean ones ``[0, 1]``.
    Float images use the first of ``[0, 1]``, ``[0, 255]`` and ``[-1, 1]`` that contains all their
    values, else their own min and max. This keeps the brightness of an image the same across
    panels: a dark image in ``[0, 1]`` stays dark instead of being stretched.

    Args:
        array: Any image-like array.

    Returns:
        ``(low, high)`` with ``low < high``.
    """
    arr = np.asarray(array)
    if arr.dtype.kind == "b":
        return (0.0, 1.0)
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        if arr.dtype.kind == "u":
            return (0.0, float(info.max))
        return (float(info.min), float(info.max))
    finite = arr[np.isfinite(arr)] if arr.size else arr
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    for low, high in ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)):
        if lo >= low and hi <= high:
            return (low, high)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def normalize_for_display(
    array: np.ndarray,
    value_range: tuple[float, float] | None = None,
    *,
    clip_percentile: float | None = None,
) -> np.ndarray:
    """Map values linearly onto ``[0, 1]`` so ``imshow`` shows them as intended.

    Without ``value_range`` this is min-max scaling, what ``imshow`` does to a single-channel
    array with a colormap; a constant array maps to zeros. ``clip_percentile`` first caps the
    values at that percentile, so one extreme pixel (common in gradient maps) does not turn the
    rest black.

    Args:
        array: Values to show.
        value_range: ``(low, high)`` mapped to 0 and 1; values outside are clipped.
        clip_percentile: Percentile in ``(0, 100]`` of the values to cap at before min-max
            scaling; ignored when ``value_range`` is given.

    Returns:
        A float64 array of the same shape with values in ``[0, 1]``.

    Raises:
        ValueError: If ``value_range`` is empty or ``clip_percentile`` is out of range.
    """
    arr = np.asarray(array, dtype=np.float64)
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        if not hi > lo:
            raise ValueError(f"value_range must have low < high; got {value_range!r}")
        return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    if arr.size == 0:
        return arr.copy()
    if clip_percentile is not None:
        if not 0.0 < clip_percentile <= 100.0:
            raise ValueError(f"clip_percentile must be in (0, 100]; got {clip_percentile}")
        arr = np.minimum(arr, np.percentile(arr, clip_percentile))
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def image_for_display(image: np.ndarray) -> np.ndarray:
    """An image scaled to ``[0, 1]`` from the range it is stored in (:func:`infer_value_range`).

    Args:
        image: Any image array (uint8, float in ``[0, 1]``, ``[0, 255]`` or ``[-1, 1]``, ...).

    Returns:
        A float64 array of the same shape in ``[0, 1]``.
    """
    return normalize_for_display(image, infer_value_range(image))


def display_rgb(
    image_hwc: np.ndarray, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Any channels-last image as an RGB array in ``[0, 1]`` that ``imshow`` can draw.

    One channel is repeated to grey, three are RGB, four are taken as HPA RGBY and blended with
    :func:`rgby_to_rgb`, two or more than four are averaged to grey (there is no faithful colour
    for them; use :func:`channel_views` to see each).

    Args:
        image_hwc: ``(H, W, C)`` or ``(H, W)``.
        value_range: The range the values are stored in; inferred when None.

    Returns:
        Float64 ``(H, W, 3)`` in ``[0, 1]``.
    """
    arr = np.asarray(image_hwc)
    rng = value_range if value_range is not None else infer_value_range(arr)
    arr = _as_hwc(arr, "image")
    unit = normalize_for_display(arr, rng)
    c = unit.shape[-1]
    if c == 3:
        return unit
    if c == 4:
        return rgby_to_rgb(unit, value_max=1.0)
    grey = unit.mean(axis=-1) if c != 1 else unit[..., 0]
    return np.repeat(grey[..., None], 3, axis=-1)


# ------------------------------------------------------------------- masks from attributions


def attribution_mask(attr_hwc: np.ndarray) -> np.ndarray:
    """The tutorial's greyscale attribution mask: ``sum_c |a[h, w, c]|``.

    Summing magnitudes over channels shows how much each pixel matters regardless of sign or
    colour channel, which is what the tutorial's mask and overlay panels draw.

    Args:
        attr_hwc: Attributions ``(H, W, C)``; a 2-D array is taken as one channel.

    Returns:
        Float64 ``(H, W)``, non-negative.
    """
    return np.abs(_as_hwc(attr_hwc, "attributions")).sum(axis=-1)


# -------------------------------------------------------------------------- sign masks (HPA)


class SignMasks(NamedTuple):
    """Positive attributions drawn in red and negative ones in blue, each ``(H, W, 3)``."""

    positive: np.ndarray
    negative: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        """Both masks in one RGB image: red where the evidence is for, blue where against."""
        return np.clip(self.positive + self.negative, 0.0, 1.0)


def sign_masks(
    attr_hwc: np.ndarray, power: float = 1.0, *, shared_scale: bool = False
) -> SignMasks:
    """Red mask of positive and blue mask of negative attributions, as in the HPA notebook.

    For each sign the per-pixel mass ``sum_c max(+-a, 0)`` is divided by its maximum and raised
    to ``1 / power``: ``power > 1`` brightens weak pixels so faint structure shows, ``power = 1``
    is linear. Zero attribution stays black (the notebook's min-max would make the weakest pixel
    black even when it is not zero). Works for any channel count, e.g. three-channel attributions
    of an RGBY image whose yellow channel was dropped before the model.

    Args:
        attr_hwc: Attributions ``(H, W, C)``.
        power: Rescale power, ``>= 1`` to brighten; must be positive.
        shared_scale: Divide both signs by the larger of the two maxima, so their brightness is
            comparable; by default each sign uses its own maximum.

    Returns:
        :class:`SignMasks` with float64 ``(H, W, 3)`` arrays in ``[0, 1]``: ``positive`` has only
        its red channel set, ``negative`` only its blue channel.

    Raises:
        ValueError: If ``power`` is not positive.
    """
    if not power > 0:
        raise ValueError(f"power must be positive; got {power}")
    attr = _as_hwc(attr_hwc, "attributions")
    pos = np.maximum(attr, 0.0).sum(axis=-1)
    neg = np.maximum(-attr, 0.0).sum(axis=-1)
    shared = max(float(pos.max(initial=0.0)), float(neg.max(initial=0.0)))
    out = []
    for mass, channel in ((pos, 0), (neg, 2)):
        peak = shared if shared_scale else float(mass.max(initial=0.0))
        unit = mass / peak if peak > 0 else np.zeros_like(mass)
        rgb = np.zeros(mass.shape + (3,), dtype=np.float64)
        rgb[..., channel] = np.clip(unit, 0.0, 1.0) ** (1.0 / power)
        out.append(rgb)
    return SignMasks(out[0], out[1])


# ------------------------------------------------------------------------------ RGBY (HPA)


def _unit_scale(image: np.ndarray, value_max: float | None) -> np.ndarray:
    arr = np.asarray(image)
    if value_max is None:
        lo, hi = infer_value_range(arr)
        value_max = hi if lo >= 0 else max(abs(lo), hi)
    if not value_max > 0:
        raise ValueError(f"value_max must be positive; got {value_max}")
    return arr.astype(np.float64) / float(value_max)


def rgby_to_rgb(
    img_hwc4: np.ndarray,
    green_boost: float = 1.0,
    *,
    yellow_weights: tuple[float, float] = (1.0, 0.5),
    value_max: float | None = None,
) -> np.ndarray:
    """Blend a four-channel RGBY microscopy image into RGB for display.

    Yellow is light in red and green, so it is added to both: ``red = R + wr * Y``,
    ``green = green_boost * G + wg * Y``, ``blue = B``, with ``(wr, wg) = yellow_weights``
    (the competition host's advice is 1 and 1/2). ``green_boost > 1`` brightens the green channel,
    the protein of interest in HPA images, which is often faint. Values are first divided by
    ``value_max`` and the result is clipped to ``[0, 1]``. For display only: models should see
    the channels separately.

    Args:
        img_hwc4: ``(H, W, 4)`` channels in R, G, B, Y order.
        green_boost: Factor on the green channel.
        yellow_weights: Share of yellow added to red and to green.
        value_max: The value meaning full intensity; inferred from the dtype or range when None
            (255 for ``uint8``, 1 for floats in ``[0, 1]``).

    Returns:
        Float64 ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: If the image does not have four channels.
    """
    arr = np.asarray(img_hwc4)
    if arr.ndim != 3 or arr.shape[-1] != 4:
        raise ValueError(f"rgby_to_rgb expects (H, W, 4); got shape {arr.shape}")
    unit = _unit_scale(arr, value_max)
    r, g, b, y = (unit[..., i] for i in range(4))
    wr, wg = yellow_weights
    rgb = np.stack([r + wr * y, green_boost * g + wg * y, b], axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def channel_views(
    image_hwc: np.ndarray,
    colors: Sequence[Sequence[float]] | None = None,
    *,
    value_max: float | None = None,
) -> list[np.ndarray]:
    """One RGB picture per channel, each channel shown in its own colour.

    Args:
        image_hwc: ``(H, W, C)``.
        colors: One RGB colour in ``[0, 1]`` per channel. Default: red, green, blue, yellow for
            up to four channels (the HPA convention), white beyond.
        value_max: The value meaning full intensity; inferred when None.

    Returns:
        ``C`` float64 arrays ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: If the number of colours does not match the channels.
    """
    unit = _as_hwc(np.clip(_unit_scale(np.asarray(image_hwc), value_max), 0.0, 1.0), "image")
    c = unit.shape[-1]
    if colors is None:
        colors = [RGBY_COLORS[i] if i < 4 else (1.0, 1.0, 1.0) for i in range(c)]
    if len(colors) != c:
        raise ValueError(f"{len(colors)} colours for {c} channels")
    palette = [np.asarray(col, dtype=np.float64)[:3] for col in colors]
    return [unit[..., i, None] * col for i, col in enumerate(palette)]


# --------------------------------------------------------------------------------- overlay


def _resolve_colour(
    spec: str | Sequence[float] | Colormap,
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, np.ndarray]:
    """``(colormap, unused)`` or ``(None, rgb)`` for an overlay colour spec."""
    if isinstance(spec, str):
        import matplotlib

        if spec in matplotlib.colormaps:
            return matplotlib.colormaps[spec], np.zeros(3)
        from matplotlib.colors import to_rgb

        return None, np.asarray(to_rgb(spec), dtype=np.float64)
    if callable(spec):
        return spec, np.zeros(3)
    rgb = np.asarray(spec, dtype=np.float64).ravel()
    if rgb.size not in (3, 4) or rgb.min() < 0 or rgb.max() > 1:
        raise ValueError(f"a colour must be 3 or 4 values in [0, 1]; got {spec!r}")
    return None, rgb[:3]


def overlay(
    image_rgb: np.ndarray,
    mask: np.ndarray,
    cmap_or_color: str | Sequence[float] | Colormap = "inferno",
    alpha: float = 0.4,
    *,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Blend an attribution mask into an image.

    ``alpha`` is the weight the image keeps, as in the tutorial, which draws the image at
    ``alpha = 0.4`` over the coloured mask.

    * With a colormap (a name such as ``"inferno"`` or a ``Colormap``), the mask is min-max
      scaled (or scaled from ``value_range``, to share one scale between figures), coloured,
      and every pixel becomes ``alpha * image + (1 - alpha) * cmap(mask)``.
    * With a colour (a matplotlib colour name or an RGB triple in ``[0, 1]``), the mask, clipped to
      ``[0, 1]``, is the colour's opacity: ``image + (1 - alpha) * m * (colour - image)``. Where
      ``m = 1`` this is the same blend as above, where ``m = 0`` the image is unchanged, so binary
      outlines and ramps from :func:`linear_transform` draw as expected.

    Args:
        image_rgb: ``(H, W, 3)`` or ``(H, W)`` / ``(H, W, 1)`` grey image in ``[0, 1]``.
        mask: ``(H, W)``.
        cmap_or_color: Colormap or colour.
        alpha: Image weight in ``[0, 1]``.
        value_range: For a colormap, the mask values mapped to its two ends; min-max when None.

    Returns:
        Float64 ``(H, W, 3)`` in ``[0, 1]``.

    Raises:
        ValueError: On shape mismatch or ``alpha`` outside ``[0, 1]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    img = _as_hwc(image_rgb, "image_rgb")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.shape[-1] != 3:
        raise ValueError(f"image_rgb must have 1 or 3 channels; got shape {img.shape}")
    m = np.asarray(mask, dtype=np.float64)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image (H, W) {img.shape[:2]}")
    cmap, rgb = _resolve_colour(cmap_or_color)
    if cmap is not None:
        unit = normalize_for_display(m, value_range)
        coloured = np.asarray(cmap(unit), dtype=np.float64)[..., :3]
        out = alpha * img + (1.0 - alpha) * coloured
    else:
        weight = (1.0 - alpha) * np.clip(m, 0.0, 1.0)[..., None]
        out = img + weight * (rgb - img)
    return np.clip(out, 0.0, 1.0)
