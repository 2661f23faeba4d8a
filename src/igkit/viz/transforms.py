"""Pure array transforms behind igkit's figures.

Every function here takes NumPy arrays and returns NumPy arrays, so each step of a figure can be
checked exactly without drawing anything. Layout convention: images and attributions are
channels-last, ``(H, W, C)`` with any ``C``; :func:`to_hwc` converts from channels-first. SciPy
(for morphology and connected components) and matplotlib (for named colormaps and colours) are
imported inside the few functions that need them, so importing this module costs NumPy only.

The processing follows three sources of figures:

* the TensorFlow IG tutorial: the attribution mask is the sum of ``|attribution|`` over channels,
  drawn with a colormap and blended with the image (:func:`attribution_mask`, :func:`overlay`);
* the Keras example's gradient visualiser: polarity, clipping at thresholds of cumulative
  attribution mass, a linear ramp, morphological clean-up and outlines of the strongest connected
  components (:func:`polarity` to :func:`component_outlines`, chained by :func:`gradvis_image`);
* the HPA notebook: positive attributions in red and negative in blue with a rescale power, and
  the RGBY-to-RGB display of four-channel microscopy (:func:`sign_masks`, :func:`rgby_to_rgb`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = [
    "RIEMANN_RULES",
    "SignMasks",
    "attribution_mask",
    "channel_views",
    "clip_by_mass",
    "component_outlines",
    "cumulative_threshold",
    "display_rgb",
    "gradvis_image",
    "image_for_display",
    "infer_value_range",
    "linear_transform",
    "mass_thresholds",
    "morphological_cleanup",
    "normalize_for_display",
    "overlay",
    "polarity",
    "rgby_to_rgb",
    "riemann_nodes",
    "riemann_sum",
    "sign_masks",
    "to_hwc",
]

PolarityName = Literal["positive", "negative", "both"]
RiemannRule = Literal["left", "right", "midpoint", "trapezoid"]

#: The Riemann rules :func:`riemann_nodes` knows, in the order the tutorial draws them.
RIEMANN_RULES: tuple[str, ...] = ("left", "right", "midpoint", "trapezoid")

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


def polarity(attr: np.ndarray, mode: PolarityName = "positive") -> np.ndarray:
    """Keep one sign of the attributions, as magnitudes.

    ``"positive"`` keeps ``max(a, 0)`` (evidence for the class), ``"negative"`` keeps
    ``max(-a, 0)`` (evidence against it, as a magnitude so later thresholds treat both polarities
    alike) and ``"both"`` keeps ``|a|``. Unlike the Keras example nothing is capped at 1: IG
    attributions are in units of the model's output and the later mass-based clipping rescales.

    Args:
        attr: Attributions of any shape.
        mode: ``"positive"``, ``"negative"`` or ``"both"``.

    Returns:
        A non-negative float64 array of the same shape.

    Raises:
        ValueError: For an unknown ``mode``.
    """
    a = np.asarray(attr, dtype=np.float64)
    if mode == "positive":
        return np.maximum(a, 0.0)
    if mode == "negative":
        return np.maximum(-a, 0.0)
    if mode == "both":
        return np.abs(a)
    raise ValueError(f"polarity must be 'positive', 'negative' or 'both'; got {mode!r}")


def cumulative_threshold(values: np.ndarray, percentile: float) -> float:
    """The magnitude at which the largest values first hold ``percentile`` % of the total mass.

    Precisely: sort the magnitudes ``|v|`` in decreasing order, ``m_1 >= m_2 >= ... >= m_n``, and
    let ``C_k = 100 * (m_1 + ... + m_k) / (m_1 + ... + m_n)`` be the share of the total held by
    the ``k`` largest. The threshold is ``m_k`` for the smallest ``k`` with ``C_k >= percentile``:
    every value with magnitude above it together holds less than ``percentile`` % of the mass,
    and adding the values equal to it reaches ``percentile`` %. This is the Keras example's
    clipping rule: thresholds by share of attribution mass, not by pixel count, so a few strong
    pixels and many weak ones are treated by how much of the explanation they carry.

    Edge cases: ``percentile <= 0`` gives the largest magnitude, ``percentile >= 100`` the
    smallest (the whole mass), and an all-zero or empty array gives 0.

    Args:
        values: Any array; magnitudes are used.
        percentile: Share of total mass in percent, usually in ``[0, 100]``.

    Returns:
        The threshold magnitude, a Python float.
    """
    mags = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())[::-1]
    if mags.size == 0:
        return 0.0
    total = float(mags.sum())
    if total <= 0.0:
        return 0.0
    if percentile >= 100.0:
        return float(mags[-1])
    share = 100.0 * np.cumsum(mags) / total
    k = int(np.searchsorted(share, percentile, side="left"))
    return float(mags[min(k, mags.size - 1)])


def mass_thresholds(
    attr: np.ndarray, clip_above: float = 99.9, clip_below: float = 0.0
) -> tuple[float, float]:
    """The ``(low, high)`` magnitudes of the Keras example's percentile clipping.

    ``high = cumulative_threshold(attr, 100 - clip_above)``: magnitudes above it, the top
    ``100 - clip_above`` % of the mass, are saturated. ``low = cumulative_threshold(attr,
    100 - clip_below)``: magnitudes below it, the weakest ``clip_below`` % of the mass, are
    dropped. The defaults (99.9, 0) saturate the top 0.1 % of the mass and drop nothing.

    Args:
        attr: Attributions (magnitudes are used), usually after :func:`polarity`.
        clip_above: Percentile of cumulative mass in ``[0, 100]`` to saturate above.
        clip_below: Percentile of cumulative mass in ``[0, 100]`` to drop below.

    Returns:
        ``(low, high)`` with ``low <= high``.

    Raises:
        ValueError: If a percentile is outside ``[0, 100]`` or ``clip_below > clip_above``.
    """
    for name, p in (("clip_above", clip_above), ("clip_below", clip_below)):
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"{name} must be in [0, 100]; got {p}")
    if clip_below > clip_above:
        raise ValueError(
            f"clip_below ({clip_below}) must not exceed clip_above ({clip_above})"
        )
    high = cumulative_threshold(attr, 100.0 - clip_above)
    low = cumulative_threshold(attr, 100.0 - clip_below)
    return (min(low, high), high)


def clip_by_mass(
    attr: np.ndarray, clip_above: float = 99.9, clip_below: float = 0.0
) -> np.ndarray:
    """Clip attribution magnitudes at the thresholds of :func:`mass_thresholds`, keeping signs.

    Magnitudes above ``high`` become ``high`` (a handful of extreme pixels would otherwise set
    the whole colour scale) and magnitudes below ``low`` become 0 (the faint tail that carries
    ``clip_below`` % of the mass is hidden).

    Args:
        attr: Attributions of any shape.
        clip_above: Percentile of cumulative mass to saturate above, in ``[0, 100]``.
        clip_below: Percentile of cumulative mass to drop below, in ``[0, 100]``.

    Returns:
        Float64 array of the same shape with ``|out| <= high`` and ``out == 0`` where
        ``|attr| < low``.
    """
    a = np.asarray(attr, dtype=np.float64)
    low, high = mass_thresholds(a, clip_above, clip_below)
    mag = np.minimum(np.abs(a), high)
    mag[np.abs(a) < low] = 0.0
    return np.sign(a) * mag


def linear_transform(
    attr: np.ndarray,
    clip_above: float = 99.9,
    clip_below: float = 0.0,
    lower_end: float = 0.2,
) -> np.ndarray:
    """Map attribution magnitudes onto a display ramp between the mass thresholds.

    With ``(low, high) = mass_thresholds(attr, clip_above, clip_below)`` a magnitude ``m`` becomes
    ``f(m) = lower_end + (1 - lower_end) * (m - low) / (high - low)``, so ``f(low) = lower_end``
    and ``f(high) = 1``; values above ``high`` are capped at 1 and values below ``low`` (and exact
    zeros, which carry no attribution) become 0. ``lower_end > 0`` makes the weakest kept pixels
    still visible while the dropped ones stay black. The sign of ``attr`` is kept. When
    ``high == low`` every kept magnitude maps to 1.

    Args:
        attr: Attributions of any shape (usually one polarity, see :func:`polarity`).
        clip_above: Percentile of cumulative mass mapped to 1, in ``[0, 100]``.
        clip_below: Percentile of cumulative mass mapped to ``lower_end``, in ``[0, 100]``.
        lower_end: Output for the weakest kept magnitude, in ``[0, 1)``.

    Returns:
        Float64 array of the same shape in ``[-1, 1]`` (``[0, 1]`` for non-negative input).

    Raises:
        ValueError: If ``lower_end`` is outside ``[0, 1)`` or a percentile is invalid.
    """
    if not 0.0 <= lower_end < 1.0:
        raise ValueError(f"lower_end must be in [0, 1); got {lower_end}")
    a = np.asarray(attr, dtype=np.float64)
    low, high = mass_thresholds(a, clip_above, clip_below)
    mag = np.abs(a)
    if high > low:
        ramp = lower_end + (1.0 - lower_end) * (mag - low) / (high - low)
    else:
        ramp = np.ones_like(mag)
    ramp = np.clip(ramp, 0.0, 1.0)
    keep = (mag >= low) & (mag > 0.0)
    return np.where(keep, np.sign(a) * ramp, 0.0)


def morphological_cleanup(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """Grey closing then grey opening of a 2-D mask, to turn speckle into solid regions.

    Closing fills gaps narrower than ``structure`` between strong pixels; opening then removes
    isolated specks smaller than it. The result is easier to read and to outline.
    The image edge is handled by reflection (SciPy's default), so a speck touching the edge is
    treated as part of a larger region and may survive.

    Args:
        mask: ``(H, W)`` values, e.g. the output of :func:`linear_transform`.
        structure: Flat structuring element; a 3 x 3 square when None.

    Returns:
        Float64 ``(H, W)``.

    Raises:
        ValueError: If ``mask`` is not 2-D.
    """
    from scipy import ndimage

    m = np.asarray(mask, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W); got shape {m.shape}")
    footprint = np.ones((3, 3), dtype=bool) if structure is None else np.asarray(structure) != 0
    closed = ndimage.grey_closing(m, footprint=footprint)
    return ndimage.grey_opening(closed, footprint=footprint)


def component_outlines(
    mask: np.ndarray,
    percentage: float = 90.0,
    *,
    threshold: float = 1e-3,
    max_components: int = 3,
) -> np.ndarray:
    """Outlines of the strongest connected regions of a mask.

    Steps: binarise at ``mask > threshold``; fill holes; label 8-connected components; rank them
    by the mass of ``mask`` they contain; keep the fewest top-ranked components whose mass
    reaches ``percentage`` % of the total (at most ``max_components``, as in the Keras example,
    so a scattered map does not turn into a thicket of outlines); return each kept component's
    border, the pixels that a one-step erosion (4-neighbourhood) removes. Pixels on the image
    edge count as border.

    Args:
        mask: ``(H, W)`` non-negative values, e.g. after :func:`morphological_cleanup`.
        percentage: Share of the mask's mass the kept components must reach, in ``(0, 100]``.
        threshold: Values above this are foreground.
        max_components: Upper bound on the number of components outlined.

    Returns:
        Boolean ``(H, W)``, True on the outline pixels; all False for an empty mask.

    Raises:
        ValueError: If ``mask`` is not 2-D or an argument is out of range.
    """
    from scipy import ndimage

    m = np.asarray(mask, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W); got shape {m.shape}")
    if not 0.0 < percentage <= 100.0:
        raise ValueError(f"percentage must be in (0, 100]; got {percentage}")
    if max_components < 1:
        raise ValueError(f"max_components must be at least 1; got {max_components}")
    filled = ndimage.binary_fill_holes(m > threshold)
    labels, n = ndimage.label(filled, structure=np.ones((3, 3), dtype=bool))
    out = np.zeros(m.shape, dtype=bool)
    if n == 0:
        return out
    weights = np.where(filled, np.maximum(m, 0.0), 0.0)
    mass = np.bincount(labels.ravel(), weights=weights.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-mass, kind="stable")
    total = float(mass.sum())
    if total > 0.0:
        reached = np.cumsum(mass[order]) >= (percentage / 100.0) * total * (1.0 - 1e-12)
        count = int(np.argmax(reached)) + 1 if reached.any() else n
    else:
        count = n
    keep = np.isin(labels, order[: min(count, max_components)] + 1)
    eroded = ndimage.binary_erosion(keep, iterations=1, border_value=0)
    out[keep & ~eroded] = True
    return out


def gradvis_image(
    image_rgb: np.ndarray,
    attr_hwc: np.ndarray,
    *,
    mode: PolarityName = "positive",
    clip_above: float = 99.9,
    clip_below: float = 0.0,
    lower_end: float = 0.0,
    cleanup: bool = False,
    structure: np.ndarray | None = None,
    outlines: bool = False,
    outline_percentage: float = 90.0,
    draw_overlay: bool = True,
    positive_color: Sequence[float] = (0.0, 1.0, 0.0),
    negative_color: Sequence[float] = (1.0, 0.0, 0.0),
    alpha: float = 0.2,
) -> np.ndarray:
    """The Keras example's processed attribution image, as an RGB array.

    Per polarity: :func:`polarity`, mean over channels, :func:`linear_transform`, optionally
    :func:`morphological_cleanup` and :func:`component_outlines` (the outline then replaces the
    mask), and finally the mask painted in the polarity's colour, over the image
    (:func:`overlay`) or on black. ``mode="both"`` paints positive and negative evidence in their
    two colours, each processed on its own.

    Args:
        image_rgb: ``(H, W, 3)`` image in ``[0, 1]`` (see :func:`display_rgb`).
        attr_hwc: Attributions ``(H, W, C)``.
        mode: ``"positive"``, ``"negative"`` or ``"both"``.
        clip_above: See :func:`linear_transform`.
        clip_below: See :func:`linear_transform`.
        lower_end: See :func:`linear_transform`. 0 by default, as the Keras example draws it:
            with ``clip_below = 0`` every faintly positive pixel is kept, and a non-zero lower
            end would tint the whole image; raise it together with ``clip_below``.
        cleanup: Apply :func:`morphological_cleanup`.
        structure: Structuring element for the clean-up.
        outlines: Draw only the outlines of the strongest components.
        outline_percentage: See :func:`component_outlines`.
        draw_overlay: Paint over the image; otherwise on black.
        positive_color: RGB in ``[0, 1]`` for positive evidence (green in the Keras example).
        negative_color: RGB in ``[0, 1]`` for negative evidence (red in the Keras example).
        alpha: Weight the image keeps where the mask is 1 (see :func:`overlay`).

    Returns:
        Float64 ``(H, W, 3)`` in ``[0, 1]``.
    """
    attr = _as_hwc(attr_hwc, "attributions")
    img = _as_hwc(image_rgb, "image_rgb")
    if img.shape[:2] != attr.shape[:2]:
        raise ValueError(f"image {img.shape} and attributions {attr.shape} differ in (H, W)")
    modes: tuple[tuple[PolarityName, Sequence[float]], ...]
    if mode == "positive":
        modes = (("positive", positive_color),)
    elif mode == "negative":
        modes = (("negative", negative_color),)
    elif mode == "both":
        modes = (("positive", positive_color), ("negative", negative_color))
    else:
        raise ValueError(f"mode must be 'positive', 'negative' or 'both'; got {mode!r}")
    canvas = img if draw_overlay else np.zeros_like(img)
    for sign, color in modes:
        m = polarity(attr, sign).mean(axis=-1)
        m = linear_transform(m, clip_above, clip_below, lower_end)
        if cleanup:
            m = morphological_cleanup(m, structure)
        if outlines:
            m = component_outlines(m, outline_percentage).astype(np.float64)
        canvas = overlay(canvas, m, color, alpha)
    return canvas


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


# ------------------------------------------------------------------------- Riemann sums


def riemann_nodes(
    rule: RiemannRule, steps: int, start: float = 0.0, end: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the tutorial's four Riemann rules on ``[start, end]``.

    ``left``/``right`` sample the left/right end of each of ``steps`` equal intervals,
    ``midpoint`` their centres, and ``trapezoid`` all ``steps + 1`` edges with half weight at the
    two ends. ``sum(weights * f(nodes))`` approximates the integral.

    Args:
        rule: ``"left"``, ``"right"``, ``"midpoint"`` or ``"trapezoid"``.
        steps: Number of intervals, at least 1.
        start: Lower limit.
        end: Upper limit.

    Returns:
        ``(nodes, weights)``, float64 arrays.

    Raises:
        ValueError: For an unknown rule or ``steps < 1``.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    h = (end - start) / steps
    edges = np.linspace(start, end, int(steps) + 1)
    if rule == "left":
        return edges[:-1], np.full(int(steps), h)
    if rule == "right":
        return edges[1:], np.full(int(steps), h)
    if rule == "midpoint":
        return (edges[:-1] + edges[1:]) / 2.0, np.full(int(steps), h)
    if rule == "trapezoid":
        w = np.full(int(steps) + 1, h)
        w[[0, -1]] = h / 2.0
        return edges, w
    raise ValueError(f"rule must be one of {', '.join(RIEMANN_RULES)}; got {rule!r}")


def riemann_sum(
    fn: Callable[[np.ndarray], np.ndarray],
    steps: int,
    rule: RiemannRule = "trapezoid",
    start: float = 0.0,
    end: float = 1.0,
) -> float:
    """The Riemann approximation of ``integral_start^end fn`` by :func:`riemann_nodes`.

    Args:
        fn: Vectorised function of one variable.
        steps: Number of intervals.
        rule: ``"left"``, ``"right"``, ``"midpoint"`` or ``"trapezoid"``.
        start: Lower limit.
        end: Upper limit.

    Returns:
        The approximation, a Python float.
    """
    nodes, weights = riemann_nodes(rule, steps, start, end)
    return float(np.sum(weights * np.asarray(fn(nodes), dtype=np.float64)))
