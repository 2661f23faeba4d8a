"""Demo photos and the preprocessing that turns a photo into EfficientNet-Lite0 input.

The photos come from scikit-image (bundled with it, so no download). The recipe, named by
:data:`igkit.models.efficientnet_lite.EFFICIENTNET_LITE0_PREPROCESSING`, is: crop the central
square, resize it with PIL's bicubic filter, scale to [0, 1]. The reference predictions in the
tests were measured on exactly this pipeline, so it must not change silently.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["DEMO_PHOTO_NAMES", "center_crop_resize", "demo_photos"]

#: scikit-image sample photos used as demo inputs, each an ImageNet class the model knows
#: (chelsea: Egyptian cat, coffee: espresso; astronaut is a hard case the model gets wrong).
DEMO_PHOTO_NAMES: tuple[str, ...] = ("chelsea", "coffee", "astronaut")


def center_crop_resize(image: np.ndarray, size: int = 224) -> np.ndarray:
    """Crop the central square of an image and resize it bicubically to ``size`` x ``size``.

    Args:
        image: An (H, W) or (H, W, C) image, either ``uint8`` in [0, 255] or floating point in
            [0, 1]. If H and W differ in parity from the square, the crop keeps the extra row or
            column at the bottom/right (offset ``(H - side) // 2``).
        size: Side of the output square.

    Returns:
        A float32 array of shape (size, size) or (size, size, C) with values in [0, 1].

    ``uint8`` images are resized with 8-bit arithmetic, exactly as
    ``PIL.Image.fromarray(rgb).resize(..., Image.BICUBIC)`` does (checked equal per channel).
    Floating-point images are resized per channel in PIL's 32-bit float mode: no 8-bit
    rounding, and no clipping between PIL's horizontal and vertical passes, so at sharp edges
    the result can differ from the ``uint8`` one by a few 1/255 steps. The final bicubic
    overshoot is clipped to [0, 1] in both cases.

    Raises:
        TypeError: If the dtype is neither ``uint8`` nor floating point.
        ValueError: If the array is not 2-D or 3-D, or ``size`` is not positive.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if image.dtype == np.uint8:
        mode, scale = "L", 1.0 / 255.0
    elif np.issubdtype(image.dtype, np.floating):
        mode, scale = "F", 1.0
        image = image.astype(np.float32, copy=False)
    else:
        raise TypeError(f"expected a uint8 or floating-point image, got dtype {image.dtype}")

    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]

    channels = square[..., None] if square.ndim == 2 else square
    # PIL resamples each band independently, so resizing band by band equals an RGB resize
    # for uint8 and lets float images use the same filter at full precision.
    resized = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(channels[..., c]), mode=mode).resize(
                    (size, size), Image.Resampling.BICUBIC
                ),
                dtype=np.float32,
            )
            for c in range(channels.shape[-1])
        ],
        axis=-1,
    )
    resized = np.clip(resized * np.float32(scale), 0.0, 1.0)
    return resized[..., 0] if square.ndim == 2 else resized


def demo_photos(size: int = 224) -> dict[str, np.ndarray]:
    """The scikit-image demo photos, preprocessed for EfficientNet-Lite0.

    Args:
        size: Output side; 224 is the model's native input size.

    Returns:
        ``{"chelsea": ..., "coffee": ..., "astronaut": ...}``, each a float32 (size, size, 3)
        RGB array in [0, 1] made by :func:`center_crop_resize`.

    Raises:
        ImportError: If scikit-image is not installed.
    """
    try:
        import skimage.data
    except ImportError as exc:
        raise ImportError(
            "demo_photos() needs scikit-image: `pip install scikit-image` (or igkit[viz])"
        ) from exc
    return {
        name: center_crop_resize(getattr(skimage.data, name)(), size) for name in DEMO_PHOTO_NAMES
    }
