"""The registry of figure styles behind ``explain_figures``, and the figure of the rule a run used.

Synthetic data only; no model is run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from viz_data import _attributions, _image, _result, _trace

import igkit.viz as viz
from igkit.viz import registry, styles

BUILT_IN = ("panel", "signs", "gradvis", "path", "saturation", "riemann", "baselines", "channels")


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
    # Channels-first input with channel_axis draws the same panel.
    chw = viz.explain_figures(np.moveaxis(img, -1, 0), _result(np.moveaxis(attr, -1, 0)),
                              channel_axis=0)
    same = viz.explain_figures(img, _result(attr))
    for a, b in zip(chw["panel"].axes[:4], same["panel"].axes[:4], strict=True):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())
