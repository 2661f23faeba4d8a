"""``torchvision:NAME``: a torchvision classifier with its ImageNet weights, normalised inside."""

from __future__ import annotations

from igkit.models.sources._common import require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, register_scheme
from igkit.models.sources._torch_common import (
    pixel_normalizer,
    pretrained_or_local,
    torch_classifier,
)
from igkit.models.spec import LoadedModel


@register_scheme("torchvision", "torchvision:NAME", runs_code=False)
def load_torchvision(name: str, options: LoadOptions) -> LoadedModel:
    """A torchvision classifier with its ImageNet weights (or ``--weights``), normalised inside."""
    require("torch", "torch", f"torchvision:{name}")
    torchvision = require("torchvision", "torchvision", f"torchvision:{name}")
    tv_models = torchvision.models
    available = set(tv_models.list_models(module=tv_models))
    if name not in available:
        raise ModelLoadError(
            f"torchvision has no classification model {name!r}; choose one of "
            f"{', '.join(sorted(available))}"
        )
    weights_enum = tv_models.get_model_weights(name).DEFAULT
    spec = f"torchvision:{name}"
    net = pretrained_or_local(
        spec,
        options,
        blank=lambda: tv_models.get_model(name, weights=None),
        pretrained=lambda: tv_models.get_model(name, weights=weights_enum),
        cache_advice="set TORCH_HOME to a folder whose hub/checkpoints holds the file",
    )
    transform = weights_enum.transforms()
    crop = getattr(transform, "crop_size", [224])
    side = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    mean = tuple(getattr(transform, "mean", (0.485, 0.456, 0.406)))
    std = tuple(getattr(transform, "std", (0.229, 0.224, 0.225)))
    labels = list(weights_enum.meta.get("categories") or []) or None
    return torch_classifier(
        pixel_normalizer()(net, mean, std),
        name=spec,
        description=f"torchvision {name} ({weights_enum}), normalisation inside",
        input_size=(side, side),
        labels=labels,
    )
