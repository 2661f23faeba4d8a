"""Temporary alias of :mod:`igkit.models.sources`, to be deleted once nothing imports it."""

from igkit.models.sources import (
    LoadOptions,
    ModelLoadError,
    available_schemes,
    load_model,
    register_model,
    register_scheme,
)

__all__ = [
    "LoadOptions",
    "ModelLoadError",
    "available_schemes",
    "load_model",
    "register_model",
    "register_scheme",
]
