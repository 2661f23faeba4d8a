"""Placeholder while the registry is written."""
from igkit.metrics.faithfulness import deletion, insertion, pixel_flipping, road
