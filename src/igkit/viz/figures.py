"""Figures for Integrated Gradients: the tutorial's panels, the Keras and HPA variants.

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path=``, also saves it
as an image (PNG unless the suffix says otherwise) at 120 dpi with a tight bounding box. Figures
are built on matplotlib's Agg canvas directly, without ``pyplot``: they work headless, leave the
caller's current figure and backend alone, and are freed when no longer referenced, so there is
nothing to close. matplotlib is imported inside the functions, so ``import igkit.viz`` does not
import it.

Images and attributions are channels-last ``(H, W, C)``. Pass ``channel_axis=0`` (or convert
with :func:`igkit.viz.to_hwc`) for channels-first arrays such as PyTorch's; an array that is
plainly channels-first, ``(C, H, W)`` with ``C <= 4 < W``, is refused rather than drawn
scrambled. Where attributions are accepted a :class:`igkit.Result` may be passed instead; its
``index``-th example is drawn and its completeness numbers go into the title.

The figures live in four modules, every name importable from here too:
:mod:`igkit.viz.panels` (the tutorial's panel, sign masks, the Keras visualiser),
:mod:`igkit.viz.paths` (interpolated images, saturation plots), :mod:`igkit.viz.rules` (the 1-D
pictures of the quadrature rules) and :mod:`igkit.viz.grids` (side-by-side comparisons, channels,
RGBY microscopy).
"""

from igkit.viz._draw import DPI as DPI
from igkit.viz.grids import augment_figure as augment_figure
from igkit.viz.grids import channel_figure as channel_figure
from igkit.viz.grids import compare_grid as compare_grid
from igkit.viz.grids import rgby_figure as rgby_figure
from igkit.viz.panels import gradvis_figure as gradvis_figure
from igkit.viz.panels import ig_panel as ig_panel
from igkit.viz.panels import keras_gradvis_figure as keras_gradvis_figure
from igkit.viz.panels import sign_mask_figure as sign_mask_figure
from igkit.viz.paths import path_strip as path_strip
from igkit.viz.paths import saturation_plots as saturation_plots
from igkit.viz.paths import saturation_trace as saturation_trace
from igkit.viz.rules import riemann_figure as riemann_figure
from igkit.viz.rules import riemann_illustration as riemann_illustration

__all__ = [
    "augment_figure",
    "channel_figure",
    "compare_grid",
    "gradvis_figure",
    "ig_panel",
    "keras_gradvis_figure",
    "path_strip",
    "rgby_figure",
    "riemann_figure",
    "riemann_illustration",
    "saturation_plots",
    "saturation_trace",
    "sign_mask_figure",
]
