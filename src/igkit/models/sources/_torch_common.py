"""PyTorch pieces shared by the torch sources (torchvision, timm, files, entry points).

torch is imported inside the functions, when a torch model is loaded.
"""

from __future__ import annotations

import functools
import pickle
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
    """A state dict from ``path``, read with ``weights_only=True`` (no arbitrary pickle)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{path} is not a plain state dict (it pickles Python objects, which igkit does not "
            "unpickle for --weights); save model.state_dict() instead"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelLoadError(f"{path}: not a PyTorch weights file ({first_line(exc)})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
            break
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state


def load_state(net: Any, path: Path, spec: str) -> None:
    """Load the state dict in ``path`` into ``net``; a misfit names the spec and the file."""
    try:
        net.load_state_dict(read_state_dict(path))
    except RuntimeError as exc:
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
