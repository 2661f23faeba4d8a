"""One channel file, or a multi-page / multi-channel TIFF, as float32 planes in [0, 1].

The lower layer of :mod:`igkit.io.channels`, which names, finds and assembles examples from
these planes. Here:

* TIFFs are read with ``tifffile`` (pages written one by one are stacked), other formats with
  Pillow; a colour file holding one stain is reduced to one plane;
* integers are scaled by their container: 8-bit by 255, 16-bit by 65535 (``value_max`` overrides
  this, e.g. 4095 for 12-bit data stored in 16-bit files); floats must already lie in [0, 1].

Every problem a user can fix raises :class:`ChannelError`, a ``ValueError`` whose message names
the file and says what to do.

Sizes are checked from the headers before anything is decoded, against the budget of
:mod:`igkit.io.images` (``IGKIT_MAX_IMAGE_PIXELS``, default 50 megapixels): for a TIFF the whole
stack counts (planes x height x width), since every page is decoded at once. Pillow's
decompression-bomb limit applies as in :func:`igkit.io.images.load_image`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from igkit.io.images import (
    ImageError,
    bomb_message,
    pillow_warning_policy,
    pixel_budget_problem,
)

__all__ = [
    "TIFF_SUFFIXES",
    "ChannelError",
    "read_channel_file",
    "read_tiff_planes",
    "scale_to_unit",
]

TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
# Peak bytes per pixel of a plane while it becomes float32 in [0, 1]: the file's integers, a
# float64 for exact scaling, the float32 result.
_PLANE_BYTES_PER_PIXEL = 16


class ChannelError(ValueError):
    """A multi-channel example that cannot be assembled; the message names the file and fix."""


def read_channel_file(path: str | os.PathLike[str], value_max: float | None = None) -> np.ndarray:
    """One channel file as float32 ``(H, W)`` in [0, 1].

    Grayscale files are read as they are; a colour file (a stain saved in its false colour) is
    reduced to the maximum over its colour channels, which recovers a stain stored in one colour
    and a gray image stored as RGB alike. TIFFs are read with ``tifffile``, other formats with
    Pillow.

    Args:
        path: The file.
        value_max: The value meaning full intensity; None scales by the container (255 for
            8-bit, 65535 for 16-bit) and takes floats as they are.

    Raises:
        ChannelError: If the file is missing, unreadable, not one plane, or its values do not fit.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ChannelError(f"{path}: the channel file {what}")
    data = _read_tiff(path) if path.suffix.lower() in TIFF_SUFFIXES else _read_pillow(path)
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        data = data[..., :3].max(axis=-1)
    if data.ndim != 2:
        raise ChannelError(
            f"{path}: holds an array of shape {data.shape}, not one image plane; store one "
            "channel per file, or pass the file as a multi-channel TIFF"
        )
    return scale_to_unit(data, path, value_max)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with _budget_errors(), pillow_warning_policy(), Image.open(path) as image:
            problem = pixel_budget_problem(
                path, (image.height, image.width), bytes_per_pixel=_PLANE_BYTES_PER_PIXEL
            )
            if problem is not None:
                raise ChannelError(problem)
            image.load()
            plane: Image.Image = image
            if plane.mode == "P":
                plane = plane.convert("RGB")
            elif plane.mode in ("LA", "PA", "La"):
                plane = plane.convert("L")
            elif plane.mode in ("RGBA", "RGBa", "CMYK", "YCbCr", "HSV", "LAB"):
                plane = plane.convert("RGB")
            elif plane.mode == "1":
                plane = plane.convert("L")
            return np.asarray(plane)
    except ChannelError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ChannelError(bomb_message(path, exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ChannelError(
            f"{path}: cannot be read as an image ({type(exc).__name__}: "
            f"{_first_line(exc)}); replace the file or fix the --channel-files pattern"
        ) from None


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's image data with singleton axes dropped."""
    array, _ = read_tiff_planes(path)
    return array


def read_tiff_planes(path: Path) -> tuple[np.ndarray, str]:
    """A TIFF's image data with singleton axes dropped, and the letters of the axes left
    (tifffile's: ``Y``/``X`` height and width, ``S`` samples, ``C``/``I``/``Q``... pages).

    A file whose pages were written one by one holds one series per page; same-sized planes
    are stacked along a ``C`` axis.
    """
    try:
        import tifffile
    except ImportError:
        raise ChannelError(
            f"{path}: reading TIFF files needs the package 'tifffile', which is not installed; "
            "`pip install tifffile` (or igkit[cli])"
        ) from None
    try:
        with _budget_errors(), _tifffile_log() as log, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ChannelError(
                    f"{path}: cannot be read as a TIFF (it holds no image); replace the file"
                )
            _check_stack_budget(path, [(tuple(s.shape), s.axes) for s in tif.series])
            log.clear()  # complaints about metadata while parsing: the pixels may be fine
            parts = [(series.asarray(), series.axes) for series in tif.series]
            if log:  # tifffile logs, rather than raises, pixel data it could not decode
                raise ChannelError(
                    f"{path}: the TIFF's image data is damaged ({log[0]}); replace the file"
                )
    except ChannelError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        raise ChannelError(
            f"{path}: cannot be read as a TIFF ({type(exc).__name__}: {_first_line(exc)}); "
            "replace the file"
        ) from None
    if any(array.ndim != len(axes) for array, axes in parts):
        raise ChannelError(
            f"{path}: the TIFF's image data does not match the shape its header declares "
            "(damaged or truncated); replace the file"
        )
    squeezed = [_squeeze(array, axes) for array, axes in parts]
    if len(squeezed) == 1:
        return squeezed[0]
    # Pages written one by one become one series each: stack them when they are planes.
    shapes = [array.shape for array, axes in squeezed]
    if any(axes != "YX" for _, axes in squeezed):
        raise ChannelError(
            f"{path}: the TIFF holds {len(squeezed)} series that are not single image planes; "
            "store one multi-channel image"
        )
    if len(set(shapes)) > 1:
        raise ChannelError(
            f"{path}: the TIFF's pages differ in size ({', '.join(f'{w}x{h}' for h, w in shapes)}"
            "); all channels of an example must have the same size: resize them to one size"
        )
    return np.stack([array for array, _ in squeezed]), "CYX"


class _ThreadLog(logging.Filter):
    """Takes tifffile's log records of the threads that are reading a TIFF, so that they
    neither reach the user's terminal (the command line prints one error line) nor get lost:
    the reader turns those about pixel data into its error message."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        taken: list[str] | None = getattr(self.local, "records", None)
        if taken is None:
            return True  # not read by igkit: tifffile's own behaviour
        taken.append(_first_line(Exception(record.getMessage())))
        return False


_TIFFFILE_LOG = _ThreadLog()


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """The messages tifffile logs in this thread meanwhile (it reports damaged data so)."""
    logger = logging.getLogger("tifffile")
    if _TIFFFILE_LOG not in logger.filters:
        logger.addFilter(_TIFFFILE_LOG)
    records: list[str] = []
    _TIFFFILE_LOG.local.records = records
    try:
        yield records
    finally:
        _TIFFFILE_LOG.local.records = None


@contextlib.contextmanager
def _budget_errors() -> Iterator[None]:
    """An ImageError of the shared budget (a bad IGKIT_MAX_IMAGE_PIXELS) as a ChannelError."""
    try:
        yield
    except ImageError as exc:
        raise ChannelError(str(exc)) from None


def _check_stack_budget(path: Path, series: list[tuple[tuple[int, ...], str]]) -> None:
    """Refuse, from the TIFF's headers, a stack whose pixels (all series, pages and samples)
    are above the decoding budget."""
    total = sum(int(np.prod(shape, dtype=np.float64)) for shape, _ in series)
    shape, axes = series[0]
    if "Y" in axes and "X" in axes:
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        planes = total // max(height * width, 1)
        size: tuple[int, ...] = (planes, height, width)
    else:
        size = (total,)
    problem = pixel_budget_problem(
        path, size, what="TIFF stack", bytes_per_pixel=_PLANE_BYTES_PER_PIXEL
    )
    if problem is not None:
        raise ChannelError(problem)


def _squeeze(array: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Drops the singleton axes of a TIFF series, keeping height (Y) and width (X)."""
    keep = [i for i, size in enumerate(array.shape) if size > 1 or axes[i] in "YX"]
    return array.reshape([array.shape[i] for i in keep]), "".join(axes[i] for i in keep)


def scale_to_unit(data: np.ndarray, path: Path, value_max: float | None) -> np.ndarray:
    """Integers scaled by their container (or ``value_max``), floats checked to lie in [0, 1]."""
    if data.dtype == bool:
        return data.astype(np.float32)
    if value_max is not None:
        if not value_max > 0:
            raise ChannelError(f"value_max must be positive, got {value_max}")
        unit = data.astype(np.float64) / float(value_max)
    elif data.dtype == np.uint8:
        unit = data.astype(np.float64)
        unit /= 255.0
    elif data.dtype == np.uint16:
        unit = data.astype(np.float64)
        unit /= 65535.0
    elif data.dtype.kind in "iu":
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if low < 0 or high > 65535:
            raise ChannelError(
                f"{path}: {data.dtype} pixels from {low} to {high} fit neither 8 nor 16 bits; "
                "pass value_max (the value meaning full intensity)"
            )
        # Pillow reads 16-bit PNGs as 32-bit integers ("I" mode) on some versions.
        unit = data.astype(np.float64) / 65535.0
    elif data.dtype.kind == "f":
        unit = data.astype(np.float64)
    else:
        raise ChannelError(f"{path}: unsupported pixel type {data.dtype}")
    if not np.all(np.isfinite(unit)):
        raise ChannelError(f"{path}: holds NaN or Inf pixels; replace them")
    if unit.size and (unit.min() < 0 or unit.max() > 1):
        raise ChannelError(
            f"{path}: pixel values run from {unit.min():.4g} to {unit.max():.4g} after scaling, "
            "outside [0, 1]; store integers, floats in [0, 1], or pass value_max"
        )
    return unit.astype(np.float32)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
