"""Pure array transforms behind igkit's figures, gathered under one name.

The transforms live in three modules, by the figures they serve: :mod:`igkit.viz.display`
(layout, value ranges, the tutorial's mask and overlay, the HPA sign masks and RGBY display),
:mod:`igkit.viz.gradvis` (the Keras example's gradient visualiser) and :mod:`igkit.viz.rules`
(the tutorial's Riemann sums). Every name stays importable from here. Importing this module
costs NumPy only.
"""

from igkit.viz.display import RGBY_COLORS as RGBY_COLORS
from igkit.viz.display import SignMasks as SignMasks
from igkit.viz.display import attribution_mask as attribution_mask
from igkit.viz.display import channel_views as channel_views
from igkit.viz.display import display_rgb as display_rgb
from igkit.viz.display import image_for_display as image_for_display
from igkit.viz.display import infer_value_range as infer_value_range
from igkit.viz.display import normalize_for_display as normalize_for_display
from igkit.viz.display import overlay as overlay
from igkit.viz.display import rgby_to_rgb as rgby_to_rgb
from igkit.viz.display import sign_masks as sign_masks
from igkit.viz.display import to_hwc as to_hwc
from igkit.viz.gradvis import PolarityName as PolarityName
from igkit.viz.gradvis import clip_by_mass as clip_by_mass
from igkit.viz.gradvis import component_outlines as component_outlines
from igkit.viz.gradvis import cumulative_threshold as cumulative_threshold
from igkit.viz.gradvis import gradvis_image as gradvis_image
from igkit.viz.gradvis import linear_transform as linear_transform
from igkit.viz.gradvis import mass_thresholds as mass_thresholds
from igkit.viz.gradvis import morphological_cleanup as morphological_cleanup
from igkit.viz.gradvis import polarity as polarity
from igkit.viz.rules import RIEMANN_RULES as RIEMANN_RULES
from igkit.viz.rules import RiemannRule as RiemannRule
from igkit.viz.rules import riemann_nodes as riemann_nodes
from igkit.viz.rules import riemann_sum as riemann_sum

__all__ = [
    "RIEMANN_RULES",
    "SignMasks",
    "attribution_mask",
    "channel_views",
    "clip_by_mass",
    "component_outlines",
    "cumulative_threshold",
    "display_rgb",
    "gradvis_image",
    "image_for_display",
    "infer_value_range",
    "linear_transform",
    "mass_thresholds",
    "morphological_cleanup",
    "normalize_for_display",
    "overlay",
    "polarity",
    "rgby_to_rgb",
    "riemann_nodes",
    "riemann_sum",
    "sign_masks",
    "to_hwc",
]
