"""Turn a model spec string (``--model``) into a :class:`~igkit.models.spec.LoadedModel`.

Accepted specs, tried in this order:

1. a registered name: ``efficientnet_lite0`` (the default, PyTorch);
2. a local path: a SavedModel folder, a ``.keras`` / ``.h5`` Keras file, or a PyTorch file
   (TorchScript, or a pickled whole model);
3. ``SCHEME:ARGUMENT`` for a registered scheme: ``keras:NAME`` (``keras.applications`` or
   ``keras:efficientnet_lite0``), ``torchvision:NAME``, ``timm:NAME``, ``tfhub:HANDLE_OR_PATH``;
4. ``package.module:function``: an importable function returning a model or a LoadedModel.

Every loader puts the network's input normalisation inside the returned callable, so the model
takes RGB pixels in [0, 1] and baselines are pixel images.

**Trust.** Formats that execute code of their own when loaded or called need ``trust=True``
(``--trust``): TorchScript files (their compiled ``forward`` and ``__setstate__`` can read and
write any file), SavedModel folders and TF-Hub modules (their graphs can, e.g. with
``tf.io.write_file``), pickled PyTorch models, Keras files with ``Lambda`` layers or custom
objects, and ``package.module:function`` (importing and calling Python code). Without it they are
refused before anything is read beyond what identifies the format, with a one-line message that
names the format, why it can run code and the fix. Each source declares this when it registers
(``runs_code``, see :mod:`~igkit.models.sources._registry`) and the dispatch below checks it, so
no loader decides alone. Pure data stays allowed: the built-in models, ``keras:NAME``,
``torchvision:NAME`` and ``timm:NAME`` with their library's own code, state dicts read with
``weights_only=True`` (``--weights``), and Keras files without Python code, read in Keras's safe
mode. When pretrained weights would have to be downloaded and that fails (no network), the error
says how to point at local weights instead (``weights=``, a local SavedModel folder, or the
framework's cache folder).

Errors a user can fix (unknown name, missing file, missing package, a format that needs trust, a
damaged or misfitting weights file) are raised as :class:`ModelLoadError`, a ``ValueError`` with
a one-line message.

Layout: each source is one module of this package that registers its loaders in
:mod:`~igkit.models.sources._registry` when imported (:data:`_SOURCES` lists them; their order
is the order of the forms in :func:`available_schemes`). This module only dispatches a spec to
them. No module here imports a framework at import time: each loader imports its own.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from igkit.models.sources._registry import (
    ENTRY_POINTS,
    FOLDERS,
    NAMED,
    SCHEMES,
    SUFFIXES,
    LoadOptions,
    ModelLoadError,
    RunsCode,
    _Registered,
    available_schemes,
    register_entry_point,
    register_files,
    register_folder,
    register_model,
    register_scheme,
)
from igkit.models.sources.entry_point import looks_like_entry_point
from igkit.models.spec import LoadedModel

__all__ = [
    "LoadOptions",
    "ModelLoadError",
    "RunsCode",
    "available_schemes",
    "load_model",
    "register_entry_point",
    "register_files",
    "register_folder",
    "register_model",
    "register_scheme",
]

#: The source modules, imported below so that they register themselves.
_SOURCES = (
    "builtin",
    "keras",
    "saved_model",
    "tfhub",
    "torchvision",
    "timm",
    "torch_file",
    "entry_point",
)
for _source in _SOURCES:
    importlib.import_module(f"{__name__}.{_source}")


def load_model(
    spec: str, *, trust: bool = False, weights: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring for the accepted forms).

    Args:
        spec: The model spec, e.g. ``"efficientnet_lite0"``, ``"keras:Xception"``,
            ``"tfhub:/models/inception_v1"``, ``"model.keras"`` or ``"mypkg.models:build"``.
        trust: Allow formats that execute code of their own when loaded or called
            (TorchScript, SavedModels, TF-Hub modules, pickled torch models, Keras ``Lambda``
            layers and custom objects, ``package.module:function``). Only for files from a
            source you trust.
        weights: A local weights file for loaders that would otherwise download pretrained
            weights (the default model, ``keras:``, ``torchvision:``, ``timm:``, functions that
            take a ``weights`` argument).

    Returns:
        The model with its framework, layout, input size, preprocessing and labels.

    Raises:
        ModelLoadError: For anything the user can fix, with a one-line message; without
            ``trust``, for a format that runs code, before it is loaded.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"empty model spec; use one of: {', '.join(available_schemes())}")
    spec = spec.strip()
    weights_path = None
    if weights is not None:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise ModelLoadError(f"weights file {str(weights)!r} does not exist")
    options = LoadOptions(trust=bool(trust), weights=weights_path)
    for resolve in _RESOLVERS:
        loaded = resolve(spec, options)
        if loaded is not None:
            return loaded
    raise ModelLoadError(f"unknown model {spec!r}; use one of: {', '.join(available_schemes())}")


# ---------------------------------------------------------------------------------- resolution


def _run(
    registered: _Registered,
    argument: object,
    options: LoadOptions,
    spec: str,
    *loader_args: object,
) -> LoadedModel:
    """The one place where trust is checked: refuse a source that runs code, then load."""
    if not options.trust:
        risk = registered.code_risk(argument)
        if risk is not None:
            raise ModelLoadError(risk.refusal(spec))
    return registered.loader(*loader_args, options)


def _by_name(spec: str, options: LoadOptions) -> LoadedModel | None:
    registered = NAMED.get(spec)
    return None if registered is None else _run(registered, spec, options, spec)


def _by_path(spec: str, options: LoadOptions) -> LoadedModel | None:
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    return _load_path(path, options)


def _by_scheme(spec: str, options: LoadOptions) -> LoadedModel | None:
    scheme, sep, argument = spec.partition(":")
    registered = SCHEMES.get(scheme) if sep else None
    if registered is None:
        return None
    if not argument:
        raise ModelLoadError(
            f"model spec {spec!r} lacks a name after the colon ({registered.usage})"
        )
    return _run(registered, argument, options, spec, argument)


def _by_entry_point(spec: str, options: LoadOptions) -> LoadedModel | None:
    if not ENTRY_POINTS or not looks_like_entry_point(spec):
        return None
    return _run(ENTRY_POINTS[0], spec, options, spec, spec)


def _missing_path(spec: str, options: LoadOptions) -> LoadedModel | None:
    """A spec that looks like a file or folder but does not exist gets that error, not 'unknown'."""
    path = Path(spec)
    if os.sep in spec or "/" in spec or path.suffix.lower() in SUFFIXES:
        raise ModelLoadError(f"model file or folder {spec!r} does not exist")
    return None


_RESOLVERS: tuple[Callable[[str, LoadOptions], LoadedModel | None], ...] = (
    _by_name,
    _by_path,
    _by_scheme,
    _by_entry_point,
    _missing_path,
)


def _load_path(path: Path, options: LoadOptions) -> LoadedModel:
    if path.is_dir():
        if not FOLDERS:
            raise ModelLoadError(f"{path} is a folder, and no model source reads folders")
        return _run(FOLDERS[0], path, options, str(path), path)
    registered = SUFFIXES.get(path.suffix.lower())
    if registered is None:
        known = ", ".join(sorted(SUFFIXES))
        raise ModelLoadError(
            f"{path}: unknown model file type {path.suffix or '(no suffix)'!r}; igkit reads "
            f"{known} files and SavedModel folders"
        )
    return _run(registered, path, options, str(path), path)
