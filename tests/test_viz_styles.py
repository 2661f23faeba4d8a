"""The registry of figure styles behind ``explain_figures``, and the figure of the rule a run used.

Synthetic data only; no model is run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from viz_data import _attributions, _image, _result, _trace

import igkit
import igkit.viz as viz
from igkit.viz import registry, styles
from igkit.viz.rules import example_gradient, riemann_figure, rule_sketch

BUILT_IN = ("panel", "signs", "gradvis", "path", "saturation", "riemann", "baselines", "channels",
            "regions")


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Styles registered by a test disappear after it."""
    monkeypatch.setattr(registry, "_STYLES", dict(registry._STYLES))


# ------------------------------------------------------------------------------- registry


def test_built_in_styles_come_from_the_registry_in_drawing_order() -> None:
    assert viz.FIGURE_STYLES == BUILT_IN == styles.figure_styles()
    assert viz.parse_figure_styles("all") == BUILT_IN
    assert registry.get_style("panel").needs == ("baseline",)
    assert registry.get_style("saturation").needs == ("path",)
    assert registry.get_style("baselines").needs == ("model",)
    assert set(registry.get_style("gradvis").needs) == {"gradients", "scipy"}
    assert registry.get_style("signs").summary.startswith("Positive / negative attributions")


def test_a_new_style_is_one_decorated_function(fresh_registry: None, tmp_path: Path) -> None:
    @styles.register_style("outline", needs=("scipy",))
    def outline(c: styles.StyleContext) -> object:
        """Only the outlines of the strongest regions."""
        return viz.gradvis_figure(c.image, c.drawn, outlines=True, title=c.title, label=c.label)

    assert styles.figure_styles() == (*BUILT_IN, "outline")
    assert viz.parse_figure_styles("Outline,panel") == ("panel", "outline")
    assert viz.figure_filename("cat", "outline") == "cat.outline.png"
    img, attr = _image(), _attributions()
    figs = viz.explain_figures(
        img, _result(attr), styles="outline", label="balloon", name="cat", out_dir=tmp_path
    )
    assert list(figs) == ["outline"]
    assert [p.name for p in tmp_path.iterdir()] == ["cat.outline.png"]
    assert "balloon (class 7)" in figs["outline"].get_suptitle()


def test_register_style_refuses_unknown_needs_and_taken_names(fresh_registry: None) -> None:
    with pytest.raises(ValueError, match="unknown need 'gpu'"):
        styles.register_style("fast", needs=("gpu",))
    for name in ("panel", "all", "Loud"):
        with pytest.raises(ValueError, match="taken, reserved or not lower case"):
            styles.register_style(name)


def test_every_need_is_checked_before_anything_is_drawn(
    fresh_registry: None, tmp_path: Path
) -> None:
    drawn: list[str] = []

    @styles.register_style("heavy", needs=("model",))
    def heavy(c: styles.StyleContext) -> object:
        drawn.append("heavy")
        return None

    img, attr = _image(), _attributions()
    out = tmp_path / "none"
    with pytest.raises(ValueError, match="the 'heavy' style runs the model: pass model="):
        viz.explain_figures(img, _result(attr), styles="panel,heavy", out_dir=out)
    with pytest.raises(ValueError, match="return_path=True"):
        viz.explain_figures(img, _result(attr), styles="saturation,heavy", out_dir=out)
    custom = _result(attr, baselines=("custom",))
    with pytest.raises(ValueError, match="'custom' baseline that cannot be rebuilt"):
        viz.explain_figures(img, custom, styles="path", out_dir=out)
    assert not out.exists() and drawn == []
    # A given baseline satisfies the need; plain gradients given stand in for the model.
    figs = viz.explain_figures(
        img, custom, styles="path,gradvis", baseline=np.zeros_like(img),
        gradients=np.random.default_rng(0).standard_normal(img.shape),
    )
    assert list(figs) == ["gradvis", "path"]


def test_explain_figures_draws_the_model_free_styles_from_arrays(tmp_path: Path) -> None:
    img, attr = _image(), _attributions()
    trace = _trace()
    result = _result(attr, method="gauss_legendre", path=trace)
    figs = viz.explain_figures(
        img, result, styles="panel,signs,path,saturation,riemann,channels", label="balloon",
        name="b", out_dir=tmp_path,
    )
    assert list(figs) == ["panel", "signs", "path", "saturation", "riemann", "channels"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["b.channels.png", "b.path.png", "b.png", "b.saturation.png", "b.signs.png",
                     "riemann.png"]
    assert "Gauss-Legendre rule (32 steps)" in figs["riemann"].get_suptitle()
    # Channels-first input with channel_axis draws the same panel.
    chw = viz.explain_figures(np.moveaxis(img, -1, 0), _result(np.moveaxis(attr, -1, 0)),
                              channel_axis=0)
    same = viz.explain_figures(img, _result(attr))
    for a, b in zip(chw["panel"].axes[:4], same["panel"].axes[:4], strict=True):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())


