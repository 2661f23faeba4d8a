"""Multi-channel examples from per-channel image files or multi-page / multi-channel TIFFs.

Fluorescence microscopy stores one stain per file: the Human Protein Atlas names them
``ID_red.png``, ``ID_green.png``, ``ID_blue.png`` and ``ID_yellow.png`` (microtubules, the protein
of interest, the nucleus, the endoplasmic reticulum). This module assembles such files into one
``(H, W, C)`` float32 array in [0, 1], with

* a configurable naming pattern with the fields ``{id}`` and ``{channel}`` (default
  :data:`DEFAULT_PATTERN`; it may name sub-folders, e.g. ``"{channel}/{id}.tif"``);
* channel selection and order: ``channels`` lists the names to load, in the order wanted;
* multi-page or multi-channel TIFF files (one file per example), read with ``tifffile``, whose
  channels are named by ``file_channels`` in the file's order;
* integers scaled by their container: 8-bit by 255, 16-bit by 65535 (``value_max`` overrides
  this, e.g. 4095 for 12-bit data stored in 16-bit files); floats must already lie in [0, 1].

Decoding one file into planes (Pillow, ``tifffile``, the scaling) lives in
:mod:`igkit.io.channel_planes`; this module names, finds, assembles and writes examples, and
re-exports that module's public names.

Every problem a user can fix (a missing channel file, channels of different sizes, an unreadable
or unsupported file, a bad pattern) raises :class:`ChannelError`, a ``ValueError`` whose message
names the file and says what to do.
"""

from __future__ import annotations

import io
import os
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igkit.io.channel_planes import (
    TIFF_SUFFIXES,
    ChannelError,
    read_channel_file,
    read_tiff_planes,
    scale_to_unit,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_PATTERN",
    "TIFF_SUFFIXES",
    "ChannelError",
    "ChannelExample",
    "find_channel_examples",
    "load_channel_files",
    "load_channel_stack",
    "parse_channel_names",
    "read_channel_file",
    "save_channel_files",
]

#: The HPA stains, in the order of the notebook's RGBY arrays.
DEFAULT_CHANNELS: tuple[str, ...] = ("red", "green", "blue", "yellow")
#: The HPA file naming: ``ID_red.png`` and so on.
DEFAULT_PATTERN = "{id}_{channel}.png"

_FIELDS = ("id", "channel")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_channel_names(text: str | Sequence[str], what: str = "channels") -> tuple[str, ...]:
    """Channel names from ``"red,green,blue"`` or a sequence, checked: non-empty, distinct,
    made of letters, digits, ``_``, ``.`` and ``-`` (they become parts of file names).

    Raises:
        ChannelError: If a name is empty, repeated or holds other characters.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(str(item).strip() for item in items)
    if not names or any(not name for name in names):
        raise ChannelError(f"{what} {text!r}: give comma-separated names, e.g. red,green,blue")
    for name in names:
        if not _NAME.match(name):
            raise ChannelError(
                f"{what}: channel name {name!r} may hold only letters, digits, '_', '.' and '-'"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ChannelError(f"{what}: channel {repeated[0]!r} is listed twice")
    return names


def _check_pattern(pattern: str) -> list[str]:
    """The fields of ``pattern``, which must use ``{channel}`` and may use ``{id}``."""
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise ChannelError(f"channel-file pattern {pattern!r} is malformed ({exc})") from None
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise ChannelError(
            f"channel-file pattern {pattern!r} uses {{{unknown[0]}}}; only {{id}} and "
            "{channel} are known, e.g. '{id}_{channel}.png'"
        )
    if "channel" not in fields:
        raise ChannelError(
            f"channel-file pattern {pattern!r} lacks {{channel}}; it must tell the channel "
            "files apart, e.g. '{id}_{channel}.png'"
        )
    return fields


def _pattern_regex(pattern: str, channels: Sequence[str]) -> re.Pattern[str]:
    """A regex matching ``pattern``'s file names (POSIX separators) for the given channels."""
    parts = []
    seen: set[str] = set()
    for literal, field, _, _ in string.Formatter().parse(pattern):
        parts.append(re.escape(literal))
        if field is None:
            continue
        if field in seen:
            parts.append(f"(?P={field})")
            continue
        seen.add(field)
        if field == "channel":
            names = sorted(channels, key=len, reverse=True)
            parts.append("(?P<channel>" + "|".join(re.escape(c) for c in names) + ")")
        else:
            parts.append("(?P<id>[^/]+?)")
    return re.compile("".join(parts) + r"\Z")


def _file_name(pattern: str, example_id: str, channel: str) -> str:
    return pattern.format(id=example_id, channel=channel)


# ------------------------------------------------------------------------------- examples


