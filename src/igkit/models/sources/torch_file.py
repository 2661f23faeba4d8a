"""PyTorch model files: TorchScript archives, and pickled whole models only with ``trust``.

A state dict (weights without the architecture) is refused with advice to pass it as
``--weights`` beside an architecture.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from igkit.models.sources._common import first_line, no_weights, require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, register_files
from igkit.models.sources._torch_common import torch_classifier
from igkit.models.spec import LoadedModel


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with ``<name>/constants.pkl`` and ``<name>/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


@register_files(".pt", ".pth", ".ts", ".torchscript", usage="a TorchScript .pt file")
def load_torch_file(path: Path, options: LoadOptions) -> LoadedModel:
    """A TorchScript file; a pickled ``nn.Module`` only with ``trust``; state dicts are refused."""
    no_weights(options, f"the PyTorch file {path}")
    torch = require("torch", "torch", "a PyTorch model file")
    if is_torchscript(path):
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
        kind = "TorchScript"
    else:
        net, kind = _unpickle_module(torch, path, options), "pickled PyTorch model (trusted)"
    return torch_classifier(net, name=path.stem, description=f"{kind} {path}")


def _unpickle_module(torch: ModuleType, path: Path, options: LoadOptions) -> Any:
    """The ``nn.Module`` pickled in ``path``: refused unless ``options.trust``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():
            # Not a refused global but a broken or foreign file.
            raise ModelLoadError(f"{path}: not a PyTorch model file ({first_line(exc)})") from exc
        if not options.trust:
            raise ModelLoadError(
                f"{path} is a pickled PyTorch model; unpickling can run arbitrary code, so "
                "igkit refuses it by default: pass --trust (trust=True) if you trust the "
                "file, or export it as TorchScript (torch.jit.script(model).save(path))"
            ) from exc
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
