"""Tests of igkit.viz: exact checks of the pure transforms, smoke tests of the figures.

Synthetic data only (a smooth image and attribution blobs); no model is run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from viz_data import SIZE, _attributions, _image, _result, _trace

import igkit.viz as viz

# ------------------------------------------------------------------------------------ layout


def test_to_hwc_moves_channels_last() -> None:
    chw = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    hwc = viz.to_hwc(chw, channel_axis=0)
    assert hwc.shape == (3, 4, 2)
    np.testing.assert_array_equal(hwc[..., 1], chw[1])
    assert viz.to_hwc(np.zeros((3, 4))).shape == (3, 4, 1)
    np.testing.assert_array_equal(viz.to_hwc(hwc, channel_axis=-1), hwc)
    with pytest.raises(ValueError, match="one image"):
        viz.to_hwc(np.zeros((1, 2, 3, 4)))


def test_attribution_mask_sums_magnitudes_over_channels() -> None:
    attr = np.array([[[1.0, -2.0, 0.5]], [[-0.25, 0.0, 0.0]]])  # (2, 1, 3)
    np.testing.assert_array_equal(viz.attribution_mask(attr), [[3.5], [0.25]])
    # Any channel count, including one given as 2-D.
    np.testing.assert_array_equal(viz.attribution_mask(np.array([[-1.0, 2.0]])), [[1.0, 2.0]])
    five = np.full((2, 2, 5), -1.0)
    np.testing.assert_array_equal(viz.attribution_mask(five), np.full((2, 2), 5.0))


# ------------------------------------------------------------------- polarity and clipping


def test_polarity_keeps_one_sign_as_magnitudes() -> None:
    a = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    np.testing.assert_array_equal(viz.polarity(a, "positive"), [0, 0, 0, 1, 3])
    np.testing.assert_array_equal(viz.polarity(a, "negative"), [2, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(viz.polarity(a, "both"), [2, 0.5, 0, 1, 3])
    with pytest.raises(ValueError, match="polarity"):
        viz.polarity(a, "up")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("percentile", "expected"),
    [
        # magnitudes 4, 3, 2, 1 hold 40 %, 70 %, 90 %, 100 % of the mass cumulatively
        (0.0, 4.0),
        (0.1, 4.0),
        (40.0, 4.0),
        (40.5, 3.0),
        (70.0, 3.0),
        (70.5, 2.0),
        (90.0, 2.0),
        (95.0, 1.0),
        (100.0, 1.0),
    ],
)
def test_cumulative_threshold_by_share_of_mass(percentile: float, expected: float) -> None:
    values = np.array([[1.0, -4.0], [2.0, -3.0]])  # signs and layout do not matter
    assert viz.cumulative_threshold(values, percentile) == expected


def test_cumulative_threshold_edge_cases() -> None:
    assert viz.cumulative_threshold(np.zeros(5), 50.0) == 0.0
    assert viz.cumulative_threshold(np.array([]), 50.0) == 0.0
    # Ties: the threshold is the tied value once the mass is reached inside the tie.
    assert viz.cumulative_threshold(np.array([1.0, 1.0, 1.0, 1.0]), 60.0) == 1.0


def test_mass_thresholds_and_clip_by_mass() -> None:
    values = np.array([4.0, -3.0, -2.0, 1.0])
    # clip_above=35 -> threshold at 65 % of mass -> 3; clip_below=10 -> at 90 % -> 2.
    assert viz.mass_thresholds(values, clip_above=35.0, clip_below=10.0) == (2.0, 3.0)
    clipped = viz.clip_by_mass(values, clip_above=35.0, clip_below=10.0)
    np.testing.assert_array_equal(clipped, [3.0, -3.0, -2.0, 0.0])
    # The defaults saturate only the top 0.1 % of mass (here: nothing) and drop nothing.
    np.testing.assert_array_equal(viz.clip_by_mass(values), values)
    with pytest.raises(ValueError, match="clip_above"):
        viz.mass_thresholds(values, clip_above=101.0)
    with pytest.raises(ValueError, match="must not exceed"):
        viz.mass_thresholds(values, clip_above=50.0, clip_below=60.0)


def test_linear_transform_endpoints() -> None:
    # Total 12.5; cumulative shares 32, 56, 76, 92, 100 %.
    values = np.array([4.0, 3.0, 2.5, 2.0, 1.0])
    # clip_above=50 -> share 50 % -> high = 3; clip_below=20 -> share 80 % -> low = 2.
    out = viz.linear_transform(values, clip_above=50.0, clip_below=20.0, lower_end=0.2)
    np.testing.assert_allclose(out, [1.0, 1.0, 0.6, 0.2, 0.0], rtol=0, atol=1e-12)
    signed = viz.linear_transform(-values, clip_above=50.0, clip_below=20.0, lower_end=0.2)
    np.testing.assert_allclose(signed, -out, rtol=0, atol=1e-12)
    # lower_end = 0: the ramp starts at 0 at the low threshold.
    zero_end = viz.linear_transform(values, clip_above=50.0, clip_below=20.0, lower_end=0.0)
    np.testing.assert_allclose(zero_end, [1.0, 1.0, 0.5, 0.0, 0.0], rtol=0, atol=1e-12)


def test_linear_transform_keeps_zero_black() -> None:
    values = np.array([0.0, 1.0, 2.0])
    # clip_below=0 -> low is the minimum, 0; zero attribution still maps to 0, not lower_end.
    out = viz.linear_transform(values, clip_above=99.9, clip_below=0.0, lower_end=0.2)
    np.testing.assert_allclose(out, [0.0, 0.6, 1.0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="lower_end"):
        viz.linear_transform(values, lower_end=1.0)


# ------------------------------------------------------------------ morphology and outlines


def test_morphological_cleanup_fills_gaps_and_removes_specks() -> None:
    mask = np.zeros((13, 13))
    mask[2:7, 2:7] = 1.0
    mask[4, 4] = 0.0  # a one-pixel hole inside the block
    mask[10, 10] = 1.0  # an isolated speck, three pixels away from block and edge
    cleaned = viz.morphological_cleanup(mask)
    expected = np.zeros((13, 13))
    expected[2:7, 2:7] = 1.0
    np.testing.assert_array_equal(cleaned, expected)


def test_component_outlines_are_exactly_the_square_border() -> None:
    mask = np.zeros((10, 10))
    mask[2:7, 3:8] = 1.0
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:7, 3:8] = True
    expected[3:6, 4:7] = False
    out = viz.component_outlines(mask)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, expected)
    assert out.sum() == 16


def test_component_outlines_include_image_edge_and_fill_holes() -> None:
    mask = np.zeros((6, 6))
    mask[0:4, 0:4] = 1.0
    mask[1:3, 1:3] = 0.0  # a hole: filled, so only the outer border is drawn
    expected = np.zeros((6, 6), dtype=bool)
    expected[0:4, 0:4] = True
    expected[1:3, 1:3] = False
    np.testing.assert_array_equal(viz.component_outlines(mask), expected)


def test_component_outlines_keep_components_by_mass() -> None:
    mask = np.zeros((12, 12))
    mask[1:6, 1:6] = 1.0  # mass 25
    mask[8:10, 8:10] = 1.0  # mass 4; 25 / 29 = 86 %
    big = np.zeros((12, 12), dtype=bool)
    big[1:6, 1:6] = True
    big[2:5, 2:5] = False
    small = np.zeros((12, 12), dtype=bool)
    small[8:10, 8:10] = True  # a 2 x 2 block is all border
    np.testing.assert_array_equal(viz.component_outlines(mask, percentage=80.0), big)
    np.testing.assert_array_equal(viz.component_outlines(mask, percentage=90.0), big | small)
    np.testing.assert_array_equal(
        viz.component_outlines(mask, percentage=90.0, max_components=1), big
    )
    assert not viz.component_outlines(np.zeros((5, 5))).any()


# ------------------------------------------------------------------------------ sign masks


def test_sign_masks_put_positive_in_red_and_negative_in_blue() -> None:
    attr = np.zeros((2, 3, 5))  # five channels
    attr[0, 0] = [1.0, 0.5, 0.0, 0.0, 0.5]  # positive mass 2
    attr[0, 1] = [0.5, 0.0, 0.0, 0.0, 0.0]  # positive mass 0.5
    attr[1, 2] = [-1.0, -1.0, -1.0, -1.0, 0.0]  # negative mass 4
    attr[1, 0] = [-1.0, 0.0, 0.0, 0.0, 0.0]  # negative mass 1
    masks = viz.sign_masks(attr)
    assert masks.positive.shape == masks.negative.shape == (2, 3, 3)
    np.testing.assert_array_equal(masks.positive[..., 1:], 0.0)
    np.testing.assert_array_equal(masks.negative[..., :2], 0.0)
    np.testing.assert_allclose(masks.positive[..., 0], [[1.0, 0.25, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(masks.negative[..., 2], [[0.0, 0.0, 0.0], [0.25, 0.0, 1.0]])
    np.testing.assert_array_equal(masks.combined, masks.positive + masks.negative)
    shared = viz.sign_masks(attr, shared_scale=True)
    np.testing.assert_allclose(shared.positive[0, :, 0], [0.5, 0.125, 0.0])


def test_sign_mask_power_rescaling_is_monotone() -> None:
    attr = np.linspace(0.0, 1.0, 11).reshape(1, 11, 1)
    previous = None
    for power in (1.0, 2.0, 3.0):
        red = viz.sign_masks(attr, power=power).positive[0, :, 0]
        np.testing.assert_allclose(red, np.linspace(0.0, 1.0, 11) ** (1.0 / power))
        assert np.all(np.diff(red) > 0)  # order of pixels kept
        if previous is not None:
            assert np.all(red[1:-1] > previous[1:-1])  # weak pixels brightened
            assert red[0] == 0.0 and red[-1] == 1.0  # ends fixed
        previous = red
    with pytest.raises(ValueError, match="power"):
        viz.sign_masks(attr, power=0.0)


# ------------------------------------------------------------------------------------ RGBY


def test_rgby_to_rgb_blends_yellow_into_red_and_green() -> None:
    img = np.array([[[0.2, 0.1, 0.3, 0.4], [0.9, 0.9, 0.0, 0.4]]])  # (1, 2, 4) floats in [0, 1]
    rgb = viz.rgby_to_rgb(img)
    np.testing.assert_allclose(rgb[0, 0], [0.6, 0.3, 0.3])
    np.testing.assert_allclose(rgb[0, 1], [1.0, 1.0, 0.0])  # clipped
    np.testing.assert_allclose(viz.rgby_to_rgb(img, green_boost=2.0)[0, 0], [0.6, 0.4, 0.3])
    as_uint8 = np.array([[[255, 0, 51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(viz.rgby_to_rgb(as_uint8)[0, 0], [1.0, 0.2, 0.2])
    with pytest.raises(ValueError, match=r"\(H, W, 4\)"):
        viz.rgby_to_rgb(np.zeros((2, 2, 3)))


def test_channel_views_colour_each_channel() -> None:
    img = np.array([[[0.2, 0.4, 0.6, 0.8]]])
    red, green, blue, yellow = viz.channel_views(img)
    np.testing.assert_allclose(red[0, 0], [0.2, 0.0, 0.0])
    np.testing.assert_allclose(green[0, 0], [0.0, 0.4, 0.0])
    np.testing.assert_allclose(blue[0, 0], [0.0, 0.0, 0.6])
    np.testing.assert_allclose(yellow[0, 0], [0.8, 0.8, 0.0])


# --------------------------------------------------------------------- display and overlay


def test_normalize_and_image_for_display() -> None:
    np.testing.assert_allclose(viz.normalize_for_display(np.array([2.0, 4.0, 6.0])), [0, 0.5, 1])
    np.testing.assert_array_equal(viz.normalize_for_display(np.full(3, 7.0)), np.zeros(3))
    np.testing.assert_allclose(
        viz.normalize_for_display(np.array([0.0, 5.0, 20.0]), clip_percentile=50.0), [0, 1, 1]
    )
    np.testing.assert_allclose(
        viz.normalize_for_display(np.array([-1.0, 0.0, 3.0]), (0.0, 2.0)), [0, 0, 1]
    )
    np.testing.assert_allclose(viz.image_for_display(np.array([0, 51, 255], np.uint8)), [0, .2, 1])
    dark = np.array([0.0, 0.1, 0.2])  # stays dark: [0, 1] is its range
    np.testing.assert_allclose(viz.image_for_display(dark), dark)
    np.testing.assert_allclose(viz.image_for_display(np.array([-1.0, 0.0, 1.0])), [0, 0.5, 1])


def test_overlay_with_a_colour_uses_the_mask_as_opacity() -> None:
    img = np.full((1, 3, 3), 0.5)
    mask = np.array([[0.0, 0.5, 1.0]])
    out = viz.overlay(img, mask, (0.0, 1.0, 0.0), alpha=0.4)
    np.testing.assert_allclose(out[0, 0], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out[0, 1], [0.35, 0.65, 0.35])
    np.testing.assert_allclose(out[0, 2], [0.2, 0.8, 0.2])  # 0.4 * image + 0.6 * green


def test_overlay_with_a_colormap_blends_image_over_the_coloured_mask() -> None:
    img = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    mask = np.array([[2.0, 6.0]])  # min-max scaled to 0 and 1: black and white in "gray"
    out = viz.overlay(img, mask, "gray", alpha=0.4)
    np.testing.assert_allclose(out[0, 0], [0.4, 0.0, 0.0])
    np.testing.assert_allclose(out[0, 1], [0.6, 0.6, 1.0])
    # A shared value range is used as given: here both values lie below it, so both are black.
    shared = viz.overlay(img, mask, "gray", alpha=0.4, value_range=(6.0, 12.0))
    np.testing.assert_allclose(shared, 0.4 * img)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(img, mask, "gray", alpha=1.5)


def test_gradvis_image_paints_only_the_chosen_polarity() -> None:
    img = np.full((4, 4, 3), 0.5)
    attr = np.zeros((4, 4, 3))
    attr[0, 0] = 1.0
    attr[3, 3] = -1.0
    pos = viz.gradvis_image(img, attr, mode="positive", alpha=0.0)
    np.testing.assert_allclose(pos[0, 0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(pos[3, 3], [0.5, 0.5, 0.5])
    both = viz.gradvis_image(img, attr, mode="both", alpha=0.0)
    np.testing.assert_allclose(both[3, 3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(both[1, 1], [0.5, 0.5, 0.5])


# --------------------------------------------------------------------------- Riemann sums


def test_riemann_sums() -> None:
    def line(x: np.ndarray) -> np.ndarray:
        return 3.0 * x + 1.0

    for rule in ("midpoint", "trapezoid"):
        assert viz.riemann_sum(line, 4, rule) == pytest.approx(2.5, abs=1e-14)
    assert viz.riemann_sum(lambda x: x, 4, "left") == pytest.approx(3 / 8)
    assert viz.riemann_sum(lambda x: x, 4, "right") == pytest.approx(5 / 8)
    nodes, weights = viz.riemann_nodes("trapezoid", 2)
    np.testing.assert_allclose(nodes, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(weights, [0.25, 0.5, 0.25])
    sin_pi = viz.riemann_sum(lambda x: np.sin(np.pi * x), 64, "midpoint")
    assert sin_pi == pytest.approx(2 / np.pi, rel=1e-3)


# ------------------------------------------------------------------------------- imports


def test_importing_igkit_viz_imports_no_matplotlib_scipy_or_framework() -> None:
    code = textwrap.dedent(
        """
        import sys
        import igkit
        before = set(sys.modules)
        import igkit.viz
        added = set(sys.modules) - before
        heavy = ("matplotlib", "scipy", "skimage", "torch", "tensorflow", "jax", "keras")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
        new = sorted(m for m in added if m.split(".")[0] in heavy)
        print("matplotlib" in sys.modules, new, [m for m in loaded if m.startswith("matpl")])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False [] []", out.stdout + out.stderr


