"""Figures and display transforms for Integrated Gradients.

``igkit.viz.transforms`` holds pure NumPy transforms (masks, polarity, mass-based clipping,
outlines, sign masks, RGBY blending, overlays) that return arrays; ``igkit.viz.figures`` draws
the tutorial, Keras and HPA figures from them and returns matplotlib Figures;
``igkit.viz.styles`` renders a chosen set of them for one explanation
(:func:`explain_figures`, what ``igkit explain --figure`` writes; styles are registered with
``igkit.viz.registry.register_style``); ``igkit.viz.notebook`` shows a Result in Jupyter
(:func:`result_html`); ``igkit.viz.augment`` makes the rotated, flipped and zoomed inputs of the
tutorial's debugging use case. Importing this package imports neither matplotlib nor SciPy nor
any deep-learning framework: each is imported by the function that needs it. Arrays are
channels-last ``(H, W, C)``; see :func:`to_hwc`.
"""

from .augment import Augmentation as Augmentation
from .augment import augment_image as augment_image
from .augment import parse_augment as parse_augment
from .figures import compare_grid as compare_grid
from .figures import gradvis_figure as gradvis_figure
from .figures import ig_panel as ig_panel
from .figures import path_strip as path_strip
from .figures import rgby_figure as rgby_figure
from .figures import riemann_illustration as riemann_illustration
from .figures import saturation_plots as saturation_plots
from .figures import saturation_trace as saturation_trace
from .figures import sign_mask_figure as sign_mask_figure
from .notebook import result_html as result_html
from .styles import FIGURE_STYLES as FIGURE_STYLES
from .styles import augment_figure as augment_figure
from .styles import channel_figure as channel_figure
from .styles import explain_figures as explain_figures
from .styles import figure_filename as figure_filename
from .styles import parse_figure_styles as parse_figure_styles
from .transforms import SignMasks as SignMasks
from .transforms import attribution_mask as attribution_mask
from .transforms import channel_views as channel_views
from .transforms import clip_by_mass as clip_by_mass
from .transforms import component_outlines as component_outlines
from .transforms import cumulative_threshold as cumulative_threshold
from .transforms import display_rgb as display_rgb
from .transforms import gradvis_image as gradvis_image
from .transforms import image_for_display as image_for_display
from .transforms import infer_value_range as infer_value_range
from .transforms import linear_transform as linear_transform
from .transforms import mass_thresholds as mass_thresholds
from .transforms import morphological_cleanup as morphological_cleanup
from .transforms import normalize_for_display as normalize_for_display
from .transforms import overlay as overlay
from .transforms import polarity as polarity
from .transforms import rgby_to_rgb as rgby_to_rgb
from .transforms import riemann_nodes as riemann_nodes
from .transforms import riemann_sum as riemann_sum
from .transforms import sign_masks as sign_masks
from .transforms import to_hwc as to_hwc

__all__ = [
    "FIGURE_STYLES",
    "Augmentation",
    "SignMasks",
    "attribution_mask",
    "augment_figure",
    "augment_image",
    "channel_figure",
    "channel_views",
    "clip_by_mass",
    "compare_grid",
    "component_outlines",
    "cumulative_threshold",
    "display_rgb",
    "explain_figures",
    "figure_filename",
    "gradvis_figure",
    "gradvis_image",
    "ig_panel",
    "image_for_display",
    "infer_value_range",
    "linear_transform",
    "mass_thresholds",
    "morphological_cleanup",
    "normalize_for_display",
    "overlay",
    "parse_augment",
    "parse_figure_styles",
    "path_strip",
    "polarity",
    "result_html",
    "rgby_figure",
    "rgby_to_rgb",
    "riemann_illustration",
    "riemann_nodes",
    "riemann_sum",
    "saturation_plots",
    "saturation_trace",
    "sign_mask_figure",
    "sign_masks",
    "to_hwc",
]
