"""Reading image files into float RGB arrays, and the resize presets that make model inputs.

Everything a user can get wrong about an image file (missing, a folder, corrupt, truncated, an
unsupported format, a decompression bomb) becomes an :class:`ImageError` whose message names the
file and the problem, so the command line can print it as one line.

Only numpy and Pillow are used.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageError",
    "list_images",
    "load_image",
    "preprocess",
]

#: File name extensions (lower case) that folders are searched for.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pbm",
    ".pgm",
    ".png",
    ".pnm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

Mode = Literal["pad", "resize", "center_crop"]


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 RGB ``(H, W, 3)`` with values in [0, 1].

    Conversions are explicit: grayscale is repeated into three channels; an alpha channel is
    composited onto white (what a viewer shows on a white page; dropping it would expose
    whatever colour the transparent pixels happen to store); palette images are expanded;
    16-bit images are scaled by 65535 rather than clipped to 8 bits; CMYK and YCbCr are
    converted to RGB. The EXIF orientation is applied, so phone photos come out upright. For
    animated files the first frame is used.

    The decompression-bomb limit is ``PIL.Image.MAX_IMAGE_PIXELS`` (read at call time): an
    image with more pixels is refused before it is decoded.

    Raises:
        ImageError: If the file is missing, a folder, unreadable, of an unsupported format,
            corrupt, truncated, or larger than the pixel limit.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; refuse both.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now, inside the handlers (open() is lazy)
                rgb = _to_rgb_array(ImageOps.exif_transpose(image), path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{path}: refused as a possible decompression bomb ({exc}); the limit is "
            f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(_unidentified_message(path)) from exc
    except PermissionError as exc:
        raise ImageError(f"{path}: cannot be read (permission denied)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow signals damaged data with OSError ("image file is truncated", "broken data
        # stream"), SyntaxError (bad headers in some plugins) or ValueError.
        problem = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImageError(f"{path}: the image data is {problem} ({exc})") from exc
    return rgb


def _unidentified_message(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return f"{path}: corrupt or not really a {suffix} image (Pillow cannot identify it)"
    return (
        f"{path}: unsupported image format {suffix or '(no extension)'!r}; "
        f"igkit reads {', '.join(IMAGE_EXTENSIONS)}"
    )


def _to_rgb_array(image: Image.Image, path: Path) -> np.ndarray:
    """A decoded Pillow image as float32 RGB in [0, 1], converting each mode explicitly."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        return (rgb * alpha + (1.0 - alpha)).astype(np.float32)
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(image).astype(np.float64)
        if data.size and (data.min() < 0 or data.max() > 65535):
            raise ImageError(f"{path}: 32-bit integer pixels outside the 16-bit range")
        gray = (data / 65535.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(gray)) or gray.min(initial=0.0) < 0 or gray.max(initial=0.0) > 1:
            raise ImageError(f"{path}: floating-point pixels must lie in [0, 1]")
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("1", "L"):
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def list_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into a list of image files.

    Files are kept as given (a wrong format is reported later by :func:`load_image`). Folders are
    searched recursively for :data:`IMAGE_EXTENSIONS` (case-insensitive), hidden files and
    folders skipped, in sorted order. Duplicates are dropped, first occurrence kept.

    Raises:
        ImageError: If a path does not exist, or a folder holds no image files.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not inside:
                raise ImageError(
                    f"{path}: no image files in this folder (looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)})"
                )
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise ImageError(f"{path}: no such file or folder")
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def preprocess(image: np.ndarray, size: int | tuple[int, int], mode: Mode) -> np.ndarray:
    """Turn an RGB image in [0, 1] into a model input of ``size`` with one of three presets.

    * ``"pad"`` (the TF tutorial): scale to fit inside ``size`` keeping the aspect ratio, then
      pad with black, centred (extra pixel of odd padding at the bottom/right);
    * ``"resize"`` (the Keras example): resize to ``size``, distorting the aspect ratio;
    * ``"center_crop"``: crop the largest central region with the aspect ratio of ``size``
      (the central square for square inputs), then resize it.

    Resizing is bicubic in 32-bit float per channel (no 8-bit rounding); the result is clipped
    to [0, 1] because bicubic filters overshoot at edges. For uint8-origin square images the
    centre crop equals :func:`igkit.models.photos.center_crop_resize` up to that rounding.

    Args:
        image: ``(H, W, 3)`` float array in [0, 1] (as :func:`load_image` returns).
        size: ``(height, width)`` of the output, or one int for a square.
        mode: "pad", "resize" or "center_crop".

    Returns:
        A float32 ``(height, width, 3)`` array in [0, 1].

    Raises:
        ValueError: For an unknown mode, a bad size or a non-image array.
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    preset = _PRESETS.get(mode)
    if preset is None:
        raise ValueError(f"unknown preprocess mode {mode!r}; choose one of {', '.join(_PRESETS)}")
    return np.clip(preset(image, int(height), int(width)), 0.0, 1.0).astype(np.float32)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image.copy()
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


def _pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_h = min(height, max(1, round(h * scale)))
    new_w = min(width, max(1, round(w * scale)))
    out = np.zeros((height, width, image.shape[-1]), dtype=np.float32)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = _resize(image, new_h, new_w)
    return out


def _center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    # The largest h' x w' inside the image with h' / w' = height / width.
    crop_h, crop_w = (h, max(1, round(h * width / height)))
    if crop_w > w:
        crop_h, crop_w = max(1, round(w * height / width)), w
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return _resize(image[top : top + crop_h, left : left + crop_w], height, width)


_PRESETS = {"pad": _pad, "resize": _resize, "center_crop": _center_crop}