# ---------------------------------------------------------------------- the rule a run used


def _bars(fig: object) -> tuple[np.ndarray, np.ndarray]:
    from matplotlib.patches import Rectangle

    ax = fig.axes[0]  # type: ignore[attr-defined]
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    return np.array([r.get_x() for r in rects]), np.array([r.get_width() for r in rects])


def _dots(fig: object) -> np.ndarray:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    [dots] = [line for line in ax.lines if line.get_marker() == "o"]
    return np.asarray(dots.get_xdata())


@pytest.mark.parametrize("n", [3, 8, 20])
def test_gauss_legendre_figure_draws_its_nodes_with_bars_as_wide_as_the_weights(n: int) -> None:
    nodes, weights = igkit.nodes_and_weights("gauss_legendre", n)
    fig = riemann_figure("gauss_legendre", n)
    left, width = _bars(fig)
    np.testing.assert_allclose(width, weights, rtol=0, atol=1e-15)
    np.testing.assert_allclose(_dots(fig), nodes, rtol=0, atol=1e-15)
    # The bars tile [0, 1] and each holds its node.
    np.testing.assert_allclose(left + width, np.cumsum(weights), atol=1e-15)
    assert np.all((left < nodes) & (nodes < left + width))
    title = fig.get_suptitle()
    assert f"Gauss-Legendre rule ({n} steps)" in title and "Riemann" not in title
    sketch = rule_sketch("gauss_legendre", n)
    assert sketch.value == pytest.approx(float(np.sum(weights * example_gradient(nodes))))


@pytest.mark.parametrize(
    "method,offset", [("riemann_left", 0.0), ("riemann_right", 1.0), ("riemann_middle", 0.5)]
)
def test_riemann_figures_keep_their_rectangles(method: str, offset: float) -> None:
    n = 5
    nodes, weights = igkit.nodes_and_weights(method, n)
    fig = riemann_figure(method, n)
    left, width = _bars(fig)
    np.testing.assert_allclose(width, weights)
    np.testing.assert_allclose(left, nodes - offset / n, atol=1e-15)
    np.testing.assert_allclose(_dots(fig), nodes)
    assert f"({n} steps)" in fig.get_suptitle()


def test_trapezoid_adaptive_and_secant_figures() -> None:
    nodes, weights = igkit.nodes_and_weights("riemann_trapezoid", 6)
    fig = riemann_figure("riemann_trapezoid", 6)
    np.testing.assert_allclose(_dots(fig), nodes)
    assert _bars(fig)[0].size == 0  # drawn as trapezoids
    assert "trapezoidal rule (6 steps)" in fig.get_suptitle()

    ends, piece_weights = igkit.nodes_and_weights("secant", 12)
    fig = riemann_figure("secant", 12)
    left, width = _bars(fig)
    np.testing.assert_allclose(left, ends[:-1], atol=1e-15)
    np.testing.assert_allclose(width, piece_weights[:-1], atol=1e-15)
    assert "secant rule (12 pieces)" in fig.get_suptitle()
    secant = rule_sketch("secant", 12)
    assert secant.value == pytest.approx(secant.exact, rel=1e-12)  # each piece is exact

    adaptive = rule_sketch("adaptive", 24)
    assert adaptive.nodes.size == 24 and adaptive.weights.sum() == pytest.approx(1.0)
    assert adaptive.nodes[0] == 0.0 and adaptive.nodes[-1] == 1.0
    gaps = np.diff(adaptive.nodes)
    assert np.all(gaps > 0) and gaps.max() > 3 * gaps.min()  # denser where the gradient moves
    np.testing.assert_allclose(_dots(riemann_figure("adaptive", 24)), adaptive.nodes)


def test_riemann_figure_for_auto_steps_and_without_a_method() -> None:
    title = riemann_figure("gauss_legendre", "auto").get_suptitle()
    assert "steps=auto" in title and "drawn with 8 steps" in title
    tutorial = riemann_figure()
    assert len(tutorial.axes) == 4 and "Left Riemann sum" in tutorial.axes[0].get_title()
    with pytest.raises(ValueError, match="unknown method"):
        riemann_figure("simpson", 4)


# --------------------------------------------------------------- figures follow their Result


def test_figures_that_rerun_the_model_explain_what_the_result_explains() -> None:
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)).eval()
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    result = igkit.integrated_gradients(net, x, target=2, output="softmax", steps=8)
    assert result.output == "softmax" and result.requested_steps == 8
    with pytest.raises(ValueError, match="the Result explains output='softmax'"):
        viz.explain_figures(x[0], result, styles="baselines", model=net, output="raw",
                            channel_axis=0)
    # Without output= the Result's own is used: the black run is the Result itself and the
    # others are complete for the softmax score, not the logit.
    figures = viz.explain_figures(x[0], result, styles="baselines", model=net, channel_axis=0)
    assert set(figures) == {"baselines"}
