"""``igkit evaluate``: methods x metrics over images and stores, the same table the library
gives, refusals before any work, and the report page."""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
from test_runner_support import MODEL_MODULE, RUN_OPTIONS, make_images, write_model_module

import igkit
from igkit.cli import main
from igkit.metrics import deletion

OPTIONS = [o for o in RUN_OPTIONS if o != "--no-progress"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = write_model_module(tmp_path_factory.mktemp("eval_models"))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def _table(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_writes_every_method_and_metric_and_agrees_with_the_library(
    tmp_path: Path, model_dir: Path
) -> None:
    make_images(tmp_path / "imgs", 3)
    out = tmp_path / "ev"
    code = main(["evaluate", str(tmp_path / "imgs"), "--out", str(out), "--model",
                 f"{MODEL_MODULE}:tiny", *OPTIONS, "--methods", "ig,saliency",
                 "--metrics", "deletion,insertion", "--batch-size", "2"])
    assert code == 0
    rows = _table(out)
    summary = [r for r in rows if r["level"] == "summary"]
    methods = {"integrated_gradients", "saliency", "random", "sobel"}
    assert {(r["method"], r["metric"]) for r in summary} == {
        (m, k) for m in methods for k in ("deletion", "insertion")
    }
    assert all(r["n"] == "3" for r in summary)
    examples = [r for r in rows if r["level"] == "example"]
    assert len(examples) == 3 * 4 * 2
    for name in ("metrics.parquet", "curves.png", "summary.png", "igkit-evaluate.json"):
        assert (out / name).is_file()
    # The command's number is the library's: the same inputs, attributions and metric.
    module = __import__(MODEL_MODULE)
    model = module.tiny().eval()
    loaded = dataclasses.replace(igkit.load_model(f"{MODEL_MODULE}:tiny", trust=True),
                                 input_size=(16, 16))
    x = igkit.model_inputs(sorted((tmp_path / "imgs").glob("*.png")), loaded)
    output = loaded.default_output
    attr = igkit.attribute(model, x, "saliency", output=output, batch_size=2,
                           channel_axis=1, input_range=(0.0, 1.0)).attributions
    direct = deletion(model, x, attr, channel_axis=1, output=output, batch_size=2)
    got = sorted((int(r["example"]), float(r["mean"])) for r in examples
                 if r["method"] == "saliency" and r["metric"] == "deletion")
    np.testing.assert_allclose([v for _, v in got], direct.values, rtol=1e-5)


def test_evaluate_reuses_a_stores_attributions_and_refuses_another_models_store(
    tmp_path: Path, model_dir: Path
) -> None:
    make_images(tmp_path / "imgs", 2)
    store = tmp_path / "store"
    assert main(["explain-dataset", str(tmp_path / "imgs"), "--out", str(store), "--model",
                 f"{MODEL_MODULE}:tiny", *RUN_OPTIONS]) == 0
    common = ["--model", f"{MODEL_MODULE}:tiny", *OPTIONS, "--methods", "ig",
              "--metrics", "deletion", "--no-controls"]
    assert main(["evaluate", str(store), "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["evaluate", str(tmp_path / "imgs"), "--out", str(tmp_path / "b"),
                 *common]) == 0
    a = {r["example"]: float(r["mean"]) for r in _table(tmp_path / "a") if r["level"] == "example"}
    b = {r["example"]: float(r["mean"]) for r in _table(tmp_path / "b") if r["level"] == "example"}
    assert a.keys() == b.keys() and len(a) == 2
    np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5)
    # The store's attributions explain the tiny model, not the slow one: refused.
    assert main(["evaluate", str(store), "--out", str(tmp_path / "c"), "--model",
                 f"{MODEL_MODULE}:slow", *OPTIONS, "--methods", "ig"]) == 2
    assert not (tmp_path / "c").exists()


def test_mistakes_are_refused_before_any_work(tmp_path: Path, model_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    make_images(tmp_path / "imgs", 1)
    base = ["evaluate", str(tmp_path / "imgs"), "--model", f"{MODEL_MODULE}:tiny", *OPTIONS]
    assert main([*base, "--out", str(tmp_path / "o1"), "--methods", "ig,salience"]) == 2
    assert "unknown method 'salience'" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o2"), "--metrics", "delete"]) == 2
    assert "metric 'delete': unknown metric; choose one of" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o2"), "--metrics", "pointing_game"]) == 2
    assert "needs ground-truth masks" in capsys.readouterr().err
    mine = tmp_path / "o3"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own table\n", encoding="utf-8")
    assert main([*base, "--out", str(mine), "--methods", "saliency"]) == 2
    assert (mine / "metrics.csv").read_text(encoding="utf-8") == "my own table\n"
    for folder in ("o1", "o2"):
        assert not (tmp_path / folder).exists()


def test_report_of_an_evaluation(tmp_path: Path, model_dir: Path) -> None:
    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "ev"
    assert main(["evaluate", str(tmp_path / "imgs"), "--out", str(out), "--model",
                 f"{MODEL_MODULE}:tiny", *OPTIONS, "--methods", "saliency",
                 "--metrics", "deletion,insertion"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "deletion (lower is better)" in page and "insertion (higher is better)" in page
    assert "<td>saliency</td>" in page and "<td>sobel</td>" in page
    assert (tmp_path / "rep" / "img" / "curves.png").is_file()


def test_microscopy_cells_with_masks_give_the_localisation_metrics(tmp_path: Path) -> None:
    from igkit.metrics import mask_share
    from igkit.microscopy.demo import write_cells

    cells = write_cells(tmp_path / "cells", 3)
    out = tmp_path / "ev"
    assert main(["evaluate", str(tmp_path / "cells"), "--out", str(out), "--model",
                 "hpa_synthetic", "--channels", "red,green,blue,yellow", "--masks",
                 str(tmp_path / "cells" / "masks"), "--methods", "saliency",
                 "--metrics", "mask_share,pointing_game", "--no-figures", "--output", "raw"]) == 0
    rows = [r for r in _table(out) if r["level"] == "example"]
    assert {r["metric"] for r in rows} == {"mask_share", "pointing_game"}
    assert len(rows) == 3 * 3 * 2  # saliency, random, sobel
    # The number for the first cell is the library's on the same map and mask.
    first = [r for r in rows if r["example"] == "0" and r["method"] == "saliency"
             and r["metric"] == "mask_share"][0]
    loaded = igkit.load_model("hpa_synthetic")
    x = loaded.to_model_layout(
        np.stack([np.moveaxis(np.stack([
            np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
                tmp_path / "cells" / f"cell-0000_{c}.png"), np.float32) / 255.0
            for c in ("red", "green", "blue")]), 0, -1)])
    )
    target = int(first["target"])
    attr = igkit.attribute(loaded, x, "saliency", target=target, output="raw").attributions
    from igkit.microscopy.synthetic import CLASSES

    mask = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        tmp_path / "cells" / "masks" / f"cell-0000_{CLASSES[target]}.png")) > 0
    expected = mask_share(attr, mask[None], channel_axis=1).values[0]
    assert float(first["mean"]) == pytest.approx(expected, rel=1e-5)
    assert cells[0][0] == "cell-0000"


