"""Reading image files into float RGB arrays, and the resize presets that make model inputs.

Everything a user can get wrong about an image file (missing, a folder, corrupt, truncated, an
unsupported format, too large to decode, a decompression bomb) becomes an :class:`ImageError`
whose message names the file and the problem, so the command line can print it as one line.

**Decoding budget.** A small file can declare a huge image (a 9000x9000 PNG of 10 KB decodes to
over 1 GB of float pixels), and Pillow's own decompression-bomb limit (about 89 megapixels)
allows much of that. So the size in the header is checked against igkit's budget before any
pixel is decoded: :data:`DEFAULT_MAX_IMAGE_PIXELS` (50 megapixels, about 1 GB at the peak of
decoding), or the environment variable ``IGKIT_MAX_IMAGE_PIXELS``. Setting that variable also
lets through images between Pillow's limit and twice it, which Pillow only warns about; above
twice it Pillow refuses outright, and only ``PIL.Image.MAX_IMAGE_PIXELS`` (from Python) raises
that. Every refusal says the size, the limit and how to raise it.

Only numpy and Pillow are used.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS_ENV",
    "ImageError",
    "bomb_message",
    "list_images",
    "load_image",
    "max_image_pixels",
    "pillow_warning_policy",
    "pixel_budget_problem",
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

#: The environment variable that sets the decoding budget, in pixels (``_`` allowed: 100_000_000).
MAX_IMAGE_PIXELS_ENV = "IGKIT_MAX_IMAGE_PIXELS"
#: The decoding budget without the variable: 50 megapixels (8160x6120, a 50 MP camera photo).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Peak bytes per pixel while decoding to float32 RGB (Pillow's RGBX, a uint8 copy, the float
# result), measured; used to say how much memory a refused image would need.
_DECODE_BYTES_PER_PIXEL = 20


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the problem."""


def max_image_pixels() -> tuple[int, bool]:
    """The decoding budget in pixels, and whether the user set it (``IGKIT_MAX_IMAGE_PIXELS``).

    Without the variable the budget is :data:`DEFAULT_MAX_IMAGE_PIXELS`, or Pillow's
    ``PIL.Image.MAX_IMAGE_PIXELS`` when that was set lower.

    Raises:
        ImageError: If the variable is set but not a positive whole number.
    """
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not raw:
        pillow = Image.MAX_IMAGE_PIXELS
        return (
            min(DEFAULT_MAX_IMAGE_PIXELS, int(pillow)) if pillow else DEFAULT_MAX_IMAGE_PIXELS
        ), False
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ImageError(
            f"{MAX_IMAGE_PIXELS_ENV}={raw!r} is not a positive whole number of pixels; set it "
            f"to e.g. {2 * DEFAULT_MAX_IMAGE_PIXELS} or unset it (default "
            f"{DEFAULT_MAX_IMAGE_PIXELS})"
        )
    return value, True


def pixel_budget_problem(
    path: Path, shape: tuple[int, ...], what: str = "image", bytes_per_pixel: int = 0
) -> str | None:
    """Why an image of ``shape`` (from its header) must not be decoded, or None if it fits.

    Args:
        path: The file, for the message.
        shape: The sizes whose product counts: ``(height, width)``, or ``(planes, height,
            width)`` for stacks.
        what: How the message names the data, e.g. ``"image"`` or ``"TIFF stack"``.
        bytes_per_pixel: Peak memory per pixel while decoding, for the message
            (default: that of :func:`load_image`).

    Returns:
        None within :func:`max_image_pixels`; otherwise the refusal, which gives the size, the
        limit, the memory decoding would take and how to raise the limit.

    Raises:
        ImageError: If ``IGKIT_MAX_IMAGE_PIXELS`` is not a positive whole number.
    """
    limit, _ = max_image_pixels()
    pixels = 1
    for side in shape:
        pixels *= max(int(side), 0)
    if pixels <= limit:
        return None
    size = "x".join(str(int(s)) for s in reversed(shape[-2:]))
    if len(shape) > 2:
        size = f"{' x '.join(str(int(s)) for s in shape[:-2])} x {size}"
    gigabytes = pixels * (bytes_per_pixel or _DECODE_BYTES_PER_PIXEL) / 1e9
    return (
        f"{path}: the {what} is {size} pixels ({pixels / 1e6:.1f} megapixels), above igkit's "
        f"decoding limit of {limit / 1e6:.1f} megapixels (decoding it would take about "
        f"{gigabytes:.1f} GB of memory); downscale the file, or raise the limit with the "
        f"environment variable {MAX_IMAGE_PIXELS_ENV}={pixels} (or more)"
    )


