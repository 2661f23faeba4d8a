"""Rotated, flipped and zoomed copies of an image: the TF tutorial's debugging use case.

The tutorial explains one photo and then the same photo rotated by 90 degrees, flipped and zoomed
in, and puts predictions and attributions side by side: a CNN is neither rotation- nor
scale-invariant, and the attributions show which parts of the picture the model leans on when it
changes its mind. This module holds the NumPy/PIL part of that: parsing a spec such as
``"rot90,flip,zoom=0.45"`` into :class:`Augmentation` records and applying them to channels-last
images. Every augmented image has the shape of the original, so it is a valid model input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

__all__ = ["AUGMENTATIONS", "Augmentation", "augment_image", "parse_augment"]

AugmentKind = Literal["rot90", "rot180", "rot270", "flip", "vflip", "zoom"]

#: The augmentations :func:`parse_augment` knows, as a user types them.
AUGMENTATIONS: tuple[str, ...] = ("rot90", "rot180", "rot270", "flip", "vflip", "zoom=F")

_DESCRIPTIONS: dict[str, str] = {
    "rot90": "rotated 90 degrees counter-clockwise",
    "rot180": "rotated 180 degrees",
    "rot270": "rotated 90 degrees clockwise",
    "flip": "flipped left-right",
    "vflip": "flipped upside down",
}


@dataclass(frozen=True)
class Augmentation:
    """One augmentation of an image.

    Attributes:
        kind: ``rot90``/``rot180``/``rot270`` (counter-clockwise rotations, as ``np.rot90`` and
            ``tf.image.rot90``), ``flip`` (left-right mirror), ``vflip`` (upside down, the
            tutorial's flip) or ``zoom`` (a centre zoom-in).
        factor: For ``zoom``, the share of the height and width kept around the centre before
            the crop is resized back (``0.45`` keeps the central 45 %, a 2.2x zoom-in, what the
            tutorial's ``random_zoom(zoom_range=(0.45, 0.45))`` does); None otherwise.
    """

    kind: AugmentKind
    factor: float | None = None

    @property
    def name(self) -> str:
        """The spec as a user writes it, e.g. ``rot90`` or ``zoom=0.45``."""
        return self.kind if self.factor is None else f"{self.kind}={self.factor:g}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of :attr:`name`, e.g. ``zoom0.45``."""
        return self.kind if self.factor is None else f"{self.kind}{self.factor:g}"

    @property
    def description(self) -> str:
        """The augmentation in words, for figure titles."""
        if self.kind == "zoom":
            return f"zoomed in {1.0 / float(self.factor or 1.0):.2g}x (central {self.factor:.0%})"
        return _DESCRIPTIONS[self.kind]


def parse_augment(text: str) -> tuple[Augmentation, ...]:
    """Parse a comma-separated augmentation spec such as ``"rot90,flip,zoom=0.45"``.

    Names are case-insensitive; spaces around them are ignored.

    Args:
        text: The spec.

    Returns:
        The augmentations, in the order given.

    Raises:
        ValueError: For an empty spec, an unknown name, a zoom factor outside ``(0, 1)`` or an
            augmentation given twice; the message names the choices.
    """
    choices = ", ".join(AUGMENTATIONS) + " (0 < F < 1)"
    parts = [p.strip().lower() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"empty augmentation in {text!r}; choose from {choices}, comma-separated")
    out: list[Augmentation] = []
    for part in parts:
        zoom = re.fullmatch(r"zoom\s*(?:=\s*(.*))?", part)
        if zoom:
            value = zoom.group(1)
            if value is None:
                raise ValueError(f"{part!r}: zoom needs a factor, e.g. zoom=0.45")
            try:
                factor = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: {value!r} is not a number") from None
            if not 0.0 < factor < 1.0:
                raise ValueError(
                    f"{part!r}: the zoom factor is the share of the image kept and must be in "
                    "(0, 1), e.g. zoom=0.45"
                )
            aug = Augmentation("zoom", factor)
        elif part in _DESCRIPTIONS:
            aug = Augmentation(part)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown augmentation {part!r}; choose from {choices}")
        if any(a.name == aug.name for a in out):
            raise ValueError(f"augmentation {aug.name!r} is given twice")
        out.append(aug)
    return tuple(out)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of each channel in 32-bit float (no 8-bit rounding)."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=True)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def augment_image(image_hwc: np.ndarray, augmentation: Augmentation) -> np.ndarray:
    """Apply one augmentation to a channels-last image, keeping its shape.

    Rotations and flips move pixels exactly. A quarter turn of a non-square image swaps height
    and width, so it is resized back (bicubic) to stay a valid model input. The zoom crops the
    central ``factor`` of the height and width (at least one pixel, offset ``(H - h) // 2``) and
    resizes it back bicubically; bicubic overshoot is clipped to the image's own value range.

    Args:
        image_hwc: ``(H, W, C)`` image (any value range).
        augmentation: What to do.

    Returns:
        A float32 ``(H, W, C)`` array.

    Raises:
        ValueError: If the image is not ``(H, W, C)``.
    """
    img = np.asarray(image_hwc)
    if img.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    height, width = img.shape[:2]
    kind = augmentation.kind
    if kind == "flip":
        return np.ascontiguousarray(img[:, ::-1])
    if kind == "vflip":
        return np.ascontiguousarray(img[::-1])
    if kind in ("rot90", "rot180", "rot270"):
        turned = np.ascontiguousarray(np.rot90(img, k=int(kind[3:]) // 90, axes=(0, 1)))
        if turned.shape[:2] != (height, width):
            turned = np.clip(_resize(turned, height, width), img.min(), img.max())
        return turned
    factor = float(augmentation.factor or 1.0)
    crop_h = max(1, round(height * factor))
    crop_w = max(1, round(width * factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = img[top : top + crop_h, left : left + crop_w]
    return np.clip(_resize(crop, height, width), img.min(), img.max()).astype(np.float32)
