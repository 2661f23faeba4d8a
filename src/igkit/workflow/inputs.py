"""The inputs of an explanation run: photo files, per-channel microscopy examples, arrays.

Each input is an :class:`Input`: a unique output name, where it came from (for messages and the
npz), and a ``read`` that returns the example as an ``(H, W, C)`` float array in [0, 1] at its
own size, with every channel it has. Preprocessing to the model's size and picking the channels
the model takes happen later, in :class:`igkit.workflow.Explainer`, the same way for all three
kinds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from igkit.models.spec import LoadedModel

__all__ = [
    "ImageReader",
    "Input",
    "InputError",
    "array_inputs",
    "model_channels",
    "channel_inputs",
    "photo_inputs",
    "unique_names",
]


class InputError(ValueError):
    """A mistake in what the user asked for (a file, a model, a target, an option): the
    message names the problem and the fix. Raised before any attribution is computed."""


@dataclass(frozen=True)
class Input:
    """One example to explain.

    Attributes:
        name: Its output stem, unique within a run (``NAME.npz``, ``NAME.png``).
        where: Where it came from, for messages: a file path or ``array[i]``.
        read: Returns the example as ``(H, W, C)`` float32 in [0, 1], at its own size.
        sources: The files it was read from (empty for arrays).
        id: Position in the run (a dataset store's example id).
        label: Its true class, when a manifest gives one (any text).
        target: A class index to explain, when a manifest gives one.
    """

    name: str
    where: str
    read: Callable[[], np.ndarray] = field(repr=False)
    sources: tuple[str, ...] = ()
    id: int = 0
    label: str | None = None
    target: int | None = None


def unique_names(stems: Sequence[str], *, fallback: str) -> list[str]:
    """``stems`` made unique by suffixing ``-2``, ``-3``... in order; empty ones get
    ``fallback``."""
    names: list[str] = []
    taken: set[str] = set()
    for stem in stems:
        stem = stem or fallback
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        names.append(name)
    return names


class ImageReader:
    """A picklable ``read`` of one photo file (Ray ships inputs to its actors)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> np.ndarray:
        from igkit.io.images import load_image

        return load_image(self.path)


def photo_inputs(
    paths: Iterable[str | os.PathLike[str]], *, expand: bool = True
) -> list[Input]:
    """Photo files, and the images in folders (``expand``), in order, named by file stem.

    Raises:
        InputError: For a missing path or a folder without images.
    """
    from igkit.io.images import ImageError, list_images

    try:
        files = list_images(paths) if expand else [Path(p) for p in paths]
    except ImageError as exc:
        raise InputError(str(exc)) from None
    names = unique_names([f.stem for f in files], fallback="image")
    return [
        Input(name, str(f), ImageReader(str(f)), (str(f),), id=i)
        for i, (f, name) in enumerate(zip(files, names, strict=True))
    ]


class _ReadChannels:
    """A picklable ``read`` of one multi-channel example."""

    def __init__(self, example: object, channels: tuple[str, ...]) -> None:
        self.example = example
        self.channels = channels

    def __call__(self) -> np.ndarray:
        return self.example.load(self.channels, self.channels)  # type: ignore[attr-defined]


def channel_inputs(
    paths: Iterable[str | os.PathLike[str]],
    channels: Sequence[str] | str | None = None,
    pattern: str | None = None,
) -> list[Input]:
    """Multi-channel examples: per-channel files (``pattern``) or multi-page TIFF stacks.

    Args:
        paths: Files and folders holding the examples.
        channels: The channels of each example in order (default red, green, blue, yellow).
        pattern: Per-channel file names with ``{id}`` and ``{channel}`` (default
            ``{id}_{channel}.png``).

    Raises:
        InputError: For a missing file or channel, a bad pattern or channel list.
    """
    from igkit.io.channels import (
        DEFAULT_CHANNELS,
        DEFAULT_PATTERN,
        ChannelError,
        find_channel_examples,
        parse_channel_names,
    )

    try:
        names_ = parse_channel_names(channels or DEFAULT_CHANNELS, "--channels")
        examples = find_channel_examples(paths, names_, pattern or DEFAULT_PATTERN)
    except ChannelError as exc:
        raise InputError(str(exc)) from None
    names = unique_names([e.id or e.source.stem for e in examples], fallback="example")
    inputs = []
    for i, (example, name) in enumerate(zip(examples, names, strict=True)):
        files = (
            [example.stack] if example.stack is not None else list(example.files.values())
        )
        inputs.append(
            Input(
                name,
                str(example.source),
                _ReadChannels(example, names_),
                tuple(str(p) for p in files),
                id=i,
            )
        )
    return inputs


def array_inputs(images: np.ndarray | Sequence[np.ndarray], *, name: str = "array") -> list[Input]:
    """In-memory images, ``(H, W, C)`` or a batch ``(N, H, W, C)``, values in [0, 1].

    Integer images are read as 8-bit (divided by 255) when their values exceed 1.

    Raises:
        InputError: For arrays of another rank, or with NaN/Inf.
    """
    if isinstance(images, np.ndarray):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4:
            raise InputError(
                f"images must be (H, W, C) or (N, H, W, C), channels last; got shape "
                f"{images.shape}"
            )
        items = list(batch)
    else:
        items = [np.asarray(image) for image in images]
    inputs = []
    for i, image in enumerate(items):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise InputError(f"image {i} has shape {image.shape}; expected (H, W, C)")
        if image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
            c, h, w = image.shape
            raise InputError(
                f"image {i} has shape {image.shape}, which looks channels-first; igkit reads "
                f"arrays channels-last: transpose it to ({h}, {w}, {c}) with "
                "image.transpose(1, 2, 0)"
            )
        if image.dtype.kind in "iub":
            image = image.astype(np.float32) / (255.0 if image.max(initial=0) > 1 else 1.0)
        image = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(image)):
            raise InputError(f"image {i} holds NaN or Inf values")
        label = f"{name}[{i}]" if len(items) > 1 else name
        inputs.append(Input(label, label, _Constant(image), id=i))
    return inputs


class _Constant:
    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def __call__(self) -> np.ndarray:
        return self.image


def model_channels(
    requested: Sequence[str] | str | None, model: LoadedModel, channels: tuple[str, ...]
) -> tuple[str, ...]:
    """The channels the model takes, out of an example's ``channels``: those ``requested``
    (``--model-channels``), else the model's declared ones, else all of them.

    Raises:
        InputError: For a channel the examples lack, or a count the model does not take.
    """
    from igkit.io.channels import ChannelError, parse_channel_names

    if requested:
        try:
            wanted = parse_channel_names(requested, "--model-channels")
        except ChannelError as exc:
            raise InputError(str(exc)) from None
    elif model.channels is not None:
        wanted = tuple(model.channels)
    else:
        wanted = channels
    absent = [c for c in wanted if c not in channels]
    if absent:
        raise InputError(
            f"--model-channels: {absent[0]!r} is not one of the example's channels "
            f"({','.join(channels)}); name it in --channels or leave it out"
        )
    if model.channels is not None and len(wanted) != len(model.channels):
        raise InputError(
            f"--model {model.name} takes {len(model.channels)} channels "
            f"({','.join(model.channels)}), not {len(wanted)} ({','.join(wanted)}); "
            "choose that many with --model-channels"
        )
    return wanted