def load_channel_files(
    folder: str | os.PathLike[str],
    example_id: str,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    pattern: str = DEFAULT_PATTERN,
    *,
    value_max: float | None = None,
) -> np.ndarray:
    """One example assembled from its per-channel files, ``(H, W, len(channels))`` float32.

    Args:
        folder: The folder the pattern is relative to.
        example_id: The ``{id}`` of the example.
        channels: Names of the channels to load, in the order of the output's channel axis.
        pattern: File name pattern with ``{channel}`` and usually ``{id}``.
        value_max: See :func:`read_channel_file`.

    Raises:
        ChannelError: For a missing channel file, channels of different sizes, an unreadable
            file or a bad pattern.
    """
    channels = parse_channel_names(channels)
    _check_pattern(pattern)
    folder = Path(folder)
    files = {c: folder / _file_name(pattern, example_id, c) for c in channels}
    missing = [c for c, p in files.items() if not p.is_file()]
    if missing:
        c = missing[0]
        raise ChannelError(
            f"{files[c]}: missing channel {c!r} of example {example_id!r} (pattern "
            f"{pattern!r}); add the file, fix the pattern, or leave {c!r} out of the channels"
        )
    planes = [read_channel_file(files[c], value_max) for c in channels]
    _check_sizes([(files[c], p.shape) for c, p in zip(channels, planes, strict=True)])
    return np.stack(planes, axis=-1)


def _check_sizes(shapes: Sequence[tuple[Path | str, tuple[int, ...]]]) -> None:
    first_path, first = shapes[0]
    for path, shape in shapes[1:]:
        if shape != first:
            raise ChannelError(
                f"{path}: channel of size {shape[1]}x{shape[0]} but {first_path} is "
                f"{first[1]}x{first[0]} (width x height); all channels of an example must have "
                "the same size: resize them to one size"
            )


def load_channel_stack(
    path: str | os.PathLike[str],
    channels: Sequence[str] = DEFAULT_CHANNELS,
    file_channels: Sequence[str] = DEFAULT_CHANNELS,
    *,
    value_max: float | None = None,
) -> np.ndarray:
    """One example from a multi-page or multi-channel TIFF, ``(H, W, len(channels))`` float32.

    The file's channels (its pages, or the samples of each pixel) are named by
    ``file_channels`` in the file's order; ``channels`` picks and orders the ones to load. The
    channel axis is found from the TIFF's axes: pages (``I``, ``Q``, ``C``, ``Z``...) or samples
    (``S``); the other axes must be the image's height and width.

    Raises:
        ChannelError: If the file is unreadable, has more than one non-image axis, has a
            different number of channels than ``file_channels`` names, or pages of different
            sizes; or if ``channels`` names a channel the file lacks.
    """
    path = Path(path)
    channels = parse_channel_names(channels)
    file_channels = parse_channel_names(file_channels, "file channels")
    absent = [c for c in channels if c not in file_channels]
    if absent:
        raise ChannelError(
            f"{path}: channel {absent[0]!r} is not among the file's channels "
            f"{','.join(file_channels)}; name the file's channels in order"
        )
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ChannelError(f"{path}: the TIFF file {what}")
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise ChannelError(
            f"{path}: only TIFF files ({', '.join(TIFF_SUFFIXES)}) hold several channels; "
            "give per-channel files with a --channel-files pattern instead"
        )
    array, axes = read_tiff_planes(path)
    if array.ndim == 2:
        array, axes = array[None], "C" + axes
    other = [i for i, a in enumerate(axes) if a not in "YX"]
    if array.ndim != 3 or len(other) != 1 or "Y" not in axes or "X" not in axes:
        raise ChannelError(
            f"{path}: a TIFF of shape {array.shape} (axes {axes}) is not one multi-channel "
            "image; store the channels as pages of one height x width each"
        )
    stack = np.moveaxis(array, other[0], -1)
    count = stack.shape[-1]
    if count != len(file_channels):
        raise ChannelError(
            f"{path}: the TIFF holds {count} channels but {len(file_channels)} are named "
            f"({','.join(file_channels)}); name each of the file's channels in order"
        )
    picked = [stack[..., file_channels.index(c)] for c in channels]
    return np.stack([scale_to_unit(p, path, value_max) for p in picked], axis=-1)


@dataclass(frozen=True)
class ChannelExample:
    """One multi-channel example on disk: per-channel files, or one TIFF stack.

    Attributes:
        id: The example's ``{id}`` (the stack's file stem for TIFF stacks).
        files: Channel name to file, in channel order; empty for a stack.
        stack: The multi-channel TIFF, or None.
    """

    id: str
    files: dict[str, Path]
    stack: Path | None = None

    @property
    def source(self) -> Path:
        """A path to name the example by in messages: the stack or the first channel file."""
        return self.stack if self.stack is not None else next(iter(self.files.values()))

    def load(
        self,
        channels: Sequence[str],
        file_channels: Sequence[str] = DEFAULT_CHANNELS,
        *,
        value_max: float | None = None,
    ) -> np.ndarray:
        """The example as ``(H, W, len(channels))`` float32 in [0, 1] (see the loaders)."""
        if self.stack is not None:
            return load_channel_stack(self.stack, channels, file_channels, value_max=value_max)
        planes = []
        for c in channels:
            if c not in self.files:
                raise ChannelError(f"example {self.id!r} has no file for channel {c!r}")
            planes.append(read_channel_file(self.files[c], value_max))
        _check_sizes([(self.files[c], p.shape) for c, p in zip(channels, planes, strict=True)])
        return np.stack(planes, axis=-1)


