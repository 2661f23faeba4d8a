"""Temporary alias of :mod:`igkit.viz.styles`, kept while ``igkit.cli`` still imports it.

The figure styles of one explanation live in :mod:`igkit.viz.styles`; this name clashed with
the HTML report (:mod:`igkit.report`). Import from :mod:`igkit.viz.styles`; this module goes
away once nothing imports it.
"""

from igkit.viz.styles import COMPARED_BASELINES as COMPARED_BASELINES
from igkit.viz.styles import FIGURE_STYLES as FIGURE_STYLES
from igkit.viz.styles import RIEMANN_FILE as RIEMANN_FILE
from igkit.viz.styles import augment_figure as augment_figure
from igkit.viz.styles import channel_figure as channel_figure
from igkit.viz.styles import explain_figures as explain_figures
from igkit.viz.styles import figure_filename as figure_filename
from igkit.viz.styles import keras_gradvis_figure as keras_gradvis_figure
from igkit.viz.styles import parse_figure_styles as parse_figure_styles
from igkit.viz.styles import riemann_figure as riemann_figure

__all__ = [
    "COMPARED_BASELINES",
    "FIGURE_STYLES",
    "RIEMANN_FILE",
    "augment_figure",
    "channel_figure",
    "explain_figures",
    "figure_filename",
    "keras_gradvis_figure",
    "parse_figure_styles",
    "riemann_figure",
]
