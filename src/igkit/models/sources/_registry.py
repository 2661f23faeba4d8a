"""The registry every model source adds itself to, by the kind of spec it reads.

A source module registers its loaders with the decorators below when it is imported:

* :func:`register_model` for a bare name (``efficientnet_lite0``);
* :func:`register_scheme` for a prefix (``torchvision:NAME``);
* :func:`register_files` for local files with given suffixes (``.keras``, ``.pt``...);
* :func:`register_folder` for local folders (a SavedModel);
* :func:`register_entry_point` for ``package.module:function``.

Every registration declares ``runs_code``: whether what the source loads executes code of its
own when loaded or called (TorchScript, SavedModels, pickles, imported functions) or is pure data
read by a library igkit trusts (state dicts read with ``weights_only``, Keras files in safe mode,
the built-in models). :mod:`igkit.models.sources` checks it, in one place, before a loader runs:
without ``trust`` such a source is refused with :meth:`RunsCode.refusal`. The argument is
``False`` (pure data), a :class:`RunsCode` (always runs code) or a probe that looks at the
argument without running anything and returns a :class:`RunsCode` or None (for sources whose
files may be either, such as a ``.pt`` that is TorchScript or a state dict).

:mod:`igkit.models.sources` reads the tables to dispatch a spec; nothing here imports a
framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from igkit.models.spec import LoadedModel

__all__ = [
    "LoadOptions",
    "ModelLoadError",
    "RunsCode",
    "available_schemes",
    "register_entry_point",
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
        trust: Allow formats that run code of their own when loaded or called (TorchScript,
            SavedModels, TF-Hub modules, pickled PyTorch models, Keras ``Lambda`` layers and
            custom objects, ``package.module:function``).
        weights: A local weights file to use instead of downloading pretrained weights.
    """

    trust: bool = False
    weights: Path | None = None


@dataclass(frozen=True)
class RunsCode:
    """Why a model format executes code of its own, for the refusal without ``trust``.

    Attributes:
        what: The format with its article, e.g. ``"a TorchScript file"``.
        why: How its code runs, e.g. ``"its compiled methods run when it is loaded and called"``.
        instead: A way to do without ``--trust``, or ``""``.
    """

    what: str
    why: str
    instead: str = ""

    def refusal(self, spec: str) -> str:
        """The one-line refusal for ``spec``: the format, why it can run code, the fix."""
        instead = f"; or {self.instead}" if self.instead else ""
        return (
            f"{spec} is {self.what}, which can run code: {self.why}. igkit runs a model's own "
            "code only with --trust (trust=True in Python): pass it only for models from a "
            f"source you trust{instead}"
        )


#: A source's declaration: pure data (False), always code (a RunsCode), or a probe of the
#: argument (name, path, handle) that runs nothing and says which.
RunsCodeDeclaration: TypeAlias = Literal[False] | RunsCode | Callable[[Any], RunsCode | None]

NamedLoader = Callable[[LoadOptions], LoadedModel]
SchemeLoader = Callable[[str, LoadOptions], LoadedModel]
PathLoader = Callable[[Path, LoadOptions], LoadedModel]


@dataclass(frozen=True)
class _Registered:
    loader: Callable[..., LoadedModel]
    usage: str
    runs_code: RunsCodeDeclaration

    def code_risk(self, argument: Any) -> RunsCode | None:
        """What code loading ``argument`` would run, or None for pure data (runs nothing)."""
        if self.runs_code is False:
            return None
        if isinstance(self.runs_code, RunsCode):
            return self.runs_code
        return self.runs_code(argument)


def _declared(runs_code: RunsCodeDeclaration) -> RunsCodeDeclaration:
    if runs_code is not False and not isinstance(runs_code, RunsCode) and not callable(runs_code):
        raise TypeError(
            f"runs_code must be False, a RunsCode or a probe returning one, not {runs_code!r}"
        )
    return runs_code


NAMED: dict[str, _Registered] = {}
SCHEMES: dict[str, _Registered] = {}
#: File suffix (lower case, with the dot) -> the source of such files.
SUFFIXES: dict[str, _Registered] = {}
#: The source of local folders, once one registers (at most one).
FOLDERS: list[_Registered] = []
#: The source of ``package.module:function`` specs, once one registers (at most one).
ENTRY_POINTS: list[_Registered] = []
# How the path forms read in help texts: folders first, then files in registration order.
_FOLDER_USAGES: list[str] = []
_FILE_USAGES: list[str] = []
#: The last form of :func:`available_schemes`, read by the dispatch itself.
ENTRY_POINT_USAGE = "package.module:function"


def register_model(
    name: str, usage: str | None = None, *, runs_code: RunsCodeDeclaration
) -> Callable[[NamedLoader], NamedLoader]:
    """Register a loader for the bare model name ``name`` (like ``efficientnet_lite0``).

    ``runs_code`` (required, see the module docstring) is probed with ``name``.
    """

    def decorate(loader: NamedLoader) -> NamedLoader:
        if name in NAMED:
            raise ValueError(f"a model named {name!r} is already registered")
        NAMED[name] = _Registered(loader, usage or name, _declared(runs_code))
        return loader

    return decorate


def register_scheme(
    name: str, usage: str, *, runs_code: RunsCodeDeclaration
) -> Callable[[SchemeLoader], SchemeLoader]:
    """Register a loader for specs ``name:ARGUMENT``; ``usage`` is shown in error messages.

    ``runs_code`` (required, see the module docstring) is probed with ``ARGUMENT``.
    """

    def decorate(loader: SchemeLoader) -> SchemeLoader:
        if name in SCHEMES:
            raise ValueError(f"a model scheme named {name!r} is already registered")
        SCHEMES[name] = _Registered(loader, usage, _declared(runs_code))
        return loader

    return decorate


def register_files(
    *suffixes: str, usage: str, runs_code: RunsCodeDeclaration
) -> Callable[[PathLoader], PathLoader]:
    """Register a loader for existing files ending in one of ``suffixes`` (like ``".keras"``).

    ``runs_code`` (required, see the module docstring) is probed with the file's path.
    """

    def decorate(loader: PathLoader) -> PathLoader:
        taken = [s for s in suffixes if s.lower() in SUFFIXES]
        if taken:
            raise ValueError(f"model files {taken[0]!r} already have a loader")
        registered = _Registered(loader, usage, _declared(runs_code))
        for suffix in suffixes:
            SUFFIXES[suffix.lower()] = registered
        _FILE_USAGES.append(usage)
        return loader

    return decorate


def register_folder(
    usage: str, *, runs_code: RunsCodeDeclaration
) -> Callable[[PathLoader], PathLoader]:
    """Register the loader of existing folders (one source may claim them).

    ``runs_code`` (required, see the module docstring) is probed with the folder's path.
    """

    def decorate(loader: PathLoader) -> PathLoader:
        if FOLDERS:
            raise ValueError("model folders already have a loader")
        FOLDERS.append(_Registered(loader, usage, _declared(runs_code)))
        _FOLDER_USAGES.append(usage)
        return loader

    return decorate


def register_entry_point(
    *, runs_code: RunsCodeDeclaration
) -> Callable[[SchemeLoader], SchemeLoader]:
    """Register the loader of ``package.module:function`` specs (one source may claim them).

    The loader and ``runs_code`` (required, see the module docstring) receive the whole spec.
    """

    def decorate(loader: SchemeLoader) -> SchemeLoader:
        if ENTRY_POINTS:
            raise ValueError("package.module:function specs already have a loader")
        ENTRY_POINTS.append(_Registered(loader, ENTRY_POINT_USAGE, _declared(runs_code)))
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