# -------------------------------------------------------------------------------- figures


def _check_png(fig: object, path: Path) -> None:
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_ig_panel_with_result_states_class_score_and_completeness(tmp_path: Path) -> None:
    img, attr = _image(), _attributions()
    path = tmp_path / "sub" / "panel.png"
    fig = viz.ig_panel(img, _result(attr), np.zeros_like(img), label="balloon", path=path)
    _check_png(fig, path)
    title = fig.get_suptitle()
    assert "balloon (class 7)" in title and "score 0.93" in title
    assert "completeness OK" in title and "0.4%" in title
    failed = viz.ig_panel(img, _result(attr, converged=False), None)
    assert "completeness NOT met" in failed.get_suptitle()


def test_figures_refuse_channels_first_unless_told(tmp_path: Path) -> None:
    img, attr = _image(), _attributions()
    chw_img, chw_attr = np.moveaxis(img, -1, 0), np.moveaxis(attr, -1, 0)
    with pytest.raises(ValueError, match="channels-first"):
        viz.ig_panel(chw_img, chw_attr, np.zeros_like(chw_img))
    path = tmp_path / "chw.png"
    fig = viz.ig_panel(chw_img, chw_attr, np.zeros_like(chw_img), channel_axis=0, path=path)
    _check_png(fig, path)


