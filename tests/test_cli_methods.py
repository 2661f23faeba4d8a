"""Every attribution method through the explanation workflow: ``igkit explain --method NAME
--option KEY=VALUE``, ``explain-dataset`` and ``igkit.explain`` give what ``igkit.attribute``
gives, and a wrong option is refused before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
from test_runner_support import MODEL_MODULE, RUN_OPTIONS, make_images, write_model_module

import igkit
from igkit.cli import main

OPTIONS = ["--input-size", "16", "--trust"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = write_model_module(tmp_path_factory.mktemp("method_models"))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def _inputs(folder: Path) -> np.ndarray:
    import dataclasses

    loaded = dataclasses.replace(igkit.load_model(f"{MODEL_MODULE}:tiny", trust=True),
                                 input_size=(16, 16))
    return igkit.model_inputs(sorted(folder.glob("*.png")), loaded)


@pytest.mark.parametrize(("method", "options", "kwargs"), [
    ("saliency", [], {}),
    ("grad_cam", ["--option", "layer=conv"], {"layer": "conv"}),
    ("occlusion", ["--option", "window=4,4", "--option", "stride=4,4"],
     {"window": (4, 4), "stride": (4, 4)}),
    ("smoothgrad", ["--option", "samples=4"], {"samples": 4}),
])
def test_explain_with_any_method_writes_what_attribute_gives(
    tmp_path: Path, model_dir: Path, method: str, options: list[str], kwargs: dict
) -> None:
    make_images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "imgs"), "--out", str(out), "--model",
                 f"{MODEL_MODULE}:tiny", *OPTIONS, "--method", method, *options,
                 "--output", "raw"]) == 0
    with np.load(out / "img000.npz", allow_pickle=False) as data:
        stored = data["attributions"]
        assert np.isnan(float(data["relative_error"]))
    module = __import__(MODEL_MODULE)
    x = _inputs(tmp_path / "imgs")
    expected = igkit.attribute(module.tiny().eval(), x, method, output="raw", channel_axis=1,
                               input_range=(0.0, 1.0), **kwargs).attributions[0]
    np.testing.assert_allclose(stored, np.moveaxis(expected, 0, -1), rtol=1e-5, atol=1e-7)
    assert (out / "img000.png").is_file()


def test_a_wrong_option_is_refused_before_the_model_is_loaded(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_images(tmp_path / "imgs", 1)
    base = ["explain", str(tmp_path / "imgs"), "--model", f"{MODEL_MODULE}:tiny", *OPTIONS]
    assert main([*base, "--out", str(tmp_path / "a"), "--method", "saliency",
                 "--option", "samples=3"]) == 2
    assert "takes no option 'samples'; its options are: abs" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--method", "smoothgrad",
                 "--option", "samples"]) == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--method", "secant",
                 "--option", "layer=conv"]) == 2
    assert "takes its settings as --steps" in capsys.readouterr().err
    for name in "abc":
        assert not (tmp_path / name).exists()


def test_explain_dataset_with_a_method_and_its_options_in_the_store(
    tmp_path: Path, model_dir: Path
) -> None:
    from igkit.runner.store import DatasetStore

    make_images(tmp_path / "imgs", 3)
    store = tmp_path / "store"
    assert main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(store), "--model",
                 f"{MODEL_MODULE}:tiny", *RUN_OPTIONS, "--method", "grad_cam",
                 "--option", "layer=conv"]) == 0
    opened = DatasetStore.open(store)
    assert opened.settings["method"] == "grad_cam"
    assert opened.settings["method_options"] == [["layer", "conv"]]
    module = __import__(MODEL_MODULE)
    x = _inputs(tmp_path / "imgs")
    expected = igkit.attribute(module.tiny().eval(), x, "grad_cam", layer="conv",
                               output=igkit.load_model(f"{MODEL_MODULE}:tiny",
                                                       trust=True).default_output,
                               channel_axis=1, input_range=(0.0, 1.0)).attributions
    for i in range(3):
        np.testing.assert_allclose(opened.attributions(i), np.moveaxis(expected[i], 0, -1),
                                   rtol=1e-5, atol=1e-7)