def test_the_sanity_checks_explain_a_model_with_the_runs_ig_settings(model_dir: Path) -> None:
    # MPRT and random logit explain randomised copies of the model; their IG must be the run's
    # (here 8 fixed Gauss-Legendre nodes, not the default method="auto"), or the comparison
    # measures the settings instead of the model. On the model itself it is the run's map.
    from igkit.evaluation.job import EvaluateSettings, Evaluator
    from igkit.workflow.settings import ExplainSettings

    explain = ExplainSettings(model=f"{MODEL_MODULE}:tiny", trust=True, input_size=(16, 16),
                              steps=8, method="gauss_legendre", tol=1.0)
    evaluator = Evaluator(EvaluateSettings(explain, ("integrated_gradients",), ("mprt",)))
    x = np.random.default_rng(0).uniform(0.0, 1.0, (2, 3, 16, 16)).astype(np.float32)
    targets = np.array([0, 1])
    run = evaluator.attributions("integrated_gradients", x, targets)
    again = evaluator._explain_with("integrated_gradients", evaluator.model.model, x, targets)
    np.testing.assert_array_equal(again, run)
    default = igkit.attribute(evaluator.model.model, x, "integrated_gradients", target=targets,
                              output=evaluator.explainer.output, batched=True).attributions
    assert np.abs(np.asarray(default) - run).max() > 0
