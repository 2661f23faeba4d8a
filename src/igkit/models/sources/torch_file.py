"""PyTorch model files: TorchScript archives and pickled whole models, both only with ``trust``.

Both formats run code of their own: a TorchScript archive holds compiled methods (``forward``,
``__setstate__``...) that run when it is loaded and called and can read and write any file (e.g.
``torch.from_file(path, shared=True)``), and unpickling a whole model imports and calls whatever
Python the file names. The registration's probe (:func:`torch_file_risk`) tells them apart from
pure data without running either, so the dispatch refuses them before loading. A state dict
(weights without the architecture) is pure data; it is refused here with advice to pass it as
``--weights`` beside an architecture.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from igkit.models.sources._common import first_line, no_weights, require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, RunsCode, register_files
from igkit.models.sources._torch_common import torch_classifier
from igkit.models.spec import LoadedModel

TORCHSCRIPT = RunsCode(
    what="a TorchScript file",
    why="its compiled methods (forward, __setstate__ and any other) run when it is loaded and "
    "called, and can read and write any file",
    instead="save model.state_dict() and pass it with --weights to a built-in, torchvision: or "
    "timm: architecture",
)


def pickled_model(names: tuple[str, ...] = ()) -> RunsCode:
    """The risk of a pickled object; ``names`` are the globals it imports, if known."""
    named = f" (here {', '.join(names)})" if names else ""
    return RunsCode(
        what="a pickled PyTorch model",
        why=f"unpickling imports and calls the Python code the file names{named}",
        instead=TORCHSCRIPT.instead,
    )


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with ``<name>/constants.pkl`` and ``<name>/code/``."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False  # a damaged zip: the loader says what is wrong with it
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def torch_file_risk(path: Path) -> RunsCode | None:
    """TorchScript, a pickled object (code), or None: a state dict, tensors or a broken file.

    Runs nothing from the file: TorchScript is recognised by its zip listing, a pickle by
    torch's ``weights_only`` unpickler, which refuses (without calling) every global it does not
    allow.
    """
    if is_torchscript(path):
        return TORCHSCRIPT
    try:
        import torch
    except ImportError:
        return None  # the loader says that torch is missing
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _refused_global(exc):
            return pickled_model(tuple(sorted(set(_GLOBAL.findall(str(exc))))))
    except Exception:  # noqa: BLE001, S110 - damaged or foreign: the loader reports it
        pass
    return None


def _refused_global(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "unsupported global" in text or ("weights only load failed" in text and "global" in text)


@register_files(
    ".pt",
    ".pth",
    ".ts",
    ".torchscript",
    usage="a TorchScript .pt file",
    runs_code=torch_file_risk,
)
def load_torch_file(path: Path, options: LoadOptions) -> LoadedModel:
    """A TorchScript file or a pickled ``nn.Module`` (the dispatch checked ``trust``)."""
    no_weights(options, f"the PyTorch file {path}")
    torch = require("torch", "torch", "a PyTorch model file")
    if is_torchscript(path):
        if not options.trust:  # the dispatch refused it already; never load it untrusted
            raise ModelLoadError(TORCHSCRIPT.refusal(str(path)))
        try:
            # torch 2.13 deprecates TorchScript in favour of torch.export, but TorchScript files
            # are what users have; the warning would only be noise to them.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - a damaged archive raises RuntimeError et al.
            raise ModelLoadError(
                f"{path}: the TorchScript file cannot be loaded ({first_line(exc)})"
            ) from exc
        kind = "TorchScript (trusted)"
    else:
        net, kind = _unpickle_module(torch, path, options), "pickled PyTorch model (trusted)"
    return torch_classifier(net, name=path.stem, description=f"{kind} {path}")


def _unpickle_module(torch: ModuleType, path: Path, options: LoadOptions) -> Any:
    """The ``nn.Module`` pickled in ``path``; data-only files are read with ``weights_only``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _refused_global(exc):
            # Not a refused global but a broken or foreign file.
            raise ModelLoadError(f"{path}: not a PyTorch model file ({first_line(exc)})") from exc
        if not options.trust:  # the dispatch refused it already; never unpickle it untrusted
            raise ModelLoadError(pickled_model().refusal(str(path))) from exc
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - missing classes, damaged data, ...
            raise ModelLoadError(
                f"{path}: cannot unpickle the model ({first_line(exc2)})"
            ) from exc2
    except Exception as exc:  # noqa: BLE001 - not a torch file at all
        raise ModelLoadError(f"{path}: not a PyTorch model file ({first_line(exc)})") from exc
    if isinstance(obj, Mapping):
        raise ModelLoadError(
            f"{path} holds weights without the architecture (a state dict); pass the "
            f"architecture as the model and this file as --weights, e.g. --model "
            f"torchvision:resnet50 --weights {path}"
        )
    if not isinstance(obj, torch.nn.Module):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj
