"""No model code runs without --trust, and hostile weights never run at all.

Each test builds a real hostile file (tests/hostile.py) whose payload creates a marker file, runs
``igkit explain`` through :func:`igkit.cli.main`, and checks the exit status, the one
``igkit: error:`` line and whether the marker exists: absent when igkit refused, present when the
user passed --trust (they asked for the code to run).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import hostile
import numpy as np
import pytest
from PIL import Image

from igkit.cli import main
from igkit.models.sources import (
    LoadOptions,
    ModelLoadError,
    RunsCode,
    load_model,
    register_scheme,
)
from igkit.models.sources import _registry as registry

FAST = ["--steps", "4", "--no-figures", "--input-size", "8", "--output", "raw"]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("igkit: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _explain(image: Path, out: Path, *extra: str) -> int:
    return main(["explain", str(image), "--out", str(out), *FAST, *extra])


# --------------------------------------------------------------------------------- TorchScript


@pytest.mark.parametrize("when", ["forward", "setstate"])
def test_torchscript_runs_only_with_trust(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    import torch  # noqa: F401 - installed by make test: a regression fails, not skips
    marker = tmp_path / "written_by_torchscript"
    model = hostile.torchscript_writing(tmp_path / "model.pt", marker, when)
    out = tmp_path / "out"

    assert _explain(image, out, "--model", str(model)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "TorchScript file" in line and "--trust" in line and str(model) in line
    assert "source you trust" in line
    assert not marker.exists() and not out.exists()

    # The Python API refuses the same way, and the marker is still absent.
    with pytest.raises(ModelLoadError, match="TorchScript"):
        load_model(str(model))
    assert not marker.exists()

    assert _explain(image, out, "--model", str(model), "--trust") == 0
    capsys.readouterr()
    assert marker.exists()  # the user vouched for the file: its code ran
    assert (out / "summary.csv").is_file()


# ---------------------------------------------------------------------------------- SavedModel


@pytest.mark.parametrize("prefix", ["", "tfhub:"])
def test_saved_model_runs_only_with_trust(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips
    marker = tmp_path / "written_by_saved_model"
    folder = hostile.saved_model_writing(tmp_path / "saved", marker)
    out = tmp_path / "out"
    spec = f"{prefix}{folder}"

    assert _explain(image, out, "--model", spec) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert ("SavedModel" in line or "TF-Hub module" in line) and "tf.io.write_file" in line
    assert "--trust" in line
    assert not marker.exists() and not out.exists()

    assert _explain(image, out, "--model", spec, "--trust") == 0
    capsys.readouterr()
    assert marker.exists()


# --------------------------------------------------------------------------------------- Keras


def test_keras_lambda_runs_only_with_trust(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips
    marker = tmp_path / "written_by_lambda"
    model = hostile.keras_lambda_writing(tmp_path / "lambda.keras", marker)
    out = tmp_path / "out"

    assert _explain(image, out, "--model", str(model)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "Lambda layer" in line and "--trust" in line
    assert not marker.exists() and not out.exists()

    assert _explain(image, out, "--model", str(model), "--trust") == 0
    capsys.readouterr()
    assert marker.exists()


def test_keras_custom_objects_need_trust(tmp_path: Path) -> None:
    import keras
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips

    registered = keras.saving.get_custom_objects()
    before = set(registered)
    try:

        @keras.saving.register_keras_serializable(package="igkit_test")
        class Doubles(keras.layers.Layer):
            def call(self, x):  # type: ignore[no-untyped-def]
                return x * 2.0

        @keras.saving.register_keras_serializable(package="igkit_test")
        def identity(x):  # type: ignore[no-untyped-def]
            return x

        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(Doubles()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, activation=identity)(x))
        model.save(tmp_path / "custom.keras")
        with pytest.raises(ModelLoadError) as info:
            load_model(str(tmp_path / "custom.keras"))
        message = str(info.value)
        assert "custom objects (igkit_test>Doubles, igkit_test>identity)" in message
        assert "--trust" in message
        # Registered in this process, so with trust the file loads.
        assert load_model(str(tmp_path / "custom.keras"), trust=True).framework == "tensorflow"
    finally:
        for key in set(registered) - before:
            registered.pop(key)


def test_keras_file_without_code_needs_no_trust(tmp_path: Path) -> None:
    import keras
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3)(inputs)
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)).save(tmp_path / "plain.keras")
    loaded = load_model(str(tmp_path / "plain.keras"))
    assert loaded.framework == "tensorflow"


# ----------------------------------------------------------------------- pickled whole models


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_pickled_model_with_a_payload_is_refused_unread(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    import torch
    marker = tmp_path / "written_by_pickle"
    path = tmp_path / "model.pth"
    torch.save(hostile.Payload(marker), path, _use_new_zipfile_serialization=fmt == "zip")
    assert _explain(image, tmp_path / "out", "--model", str(path)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "pickled PyTorch model" in line and "open" in line and "--trust" in line
    assert not marker.exists()


# --------------------------------------------------------------------- package.module:function


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_entry_point_is_not_imported_without_trust(
    tmp_path: Path, image: Path, module_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch  # noqa: F401 - installed by make test: a regression fails, not skips
    name = f"igkit_hostile_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "written_at_import"
    spec = hostile.module_writing(module_dir, name, marker)
    try:
        assert _explain(image, tmp_path / "out", "--model", spec) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "Python function to import and call" in line and "--trust" in line
        assert not marker.exists() and name not in sys.modules

        assert _explain(image, tmp_path / "out", "--model", spec, "--trust") == 0
        capsys.readouterr()
        assert marker.exists()
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "spec,trust,expected",
    [
        ("sys:exit", False, "--trust"),
        ("sys:exit", True, "calling exit() tried to exit the program"),
        ("os:getcwd", True, "returned a str, not a torch.nn.Module"),
        ("math:sqrt", True, "needs the argument(s) x"),
        ("math:pi", True, "'pi' is a float, not a function"),
        ("os.path:join", True, "needs the argument(s) a"),
        ("igkit_no_such_package_xyz:build", False, "unknown model"),
    ],
)
def test_entry_points_that_are_not_models(
    image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    trust: bool,
    expected: str,
) -> None:
    args = ["--model", spec, *(["--trust"] if trust else [])]
    assert _explain(image, tmp_path / "out", *args) == 2  # never 0: nothing was explained
    line = _one_error_line(capsys.readouterr().err)
    assert expected in line
    if trust and expected != "unknown model":
        assert "package.module:function" in line  # says what was expected


def test_entry_point_errors_at_import_and_call_are_one_line(module_dir: Path) -> None:
    name = f"igkit_broken_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{name}.py").write_text(
        "import sys\n"
        "def fails():\n"
        "    raise RuntimeError('no GPU here\\nsecond line')\n"
        "def exits():\n"
        "    sys.exit(3)\n"
    )
    (module_dir / f"{name}_import.py").write_text("raise SystemExit(0)\n")
    try:
        with pytest.raises(ModelLoadError, match=r"fails\(\) raised RuntimeError: no GPU here"):
            load_model(f"{name}:fails", trust=True)
        with pytest.raises(ModelLoadError, match=r"SystemExit: 3"):
            load_model(f"{name}:exits", trust=True)
        with pytest.raises(ModelLoadError, match="importing it tried to exit the program"):
            load_model(f"{name}_import:anything", trust=True)
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}_import", None)


# ---------------------------------------------------------------- --weights of the built-ins


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, object]:
    import torch  # noqa: F401 - installed by make test: a regression fails, not skips

    from igkit.models import efficientnet_lite as effnet

    return effnet.TorchEfficientNetLite0().state_dict()


_WEIGHT_PROBLEMS = {
    "truncated": "truncated or damaged",
    "truncated_legacy": "truncated or damaged",
    "garbage": "neither a torch.save zip archive nor a valid pickle",
    "empty": "the file is empty",
    "payload_pickle": "names io.open",
    "payload_zip": "names io.open",
    "payload_legacy": "names io.open",
    "wrong_zip": "without the entries torch.save writes",
    "misfit": "1 missing",
    "not_tensors": "not tensors",
    "nan": "NaN or Inf",
    "tensor": "does not hold a state dict",
    "npz_truncated": "not a readable .npz",
    "npz_object": "not a readable .npz",
}


@pytest.mark.parametrize("kind", hostile.WEIGHT_KINDS)
@pytest.mark.parametrize("trust", [False, True])
def test_hostile_weights_for_the_default_model(
    tmp_path: Path,
    image: Path,
    capsys: pytest.CaptureFixture[str],
    lite0_state: dict[str, object],
    kind: str,
    trust: bool,
) -> None:
    marker = tmp_path / "written_by_weights"
    suffix = ".npz" if kind.startswith("npz") else ".pth"
    weights = hostile.hostile_weights(kind, tmp_path / f"w_{kind}{suffix}", marker, lite0_state)
    out = tmp_path / "out"
    args = ["--weights", str(weights), *(["--trust"] if trust else [])]  # --weights is data only
    assert _explain(image, out, *args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(weights) in line, line
    assert _WEIGHT_PROBLEMS[kind] in line, line
    assert not marker.exists() and not out.exists()


def test_misfit_weights_name_the_keys_and_shapes(
    tmp_path: Path, lite0_state: dict[str, object]
) -> None:
    path = hostile.hostile_weights("misfit", tmp_path / "w.pth", tmp_path / "m", lite0_state)
    first, second = list(lite0_state)[:2]
    with pytest.raises(ModelLoadError) as info:
        load_model("efficientnet_lite0", weights=path)
    message = str(info.value)
    assert f"1 missing ('{first}')" in message
    assert "1 unexpected ('not_in_the_model.weight')" in message
    assert f"1 of the wrong shape ({second}:" in message


def test_good_weights_still_load(tmp_path: Path, lite0_state: dict[str, object]) -> None:
    import torch
    path = tmp_path / "fine.pth"
    torch.save({"state_dict": lite0_state}, path)  # a checkpoint wrapping the state dict
    loaded = load_model("efficientnet_lite0", weights=path)
    first = next(iter(lite0_state))
    np.testing.assert_array_equal(
        loaded.model.state_dict()[first].numpy(), lite0_state[first].numpy()
    )


def test_hostile_weights_for_the_keras_port(tmp_path: Path, lite0_state: dict[str, object]) -> None:
    import tensorflow  # noqa: F401 - installed by make test: a regression fails, not skips
    marker = tmp_path / "written_by_weights"
    for kind in ("payload_zip", "misfit", "truncated"):
        path = hostile.hostile_weights(kind, tmp_path / f"{kind}.pth", marker, lite0_state)
        with pytest.raises(ModelLoadError, match=rf"{kind}\.pth"):
            load_model("keras:efficientnet_lite0", weights=path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["payload_zip", "npz_object", "npz_truncated", "misfit", "empty"])
def test_hostile_weights_for_the_microscopy_model(tmp_path: Path, kind: str) -> None:
    import torch  # noqa: F401 - installed by make test: a regression fails, not skips

    from igkit.microscopy import model as cells

    good = cells.build_model(cells.shipped_weights()).state_dict()
    marker = tmp_path / "written_by_weights"
    suffix = ".npz" if kind.startswith("npz") else ".pth"
    path = hostile.hostile_weights(kind, tmp_path / f"w{suffix}", marker, good)
    with pytest.raises(ModelLoadError) as info:
        load_model("hpa_synthetic", weights=path, trust=True)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert _WEIGHT_PROBLEMS[kind] in message
    assert not marker.exists()


# -------------------------------------------------------------------------------- the registry


def test_every_source_declares_whether_it_runs_code() -> None:
    declared = {
        **{f"name {k}": r for k, r in registry.NAMED.items()},
        **{f"scheme {k}": r for k, r in registry.SCHEMES.items()},
        **{f"files {k}": r for k, r in registry.SUFFIXES.items()},
        "folders": registry.FOLDERS[0],
        "entry points": registry.ENTRY_POINTS[0],
    }
    pure = {k for k, r in declared.items() if r.runs_code is False}
    assert pure == {
        "name efficientnet_lite0",
        "name hpa_synthetic",
        "scheme keras",
        "scheme torchvision",
        "scheme timm",
    }
    # The rest decide per argument (what the file is) without running it.
    assert all(callable(r.runs_code) for k, r in declared.items() if k not in pure)
    with pytest.raises(TypeError, match="runs_code"):
        register_scheme("igkit-test-undeclared", "x:Y")(lambda a, o: None)  # type: ignore[call-arg]


def test_the_dispatch_refuses_before_the_loader_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    risk = RunsCode(what="a test format", why="it is code", instead="use data")

    def loader(argument: str, options: LoadOptions) -> object:
        calls.append(argument)
        raise ModelLoadError("loaded")

    monkeypatch.setitem(registry.SCHEMES, "igkittest", registry._Registered(loader, "t:X", risk))
    with pytest.raises(ModelLoadError) as info:
        load_model("igkittest:thing")
    assert calls == []
    assert str(info.value) == (
        "igkittest:thing is a test format, which can run code: it is code. igkit runs a model's "
        "own code only with --trust (trust=True in Python): pass it only for models from a "
        "source you trust; or use data"
    )
    with pytest.raises(ModelLoadError, match="loaded"):
        load_model("igkittest:thing", trust=True)
    assert calls == ["thing"]
