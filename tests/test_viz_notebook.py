"""``igkit.viz.result_html``: an explanation in a notebook, as escaped HTML with an inline PNG.

Synthetic Results only; they carry their inputs when the Result class has the fields for them.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re

import numpy as np
import pytest
from viz_data import _attributions, _image, _result

import igkit.viz as viz
from igkit.core.result import Result
from igkit.viz import panels

PNG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@dataclasses.dataclass(frozen=True)
class _WithInputs(Result):
    """A Result with the input fields, for a Result class that does not have them yet."""

    inputs: np.ndarray | None = None
    channel_axis: int | None = None
    baseline_inputs: np.ndarray | None = None


def _with_inputs(result: Result, **fields: object) -> Result:
    names = {f.name for f in dataclasses.fields(Result)}
    if {"inputs", "channel_axis", "baseline_inputs"} <= names:
        return dataclasses.replace(result, **fields)  # type: ignore[arg-type]
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(Result)}
    return _WithInputs(**values, **fields)  # type: ignore[arg-type]


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in PNG.findall(page)]


def test_words_numbers_and_the_attribution_map_without_inputs() -> None:
    result = _result(_attributions(), method="gauss_legendre")
    page = viz.result_html(result)
    assert html.escape(result.completeness_report(0)) in page
    assert "completeness within" in page
    for words in ("score F(x)", "baseline score F(x&#x27;)", "relative error", "evaluations"):
        assert words in page
    assert "<td style=\"text-align:left\">gauss_legendre</td>" in page
    assert "0.930%" not in page and "0.400%" in page  # relative error 0.004
    [png] = _pngs(page)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_labels_and_baselines_are_escaped() -> None:
    result = _result(_attributions(), baselines=("<img src=x onerror=alert(1)>",))
    page = viz.result_html(result, labels={7: "<b>balloon</b>"})
    assert "&lt;b&gt;balloon&lt;/b&gt; (class 7)" in page
    assert "<b>balloon" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert len(_pngs(page)) == 1
    # A list of class names works the same; a class without a name shows its index.
    names = [f"name {i}" for i in range(8)]
    assert "name 7 (class 7)" in viz.result_html(result, labels=names)
    assert "class 7" in viz.result_html(result, labels=names[:3])


def test_the_tutorial_panel_when_the_result_carries_its_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    img, attr = _image(), _attributions()
    white = np.ones_like(img)
    # A channels-first batch of one, as a torch model takes it.
    chw = _with_inputs(
        _result(np.moveaxis(attr, -1, 0)[None], baselines=("white",)),
        inputs=np.moveaxis(img, -1, 0)[None],
        channel_axis=1,
        baseline_inputs=np.moveaxis(white, -1, 0)[None],
    )
    drawn: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    original = panels.ig_panel

    def spy(image: np.ndarray, attributions: Result, baseline: np.ndarray, **kw: object) -> object:
        drawn.append((image, np.asarray(attributions.attributions)[0], baseline))
        return original(image, attributions, baseline, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(panels, "ig_panel", spy)
    page = viz.result_html(chw, labels={7: "balloon"})
    [(image, attributions, baseline)] = drawn
    np.testing.assert_array_equal(image, img)
    np.testing.assert_array_equal(attributions, attr)
    np.testing.assert_array_equal(baseline, white)
    assert len(_pngs(page)) == 1 and "balloon (class 7)" in page

    # The second input of a channels-last batch of two.
    drawn.clear()
    one = _result(attr)
    per_input = ("delta", "relative_error", "score", "baseline_score", "target", "steps",
                 "converged", "evaluations")
    pair = dataclasses.replace(
        _result(np.stack([attr, 2 * attr])),
        **{k: np.repeat(getattr(one, k), 2) for k in per_input},  # type: ignore[arg-type]
    )
    batch = _with_inputs(pair, inputs=np.stack([img, img[::-1]]), channel_axis=-1)
    viz.result_html(batch, index=1)
    np.testing.assert_array_equal(drawn[0][0], img[::-1])
    np.testing.assert_array_equal(drawn[0][1], 2 * attr)

    # Inputs without the baseline: drawn for a black baseline only.
    drawn.clear()
    viz.result_html(_with_inputs(_result(attr), inputs=img, channel_axis=-1))
    np.testing.assert_array_equal(drawn[0][2], np.zeros_like(img))
    drawn.clear()
    viz.result_html(_with_inputs(_result(attr, baselines=("blur",)), inputs=img))
    assert drawn == []


def test_a_multi_target_result_shows_each_target_of_the_input() -> None:
    attr = _attributions()
    per_input = {
        "delta": np.array([[0.001, -0.002]]),
        "relative_error": np.array([[0.004, 0.3]]),
        "score": np.array([[0.93, 0.02]]),
        "baseline_score": np.array([[0.01, 0.01]]),
        "target": np.array([[7, 3]]),
        "steps": np.array([[32, 32]]),
        "evaluations": np.array([[32, 32]]),
    }
    result = dataclasses.replace(
        _result(np.stack([attr, -attr])[None], target_mask=np.array([[True, True]]), **per_input),
        converged=np.array([[True, False]]),
    )
    page = viz.result_html(result, labels=[f"c{i}" for i in range(8)])
    for slot in (0, 1):
        assert html.escape(result.completeness_report(0, slot)) in page
    assert "c7 (class 7)" in page and "c3 (class 3)" in page
    assert "completeness NOT within" in page
    assert len(_pngs(page)) == 2


def test_index_range_and_inputs_that_are_not_images() -> None:
    result = _result(_attributions())
    with pytest.raises(IndexError):
        viz.result_html(result, index=1)
    features = _result(np.linspace(-1.0, 1.0, 10))
    page = viz.result_html(features)
    assert "completeness within" in page and _pngs(page) == []