@contextlib.contextmanager
def pillow_warning_policy() -> Iterator[None]:
    """Pillow's warnings while a file is opened and decoded.

    The decompression-bomb warning is an error, unless the user set ``IGKIT_MAX_IMAGE_PIXELS``
    (then igkit's own budget, checked after ``open``, decides). Pillow's other warnings (corrupt
    EXIF or TIFF metadata, which many real photos have) are dropped: igkit reads the pixels, and
    damaged pixel data still raises; printed, they would break the one-line error output.

    Raises:
        ImageError: If ``IGKIT_MAX_IMAGE_PIXELS`` is not a positive whole number.
    """
    _, user_set = max_image_pixels()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("ignore" if user_set else "error", Image.DecompressionBombWarning)
        yield


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as float32 RGB ``(H, W, 3)`` with values in [0, 1].

    Conversions are explicit: grayscale is repeated into three channels; an alpha channel is
    composited onto white (what a viewer shows on a white page; dropping it would expose
    whatever colour the transparent pixels happen to store); palette images are expanded;
    16-bit images are scaled by 65535 rather than clipped to 8 bits; CMYK and YCbCr are
    converted to RGB. The EXIF orientation is applied, so phone photos come out upright. For
    animated files the first frame is used.

    Images larger than the decoding budget (:func:`max_image_pixels`: 50 megapixels, or
    ``IGKIT_MAX_IMAGE_PIXELS``) are refused from their header, before any pixel is decoded; so
    are decompression bombs by Pillow's limit ``PIL.Image.MAX_IMAGE_PIXELS`` (read at call time),
    unless ``IGKIT_MAX_IMAGE_PIXELS`` is set to allow them (see the module docstring).

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
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; the header's size
        # is checked against igkit's budget before anything is decoded.
        with pillow_warning_policy(), Image.open(path) as image:
            problem = pixel_budget_problem(path, (image.height, image.width))
            if problem is not None:
                raise ImageError(problem)
            image.load()  # decode now, inside the handlers (open() is lazy)
            ImageOps.exif_transpose(image, in_place=True)  # no copy when upright
            pixels = _pixels(image, path)
        rgb = _to_rgb_array(*pixels, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(bomb_message(path, exc)) from exc
    except ImageError:
        raise
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


def bomb_message(path: Path, exc: BaseException) -> str:
    """Pillow's refusal, with how to raise its limit: igkit's variable up to twice Pillow's
    limit (its warning band), ``PIL.Image.MAX_IMAGE_PIXELS`` beyond."""
    limit = int(Image.MAX_IMAGE_PIXELS or 0)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else None
    if pixels is not None and pixels <= 2 * limit:
        how = (
            f"to read it anyway set the environment variable {MAX_IMAGE_PIXELS_ENV}={pixels} "
            "(or more)"
        )
    else:
        how = (
            f"above twice that Pillow refuses outright: to read it anyway raise "
            f"PIL.Image.MAX_IMAGE_PIXELS from Python and set {MAX_IMAGE_PIXELS_ENV} to at least "
            "its pixel count"
        )
    size = f"{pixels} pixels" if pixels is not None else "more pixels than the limit"
    return (
        f"{path}: refused as a possible decompression bomb: the image has {size}, above "
        f"Pillow's limit PIL.Image.MAX_IMAGE_PIXELS = {limit}; {how}; or downscale the file"
    )


def _unidentified_message(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return f"{path}: corrupt or not really a {suffix} image (Pillow cannot identify it)"
    return (
        f"{path}: unsupported image format {suffix or '(no extension)'!r}; "
        f"igkit reads {', '.join(IMAGE_EXTENSIONS)}"
    )


def _pixels(image: Image.Image, path: Path) -> tuple[np.ndarray, str]:
    """A decoded Pillow image as a numpy array in one of the modes :func:`_to_rgb_array` takes
    (``RGBA``, ``RGB``, ``L``, ``I`` or ``F``), so that Pillow's copy can be freed before the
    float conversion (this halves the peak memory of large images)."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return np.asarray(image.convert("RGBA")), "RGBA"
    if mode.startswith("I;16") or mode == "I":
        return np.asarray(image), "I"
    if mode == "F":
        return np.asarray(image, dtype=np.float32), "F"
    if mode in ("1", "L"):
        return np.asarray(image.convert("L")), "L"
    return np.asarray(image if mode == "RGB" else image.convert("RGB")), "RGB"


def _to_rgb_array(data: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """Pixels from :func:`_pixels` as float32 RGB in [0, 1], converting each mode explicitly."""
    if mode == "RGBA":
        rgba = data.astype(np.float32)
        rgba /= np.float32(255.0)
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        rgb *= alpha
        rgb += 1.0 - alpha
        return np.ascontiguousarray(rgb)
    if mode == "I":
        wide = data.astype(np.float64)
        if wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise ImageError(f"{path}: 32-bit integer pixels outside the 16-bit range")
        gray = (wide / 65535.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        gray = data
        if not np.all(np.isfinite(gray)) or gray.min(initial=0.0) < 0 or gray.max(initial=0.0) > 1:
            raise ImageError(f"{path}: floating-point pixels must lie in [0, 1]")
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "L":
        data = np.repeat(data[..., None], 3, axis=-1)
    rgb = data.astype(np.float32)
    rgb /= np.float32(255.0)
    return rgb


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
