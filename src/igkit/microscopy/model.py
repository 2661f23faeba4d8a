"""The small multi-label CNN for synthetic HPA cells, and its shipped weights.

Like the HPA notebook's model it takes red, green and blue (yellow is dropped before the model),
returns one logit per compartment and is read through a sigmoid: a cell may sit in several
compartments at once. Pixel normalisation is inside the network, so it takes pixels in [0, 1]
and a black baseline is black pixels (the :class:`igkit.models.spec.LoadedModel` contract).

The weights are a plain ``.npz`` of float32 arrays (no pickle), written by
``scripts/train_microscopy.py``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from igkit.microscopy.synthetic import CLASSES, MODEL_CHANNELS

if TYPE_CHECKING:
    import torch

__all__ = [
    "INPUT_SIZE",
    "WEIGHTS_FILE",
    "build_model",
    "load_state",
    "save_state",
    "shipped_weights",
]

#: Side of the square images the network was trained on.
INPUT_SIZE = 64
#: The shipped weights, in ``igkit/data``.
WEIGHTS_FILE = "hpa_synthetic.npz"
_WIDTHS = (16, 32, 48, 64)


def build_model(weights: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """The network in eval mode; with ``weights`` (an ``.npz`` state) loaded, else random.

    Architecture: four 3x3 conv + SiLU stages (16, 32, 48, 64 channels) with 2x2 max pooling
    between them, then global average and max pooling concatenated and one linear layer to
    :data:`~igkit.microscopy.synthetic.CLASSES` logits. SiLU rather than ReLU keeps the IG path
    integrand smooth, so few steps meet the completeness check. About 47 k parameters.
    """
    import torch
    from torch import nn

    class PixelNorm(nn.Module):
        """Per-channel ``(x - mean) / std`` with the statistics as buffers (saved with it)."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
            self.register_buffer("std", torch.ones(1, channels, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    class CellNet(nn.Module):
        """RGB cell image in [0, 1], ``(N, 3, H, W)`` -> compartment logits ``(N, K)``."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = PixelNorm(len(MODEL_CHANNELS))
            layers: list[nn.Module] = []
            previous = len(MODEL_CHANNELS)
            for k, width in enumerate(_WIDTHS):
                if k:
                    layers.append(nn.MaxPool2d(2))
                layers += [nn.Conv2d(previous, width, 3, padding=1), nn.SiLU()]
                previous = width
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(2 * previous, len(CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.features(self.norm(x))
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
            return self.head(pooled)

    net = CellNet()
    if weights is not None:
        load_state(net, weights)
    return net.eval()


def shipped_weights() -> Path:
    """Path of the weights that ship with igkit (``igkit/data/hpa_synthetic.npz``)."""
    return Path(str(resources.files("igkit") / "data" / WEIGHTS_FILE))


def save_state(net: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Write ``net``'s state dict as a compressed ``.npz`` of float32 arrays (atomically)."""
    from igkit.io.writers import write_npz

    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    write_npz(path, state)


def load_state(net: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load an ``.npz`` state dict into ``net`` (strict: every key must match).

    Raises:
        ValueError: If the file is missing, not an npz, or does not fit the network.
    """
    import torch

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the weights ({exc})") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit the network ({first})") from None
