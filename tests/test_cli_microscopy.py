"""``igkit explain`` on multi-channel, multi-label examples and ``igkit demo --microscopy``."""

from __future__ import annotations

from pathlib import Path

import matplotlib  # noqa: F401 - installed by make test: a regression fails, not skips
import numpy as np
import pytest
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
from PIL import Image

from igkit.cli import main
from igkit.io.channels import save_channel_files
from igkit.microscopy.synthetic import CLASSES, SEEDS, make_cell

# Secant pieces are complete to rounding: 8 of them are "completeness within" at tol 0.01.
FAST = ["--steps", "8", "--method", "secant", "--batch-size", "32"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--microscopy", "--out", str(out), *FAST])
    return out, code, buffer.getvalue()


@pytest.fixture
def cells_dir(tmp_path) -> Path:
    folder = tmp_path / "cells"
    for index in (0, 1):
        image, _, _ = make_cell(SEEDS["evaluation"], index)
        save_channel_files(folder, f"c{index}", image)
    return folder


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("igkit: error: ")
    return err[0]


def test_demo_writes_cells_and_explains_every_predicted_label(demo_run):
    out, code, printed = demo_run
    assert code == 0, printed
    inputs = sorted(p.name for p in (out / "inputs").iterdir())
    assert len(inputs) == 4 * (len(CLASSES) + 1)
    assert all(
        name.endswith(("_red.png", "_green.png", "_blue.png", "_yellow.png")) for name in inputs
    )
    assert "green protein in nucleoli" in printed and "above 0.4:" in printed
    assert "completeness within" in printed
    npzs = sorted(out.glob("cell-*_*.npz"))
    assert len(npzs) >= len(CLASSES)
    rgby = sorted(out.glob("*_rgby.png"))
    assert len(rgby) == len(CLASSES) + 1
    for npz in npzs:
        assert npz.with_suffix(".png").is_file()
    with np.load(npzs[0], allow_pickle=False) as data:
        assert data["attributions"].shape == (64, 64, 3)
        assert data["image"].shape == (64, 64, 4)
        assert data["channels"].tolist() == ["red", "green", "blue", "yellow"]
        assert data["model_channels"].tolist() == ["red", "green", "blue"]
        assert str(data["output"]) == "sigmoid" and float(data["threshold"]) == 0.4
        gap = float(data["score"]) - float(data["baseline_score"])
        assert abs(float(data["attributions"].sum()) - gap) <= abs(float(data["delta"])) + 1e-5
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("example,source,model,target,label")
    assert len(rows) == 1 + len(npzs)


def test_demo_predicts_the_true_compartment_of_each_single_label_cell(demo_run):
    out, _, printed = demo_run
    rows = [line.split(",") for line in (out / "summary.csv").read_text().splitlines()[1:]]
    labels = {row[4] for row in rows}
    assert labels >= set(CLASSES) - {"mitochondria"}, labels


def test_explain_with_channel_files_targets_and_tiff_stack(tmp_path, cells_dir, capsys):
    import tifffile
    image, _, _ = make_cell(SEEDS["evaluation"], 5)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(
        stack,
        np.round(image * 65535).astype(np.uint16).transpose(2, 0, 1),
        photometric="minisblack",
    )
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(cells_dir / "c0_red.png"),
            str(stack),
            "--model",
            "hpa_synthetic",
            "--channels",
            "red,green,blue,yellow",
            "--target",
            "nucleoli",
            "--target",
            "0",
            "--no-figures",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "c0_0.npz", "c0_1.npz", "igkit-run.json", "stack_0.npz", "stack_1.npz", "summary.csv",
    ]  # fmt: skip


def test_channel_order_and_selection_reach_the_model(tmp_path, cells_dir, capsys):
    # Files named by other stain names, given in another order: the model still gets r, g, b.
    folder = tmp_path / "renamed"
    image, _, _ = make_cell(SEEDS["evaluation"], 0)
    save_channel_files(
        folder, "c0", image[..., [2, 3, 0, 1]], ["dapi", "er", "tub", "prot"], "{channel}-{id}.png"
    )
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert (
        main(
            [
                "explain",
                str(folder),
                "--model",
                "hpa_synthetic",
                "--channels",
                "dapi,er,tub,prot",
                "--channel-files",
                "{channel}-{id}.png",
                "--model-channels",
                "tub,prot,dapi",
                "--target",
                "0",
                "--no-figures",
                "--out",
                str(out_a),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "explain",
                str(cells_dir / "c0_blue.png"),
                "--model",
                "hpa_synthetic",
                "--target",
                "0",
                "--multilabel",
                "--threshold",
                "0.99",
                "--no-figures",
                "--out",
                str(out_b),
                *FAST,
            ]
        )
        == 0
    )
    capsys.readouterr()
    with np.load(out_a / "c0_0.npz") as a, np.load(out_b / "c0_0.npz") as b:
        np.testing.assert_allclose(a["attributions"], b["attributions"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", [], "c1_yellow.png: missing channel 'yellow' of example 'c1'"),
        ("sizes", [], "channel of size 7x5 but"),
        ("none", ["--model-channels", "red,green"], "takes 3 channels (red,green,blue), not 2"),
        ("none", ["--model-channels", "red,green,blue,yellow"], "takes 3 channels"),
        ("none", ["--model-channels", "red,green,cyan"], "'cyan' is not one of the example's"),
        ("none", ["--channels", "red,red"], "channel 'red' is listed twice"),
        ("none", ["--channel-files", "{id}.png"], "lacks {channel}"),
        ("none", ["--target", "golgi"], "not a class of hpa_synthetic"),
        ("none", ["--threshold", "x"], "'x' is not a number"),
        ("none", ["--augment", "rot90"], "--augment does not apply"),
    ],
)
def test_usage_errors_print_one_line_and_write_nothing(
    tmp_path, cells_dir, capsys, setup, args, message
):
    if setup == "missing":
        (cells_dir / "c1_yellow.png").unlink()
    elif setup == "sizes":
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(cells_dir / "c1_green.png")
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(cells_dir),
            "--model",
            "hpa_synthetic",
            "--multilabel",
            "--out",
            str(out),
            *args,
            *FAST,
        ]
    )
    assert code == 2
    assert message in _error_line(capsys)
    assert not out.exists()


def test_a_model_without_declared_channels_that_fails_on_the_count(tmp_path, cells_dir, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(cells_dir),
            "--model",
            "efficientnet_lite0",
            "--channels",
            "red,green,blue,yellow",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 2
    assert "running it on 4 channels (red,green,blue,yellow)" in _error_line(capsys)
    assert not out.exists()
