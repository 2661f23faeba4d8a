"""The registry every model source adds itself to, by the kind of spec it reads.

A source module registers its loaders with the decorators below when it is imported:

* :func:`register_model` for a bare name (``efficientnet_lite0``);
* :func:`register_scheme` for a prefix (``torchvision:NAME``);
* :func:`register_files` for local files with given suffixes (``.keras``, ``.pt``...);
* :func:`register_folder` for local folders (a SavedModel).

:mod:`igkit.models.sources` reads the tables to dispatch a spec; nothing here imports a
framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from igkit.models.spec import LoadedModel

__all__ = [
    "LoadOptions",
    "ModelLoadError",
    "available_schemes",
    "register_files",
    "register_folder",
    "register_model",
    "register_scheme",
]


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded, for a reason the user can fix (one-line message)."""


@dataclass(frozen=True)
class LoadOptions:
    """What every loader receives besides its argument.

    Attributes:
        trust: Allow formats that can run arbitrary code when read (pickled PyTorch models,
            Keras ``Lambda`` layers).
        weights: A local weights file to use instead of downloading pretrained weights.
    """

    trust: bool = False
    weights: Path | None = None


NamedLoader = Callable[[LoadOptions], LoadedModel]
SchemeLoader = Callable[[str, LoadOptions], LoadedModel]
PathLoader = Callable[[Path, LoadOptions], LoadedModel]


@dataclass(frozen=True)
class _Registered:
    loader: Callable[..., LoadedModel]
    usage: str


NAMED: dict[str, _Registered] = {}
SCHEMES: dict[str, _Registered] = {}
#: File suffix (lower case, with the dot) -> loader of such files.
SUFFIXES: dict[str, PathLoader] = {}
#: The loader of local folders, once a source registers one (at most one).
FOLDERS: list[PathLoader] = []
# How the path forms read in help texts: folders first, then files in registration order.
_FOLDER_USAGES: list[str] = []
_FILE_USAGES: list[str] = []
#: The last form of :func:`available_schemes`, read by the dispatch itself.
ENTRY_POINT_USAGE = "package.module:function"


def register_model(name: str, usage: str | None = None) -> Callable[[NamedLoader], NamedLoader]:
    """Register a loader for the bare model name ``name`` (like ``efficientnet_lite0``)."""

    def decorate(loader: NamedLoader) -> NamedLoader:
        if name in NAMED:
            raise ValueError(f"a model named {name!r} is already registered")
        NAMED[name] = _Registered(loader, usage or name)
        return loader

    return decorate


def register_scheme(name: str, usage: str) -> Callable[[SchemeLoader], SchemeLoader]:
    """Register a loader for specs ``name:ARGUMENT``; ``usage`` is shown in error messages."""

    def decorate(loader: SchemeLoader) -> SchemeLoader:
        if name in SCHEMES:
            raise ValueError(f"a model scheme named {name!r} is already registered")
        SCHEMES[name] = _Registered(loader, usage)
        return loader

    return decorate


def register_files(*suffixes: str, usage: str) -> Callable[[PathLoader], PathLoader]:
    """Register a loader for existing files ending in one of ``suffixes`` (like ``".keras"``)."""

    def decorate(loader: PathLoader) -> PathLoader:
        taken = [s for s in suffixes if s.lower() in SUFFIXES]
        if taken:
            raise ValueError(f"model files {taken[0]!r} already have a loader")
        for suffix in suffixes:
            SUFFIXES[suffix.lower()] = loader
        _FILE_USAGES.append(usage)
        return loader

    return decorate


def register_folder(usage: str) -> Callable[[PathLoader], PathLoader]:
    """Register the loader of existing folders (one source may claim them)."""

    def decorate(loader: PathLoader) -> PathLoader:
        if FOLDERS:
            raise ValueError("model folders already have a loader")
        FOLDERS.append(loader)
        _FOLDER_USAGES.append(usage)
        return loader

    return decorate


def available_schemes() -> list[str]:
    """Every accepted form of a model spec, for help texts and error messages."""
    return [
        *(r.usage for r in NAMED.values()),
        *(r.usage for r in SCHEMES.values()),
        *_FOLDER_USAGES,
        *_FILE_USAGES,
        ENTRY_POINT_USAGE,
    ]