def test_every_figure_renders_a_png(tmp_path: Path) -> None:
    img, attr = _image(), _attributions()
    black = np.zeros_like(img)
    rng = np.random.default_rng(0)
    grads = rng.standard_normal(img.shape)
    rgby = (255 * np.clip(rng.random((SIZE, SIZE, 4)), 0, 1)).astype(np.uint8)
    calls = {
        "ig_panel": lambda p: viz.ig_panel(img, attr, black, title="t", path=p),
        "sign": lambda p: viz.sign_mask_figure(img, attr, black, power=2.0, path=p),
        "sign_rgby": lambda p: viz.sign_mask_figure(rgby, attr, path=p),
        "gradvis": lambda p: viz.gradvis_figure(img, attr, grads, path=p),
        "gradvis_outlines": lambda p: viz.gradvis_figure(
            img, attr, polarity="both", clip_above=95.0, clip_below=28.0, cleanup=True,
            outlines=True, path=p,
        ),
        "path_strip": lambda p: viz.path_strip(black, img, (0.0, 0.5, 1.0), path=p),
        "saturation": lambda p: viz.saturation_plots(_trace(), path=p),
        "riemann": lambda p: viz.riemann_illustration(steps=4, path=p),
        "riemann_fn": lambda p: viz.riemann_illustration(lambda x: x**2, 3, path=p),
        "compare": lambda p: viz.compare_grid(
            img, [attr, -attr, 2 * attr], ["a", "b", "a long column title to wrap"],
            shared_scale=True, path=p,
        ),
        "compare_lists": lambda p: viz.compare_grid(
            [img, img[::-1]], [_result(attr), attr[::-1]], rows=("image", "overlay"), path=p,
        ),
        "rgby": lambda p: viz.rgby_figure(rgby, green_boost=2.0, title="cells", path=p),
    }
    for name, draw in calls.items():
        path = tmp_path / f"{name}.png"
        _check_png(draw(path), path)


def test_saturation_plots_need_a_path_trace() -> None:
    with pytest.raises(ValueError, match="return_path"):
        viz.saturation_plots(_result(_attributions()))


def test_gradvis_shows_any_two_methods_side_by_side() -> None:
    import torch

    import igkit
    from igkit.viz.panels import keras_gradvis_figure

    rng = np.random.default_rng(0)
    image = rng.random((16, 16, 3))
    fig = keras_gradvis_figure(image, rng.normal(size=(16, 16, 3)), rng.normal(size=(16, 16, 3)),
                               names=("SmoothGrad", "XRAI"))
    titles = [ax.get_title() for ax in fig.axes]
    assert "SmoothGrad" in titles and "XRAI" in titles
    # A Result names its own column: the method that made it.
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    chw = image.transpose(2, 0, 1).astype(np.float32)
    res = igkit.attribute(net, chw[None], "saliency")
    fig = keras_gradvis_figure(chw, res, rng.normal(size=(3, 16, 16)), channel_axis=0)
    assert "saliency" in [ax.get_title() for ax in fig.axes]
