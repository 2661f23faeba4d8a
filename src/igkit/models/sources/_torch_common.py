"""PyTorch pieces shared by the torch sources (torchvision, timm, files, entry points).

torch is imported inside the functions, when a torch model is loaded.
"""

from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from igkit.models.sources._common import (
    DEFAULT_INPUT_SIZE,
    first_line,
    is_network_failure,
    stdout_to_stderr,
)
from igkit.models.sources._registry import LoadOptions, ModelLoadError
from igkit.models.spec import LoadedModel


@functools.cache
def pixel_normalizer() -> type:
    """``nn.Module`` computing ``net((x - mean) / std)`` (defined on first use: lazy torch)."""
    import torch
    from torch import nn

    class PixelNormalized(nn.Module):
        """Takes RGB pixels in [0, 1]; normalises per channel, then runs the network."""

        def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    return PixelNormalized


def torch_eval(net: Any) -> Any:
    """``net`` in eval mode with its parameters frozen."""
    net.eval()
    # A fixed function to explain; input gradients still flow. (Per parameter, because
    # ScriptModules do not support Module.requires_grad_.)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def torch_classifier(
    net: Any,
    *,
    name: str,
    description: str,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    labels: list[str] | None = None,
) -> LoadedModel:
    """A torch image classifier taking NCHW pixels, centre-cropped, read through a softmax."""
    return LoadedModel(
        model=torch_eval(net),
        framework="torch",
        channels_first=True,
        input_size=input_size,
        preprocess="center_crop",
        labels=labels,
        name=name,
        default_output="softmax",
        description=description,
    )


def read_state_dict(path: Path) -> Mapping[str, Any]:
    """A state dict from ``path``, read as data only: ``torch.load(weights_only=True)``, or
    ``numpy.load(allow_pickle=False)`` for ``.npz``. Nothing in the file runs.

    A checkpoint holding the state dict under ``state_dict``, ``model`` or
    ``model_state_dict`` is unwrapped. Every problem becomes a one-line ModelLoadError naming the
    file: a pickle that names Python code, a damaged, truncated or empty file, a zip that
    ``torch.save`` did not write, something other than a dict.
    """
    import torch

    if path.suffix.lower() == ".npz":
        state: Any = _read_npz(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            raise ModelLoadError(_weights_problem(path, exc)) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
            break
    if not isinstance(state, Mapping):
        raise ModelLoadError(
            f"{path} does not hold a state dict (it holds a {type(state).__name__}); save "
            "model.state_dict()"
        )
    return state


def _read_npz(path: Path) -> dict[str, Any]:
    """The arrays of an ``.npz`` as tensors; object arrays (pickles) are refused by numpy."""
    import numpy as np
    import torch

    try:
        # The file is opened here so that it is closed even when numpy fails on it.
        with open(path, "rb") as file:
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array, not an .npz archive of named arrays")
            with archive:
                return {key: torch.from_numpy(np.array(archive[key])) for key in archive.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and OS errors for a bad file
        raise ModelLoadError(
            f"{path}: not a readable .npz of weight arrays ({first_line(exc)})"
        ) from exc


_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+)")
_GLOBAL_NAME = re.compile(r"GLOBAL ([\w.]+)")


def _weights_problem(path: Path, exc: BaseException) -> str:
    """One line saying what is wrong with a weights file that ``weights_only`` cannot read."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, pickle.UnpicklingError) and "unsupported global" in lowered:
        names = ", ".join(sorted(set(_GLOBAL_NAME.findall(text)))) or "Python objects"
        return (
            f"{path} is not a plain state dict: it is a pickle that names {names}, which "
            "unpickling would import and call (it can run any code), so igkit does not unpickle "
            "it; --weights is read as data only, even with --trust: save model.state_dict() "
            "instead"
        )
    size = path.stat().st_size if path.is_file() else -1
    if size == 0:
        problem = "the file is empty"
    elif "central directory" in lowered or "eof" in lowered or isinstance(exc, EOFError):
        problem = "the file is truncated or damaged (it ends too early)"
    elif any(s in lowered for s in ("not in a subdirectory", "failed locating", "hasrecord")):
        problem = "it is a zip archive without the entries torch.save writes (ARCHIVE/data.pkl)"
    elif isinstance(exc, pickle.UnpicklingError):
        detail = _UNPICKLER_DETAIL.search(text)
        reason = detail.group(1).strip() if detail else first_line(exc)
        problem = f"it is neither a torch.save zip archive nor a valid pickle ({reason})"
    else:
        problem = first_line(exc)
    return (
        f"{path}: not a readable PyTorch weights file: {problem}; pass a file written by "
        "torch.save(model.state_dict(), path)"
    )


def state_misfit(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """What keeps ``state`` from loading into a network whose state dict is ``expected``.

    None when every key is there with a tensor of the right shape and finite values; otherwise
    one line: missing and unexpected keys, values that are not tensors, wrong shapes, NaN/Inf.
    """
    import torch

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    not_tensors = [k for k in expected if k in state and not isinstance(state[k], torch.Tensor)]
    shapes = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k in expected
        if k in state
        and isinstance(state[k], torch.Tensor)
        and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_some(unexpected)})")
    if not_tensors:
        kinds = ", ".join(f"{k}: {type(state[k]).__name__}" for k in not_tensors[:3])
        problems.append(f"{len(not_tensors)} not tensors ({kinds})")
    if shapes:
        problems.append(f"{len(shapes)} of the wrong shape ({'; '.join(shapes[:2])})")
    if problems:
        return (
            f"the state dict does not fit the model ({len(expected)} tensors expected): "
            + ", ".join(problems)
        )
    bad = [
        k
        for k in expected
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())
    ]
    if bad:
        return f"{len(bad)} tensor(s) hold NaN or Inf ({_some(bad)})"
    return None


def _some(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:3])
    return shown + (", ..." if len(keys) > 3 else "")


def load_state(net: Any, path: Path, spec: str) -> None:
    """Load the state dict in ``path`` into ``net``; a misfit names the spec, file and keys."""
    state = read_state_dict(path)
    problem = state_misfit(net.state_dict(), state)
    if problem is not None:
        raise ModelLoadError(f"{spec}: the weights in {path} cannot be used: {problem}")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise ModelLoadError(
            f"{spec}: the weights in {path} do not fit the model ({first_line(exc)})"
        ) from exc


def pretrained_or_local(
    spec: str,
    options: LoadOptions,
    *,
    blank: Callable[[], Any],
    pretrained: Callable[[], Any],
    cache_advice: str,
) -> Any:
    """The network: ``blank()`` with the ``--weights`` file loaded, else ``pretrained()``.

    A failed download of the pretrained weights says how to do without the network:
    ``--weights``, or ``cache_advice`` (where the library looks for cached weights).
    """
    if options.weights is not None:
        net = blank()
        load_state(net, options.weights, spec)
        return net
    try:
        with stdout_to_stderr():
            return pretrained()
    except Exception as exc:  # noqa: BLE001 - urllib / OSError / RuntimeError / hub errors vary
        if is_network_failure(exc):
            raise ModelLoadError(
                f"{spec} needs its pretrained weights, which are not cached and cannot be "
                f"downloaded (no network); pass --weights PATH to a local state dict, or "
                f"{cache_advice}"
            ) from exc
        raise ModelLoadError(f"{spec}: cannot load the weights ({first_line(exc)})") from exc