def find_channel_examples(
    paths: Iterable[str | os.PathLike[str]],
    channels: Sequence[str] = DEFAULT_CHANNELS,
    pattern: str = DEFAULT_PATTERN,
) -> list[ChannelExample]:
    """The examples that files and folders hold, each checked to have every channel's file.

    A folder is searched (recursively, hidden entries skipped) for files matching ``pattern``
    for any of ``channels``; the ``{id}`` values found are its examples. When no file matches,
    its TIFF files are taken as multi-channel stacks. A file is one channel file of an example
    when it matches the pattern (its other channels are looked up beside it), otherwise a TIFF
    stack. Examples keep the order of ``paths``, sorted by id within a folder; repeats are
    dropped.

    Raises:
        ChannelError: If a path does not exist, a folder holds no example, a file neither
            matches the pattern nor is a TIFF, or an example lacks a channel file.
    """
    channels = parse_channel_names(channels)
    fields = _check_pattern(pattern)
    regex = _pattern_regex(pattern, channels)
    depth = pattern.count("/") + 1
    found: list[ChannelExample] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(_examples_in_folder(path, channels, pattern, regex, fields))
        elif path.is_file():
            tail = "/".join(path.parts[-depth:])
            match = regex.match(tail)
            if match and len(path.parts) >= depth:
                root = Path(*path.parts[:-depth]) if len(path.parts) > depth else Path(".")
                example_id = match.group("id") if "id" in fields else ""
                found.append(_example(root, example_id, channels, pattern))
            elif path.suffix.lower() in TIFF_SUFFIXES:
                found.append(ChannelExample(path.stem, {}, path))
            else:
                raise ChannelError(
                    f"{path}: matches neither the channel-file pattern {pattern!r} (for channels "
                    f"{','.join(channels)}) nor is a multi-channel TIFF; fix --channel-files"
                )
        else:
            raise ChannelError(f"{path}: no such file or folder")
    unique: dict[tuple[str, ...], ChannelExample] = {}
    for example in found:
        key = tuple(
            os.path.abspath(p)
            for p in ([example.stack] if example.stack else example.files.values())
        )
        unique.setdefault(key, example)
    return list(unique.values())


def _examples_in_folder(
    folder: Path,
    channels: Sequence[str],
    pattern: str,
    regex: re.Pattern[str],
    fields: Sequence[str],
) -> list[ChannelExample]:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    ids: set[str] = set()
    for p in files:
        match = regex.match(p.relative_to(folder).as_posix())
        if match:
            ids.add(match.group("id") if "id" in fields else "")
    if ids:
        return [_example(folder, i, channels, pattern) for i in sorted(ids)]
    stacks = [p for p in files if p.suffix.lower() in TIFF_SUFFIXES]
    if stacks:
        return [ChannelExample(p.stem, {}, p) for p in stacks]
    raise ChannelError(
        f"{folder}: no channel files matching {pattern!r} for channels {','.join(channels)} "
        "and no TIFF stacks in this folder; check --channel-files and --channels"
    )


def _example(
    folder: Path, example_id: str, channels: Sequence[str], pattern: str
) -> ChannelExample:
    files = {c: folder / _file_name(pattern, example_id, c) for c in channels}
    for c, p in files.items():
        if not p.is_file():
            raise ChannelError(
                f"{p}: missing channel {c!r} of example {example_id!r} (pattern {pattern!r}); "
                f"add the file, fix the pattern, or leave {c!r} out of --channels"
            )
    return ChannelExample(example_id, files)


# -------------------------------------------------------------------------------- writing


def save_channel_files(
    folder: str | os.PathLike[str],
    example_id: str,
    image: np.ndarray,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    pattern: str = DEFAULT_PATTERN,
    *,
    bits: int = 8,
) -> list[Path]:
    """Write an ``(H, W, C)`` image in [0, 1] as one grayscale PNG (or TIFF) per channel.

    Each file is written atomically. The format follows the pattern's suffix: ``.png`` (8 or 16
    bits) or ``.tif``/``.tiff`` (needs ``tifffile``).

    Returns:
        The files written, in channel order.

    Raises:
        ChannelError: For a bad pattern or channel names, or an image that does not fit.
        ValueError: If ``bits`` is not 8 or 16.
    """
    from igkit.io.writers import atomic_open

    channels = parse_channel_names(channels)
    _check_pattern(pattern)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != len(channels):
        raise ChannelError(
            f"image of shape {image.shape} does not have one plane per channel "
            f"({len(channels)}: {','.join(channels)})"
        )
    if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
        raise ChannelError("channel images must hold values in [0, 1]")
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    written = []
    for k, c in enumerate(channels):
        path = Path(folder) / _file_name(pattern, example_id, c)
        path.parent.mkdir(parents=True, exist_ok=True)
        plane = np.round(image[..., k] * top).astype(dtype)
        buffer = io.BytesIO()
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(buffer, plane)
        else:
            from PIL import Image

            Image.fromarray(plane).save(buffer, format="PNG")
        with atomic_open(path) as handle:
            handle.write(buffer.getvalue())
        written.append(path)
    return written
