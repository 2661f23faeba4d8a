"""The Keras example's gradient visualiser as pure array transforms.

Polarity, clipping at thresholds of cumulative attribution mass, a linear ramp, morphological
clean-up and outlines of the strongest connected components (:func:`polarity` to
:func:`component_outlines`), chained by :func:`gradvis_image`. Every function takes and returns
NumPy arrays; SciPy (morphology, connected components) is imported inside the two functions that
use it, so importing this module costs NumPy only. Arrays are channels-last ``(H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from igkit.viz.display import _as_hwc, overlay

__all__ = [
    "PolarityName",
    "clip_by_mass",
    "component_outlines",
    "cumulative_threshold",
    "gradvis_image",
    "linear_transform",
    "mass_thresholds",
    "morphological_cleanup",
    "polarity",
]

PolarityName = Literal["positive", "negative", "both"]


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
