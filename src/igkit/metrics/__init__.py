"""Placeholder while the registry is written."""
from igkit.metrics import randomisation
from igkit.metrics._model import forward
from igkit.metrics.faithfulness import deletion, insertion, pixel_flipping, road
from igkit.metrics.localisation import mask_share, pointing_game, relevance_rank_accuracy
from igkit.metrics.randomisation import mprt, random_logit
from igkit.metrics.robustness import infidelity, max_sensitivity
