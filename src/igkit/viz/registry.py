"""The registry of figure styles: what :func:`igkit.viz.explain_figures` can draw.

A style is a function ``StyleContext -> Figure`` registered with :func:`register_style`, which
names it and declares what it needs (:data:`STYLE_NEEDS`). The built-in styles are registered
in :mod:`igkit.viz.styles`; :func:`figure_styles` lists every registered one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from igkit.core.result import Result
from igkit.viz._draw import _result_line, _target
from igkit.viz._model import _Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "STYLE_NEEDS",
    "FigureStyle",
    "StyleContext",
    "compose_title",
    "figure_filename",
    "figure_styles",
    "get_style",
    "parse_figure_styles",
    "register_style",
]


@dataclass(frozen=True)
class StyleContext:
    """Everything a style draws from, resolved once by :func:`explain_figures`.

    Attributes:
        image: The input, channels-last ``(H, W, C)``.
        result: The Result as given.
        drawn: The Result with channels-last attributions, for the figure functions.
        index: Which example of ``result`` is drawn.
        baseline: The baseline image, channels-last, or None when it cannot be rebuilt.
        gradients: Plain gradients given by the caller, channels-last, or None.
        title: First title line of every figure.
        label: Class name, or None.
        batch_size: Path points per model call in extra computations.
        seed: Seed of random baselines.
        setting: The input as the model sees it and the model, for styles that run it.
    """

    image: np.ndarray
    result: Result
    drawn: Result
    index: int
    baseline: np.ndarray | None
    gradients: np.ndarray | None
    title: str
    label: str | None
    batch_size: int | None
    seed: int
    setting: _Setting

    @property
    def target(self) -> int:
        """The explained class."""
        return _target(self.result, self.index)

    @property
    def steps(self) -> int:
        """The step count of the explanation drawn."""
        return int(np.asarray(self.result.steps).reshape(-1)[self.index])

    def heading(self, what: str) -> str | None:
        """Title lines: ``TITLE: what``, then the class, score and completeness."""
        return compose_title(f"{self.title}: {what}", self.result, self.index, self.label)


class _Need(NamedTuple):
    met: Callable[[StyleContext], bool]
    message: str  # formatted with the style's name and the Result's first baseline
    error: type[Exception] = ValueError


#: What a style can declare in ``needs``, in the order they are checked.
STYLE_NEEDS: dict[str, _Need] = {
    "path": _Need(
        lambda c: c.result.path is not None,
        "the {style!r} style needs the path trace: compute the Result with return_path=True",
    ),
    "model": _Need(
        lambda c: c.setting.net is not None, "the {style!r} style runs the model: pass model="
    ),
    # Plain gradients at the input: given by the caller, or computed with the model.
    "gradients": _Need(
        lambda c: c.gradients is not None or c.setting.net is not None,
        "the {style!r} style runs the model: pass model=",
    ),
    "scipy": _Need(
        lambda c: importlib.util.find_spec("scipy") is not None,
        "the {style!r} style needs SciPy: pip install 'igkit[viz]'",
        ImportError,
    ),
    "baseline": _Need(
        lambda c: c.baseline is not None,
        "the Result used a {baseline!r} baseline that cannot be rebuilt; pass baseline=",
    ),
}


@dataclass(frozen=True)
class FigureStyle:
    """A registered figure style.

    Attributes:
        name: Its name (``--figure NAME``).
        draw: ``StyleContext -> Figure``.
        needs: Keys of :data:`STYLE_NEEDS` it cannot draw without.
        file: Its file name, formatted with ``name`` (the file stem) and ``style``.
        summary: One line saying what it draws (the function's first docstring line).
    """

    name: str
    draw: Callable[[StyleContext], Figure]
    needs: tuple[str, ...] = ()
    file: str = "{name}.{style}.png"
    summary: str = ""


_STYLES: dict[str, FigureStyle] = {}


def register_style(
    name: str, *, needs: Sequence[str] = (), file: str = "{name}.{style}.png"
) -> Callable[[Callable[[StyleContext], Figure]], Callable[[StyleContext], Figure]]:
    """Register ``draw(context) -> Figure`` as the figure style ``name``.

    Args:
        name: The style's name, lower case.
        needs: What it cannot draw without, keys of :data:`STYLE_NEEDS`: ``"model"`` (runs the
            model), ``"gradients"`` (plain gradients, given or computed with the model),
            ``"path"`` (the Result's path trace), ``"baseline"`` (the baseline image) and
            ``"scipy"``.
        file: Its file name, formatted with ``name`` (the file stem) and ``style``.

    Raises:
        ValueError: For a name already registered or an unknown need.
    """
    unknown = [n for n in needs if n not in STYLE_NEEDS]
    if unknown:
        raise ValueError(f"unknown need {unknown[0]!r}; choose from {', '.join(STYLE_NEEDS)}")
    if name != name.lower() or name in _STYLES or name == "all":
        raise ValueError(f"figure style name {name!r} is taken, reserved or not lower case")

    def decorate(draw: Callable[[StyleContext], Figure]) -> Callable[[StyleContext], Figure]:
        summary = (draw.__doc__ or "").strip().split("\n")[0]
        _STYLES[name] = FigureStyle(name, draw, tuple(needs), file, summary)
        return draw

    return decorate


def figure_styles() -> tuple[str, ...]:
    """The registered styles' names, in the order they are drawn (registration order)."""
    return tuple(_STYLES)


def get_style(name: str) -> FigureStyle:
    """The registered style ``name`` (see :func:`parse_figure_styles` for checked names)."""
    return _STYLES[name]


def parse_figure_styles(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The styles a spec names: ``"panel,signs"``, ``"all"`` or a sequence of names.

    Names are case-insensitive; repeats are dropped; the result is in :func:`figure_styles`
    order.

    Args:
        spec: Comma-separated names, or a sequence of them; ``all`` means every style.

    Returns:
        The styles.

    Raises:
        ValueError: For an empty spec or an unknown name (the message lists the styles).
    """
    known = figure_styles()
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(p).strip().lower() for p in parts]
    choices = ", ".join(known) + " or all"
    if not names or any(not n for n in names):
        raise ValueError(f"empty figure style in {spec!r}; choose from {choices}")
    unknown = [n for n in names if n != "all" and n not in known]
    if unknown:
        raise ValueError(f"unknown figure style {unknown[0]!r}; choose from {choices}")
    if "all" in names:
        return known
    return tuple(s for s in known if s in names)


def figure_filename(name: str, style: str) -> str:
    """The file a style is saved as: ``NAME.png`` (panel), ``NAME.STYLE.png``, or riemann's."""
    file = _STYLES[style].file if style in _STYLES else FigureStyle.file
    return file.format(name=name, style=style)


def compose_title(
    title: str | None, result: Result | None, index: int, label: str | None
) -> str | None:
    """The title lines the result-aware figures put on top: title, class, score, completeness."""
    lines = [title] if title else []
    if result is not None:
        lines.append(_result_line(result, index, label))
    elif label:
        lines.append(label)
    return "\n".join(lines) or None
