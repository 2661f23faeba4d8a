"""``timm:NAME``: a timm model with its pretrained weights, normalised inside."""

from __future__ import annotations

from igkit.models.sources._common import DEFAULT_INPUT_SIZE, require
from igkit.models.sources._registry import LoadOptions, ModelLoadError, register_scheme
from igkit.models.sources._torch_common import (
    pixel_normalizer,
    pretrained_or_local,
    torch_classifier,
)
from igkit.models.spec import LoadedModel, guess_labels


@register_scheme("timm", "timm:NAME", runs_code=False)
def load_timm(name: str, options: LoadOptions) -> LoadedModel:
    """A timm model with its pretrained weights (or ``--weights``), normalised inside."""
    require("torch", "torch", f"timm:{name}")
    timm = require("timm", "timm", f"timm:{name}")
    spec = f"timm:{name}"
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ModelLoadError(f"timm has no model {name!r}{hint}")
    net = pretrained_or_local(
        spec,
        options,
        blank=lambda: timm.create_model(name, pretrained=False),
        pretrained=lambda: timm.create_model(name, pretrained=True),
        cache_advice="set HF_HOME / TORCH_HOME to a cache that holds them",
    )
    config = timm.data.resolve_data_config({}, model=net)
    _, height, width = config.get("input_size", (3, *DEFAULT_INPUT_SIZE))
    mean = tuple(config.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(config.get("std", (0.229, 0.224, 0.225)))
    return torch_classifier(
        pixel_normalizer()(net, mean, std),
        name=spec,
        description=f"timm {name}, normalisation inside",
        input_size=(int(height), int(width)),
        labels=guess_labels(int(getattr(net, "num_classes", 0))),
    )
