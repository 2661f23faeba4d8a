"""``tfhub:HANDLE_OR_PATH``: a TF-Hub model from a local SavedModel folder, or a remote handle
that ``tensorflow_hub`` downloads (failing with advice when there is no network).

TF-Hub modules are SavedModels (or the TF1 Hub format): their graphs run when called and may
read and write files, so they need ``trust`` like any SavedModel.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from igkit.models.sources._common import (
    first_line,
    is_network_failure,
    no_weights,
    stdout_to_stderr,
)
from igkit.models.sources._registry import (
    LoadOptions,
    ModelLoadError,
    RunsCode,
    register_scheme,
)
from igkit.models.sources.saved_model import (
    SAVED_MODEL,
    describe_restored,
    is_saved_model,
    load_saved_model,
)
from igkit.models.spec import LoadedModel

_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


TFHUB_MODULE = RunsCode(
    what="a TF-Hub module",
    why="it is a SavedModel whose graphs run when it is loaded and called and may hold any "
    "TensorFlow op, including ones that read and write files (tf.io.write_file)",
    instead=SAVED_MODEL.instead,
)


def tfhub_risk(handle: str) -> RunsCode | None:
    """A local SavedModel or a remote handle runs code; anything else is an error of its own."""
    local = Path(handle).expanduser()
    if local.is_dir() and is_saved_model(local):
        return TFHUB_MODULE
    if _REMOTE.match(handle):
        return TFHUB_MODULE
    return None


@register_scheme("tfhub", "tfhub:HANDLE_OR_PATH", runs_code=tfhub_risk)
def load_tfhub(handle: str, options: LoadOptions) -> LoadedModel:
    """A TF-Hub model: a local SavedModel folder, or a handle that tensorflow_hub resolves."""
    no_weights(options, "a TF-Hub model")
    try:
        hub = importlib.import_module("tensorflow_hub")
    except ImportError:
        hub = None
    local = Path(handle).expanduser()
    if local.is_dir():
        # tensorflow_hub, when installed, also reads the TF1 Hub format; plain TF otherwise.
        load = hub.load if hub is not None else None
        return load_saved_model(local, options, name=local.name or handle, load=load)
    if not _REMOTE.match(handle):
        raise ModelLoadError(f"tfhub:{handle}: no such SavedModel folder, and not a URL handle")
    advice = (
        "download it on a machine with network access and pass its SavedModel folder "
        "(--model tfhub:/path/to/folder), or set TFHUB_CACHE_DIR to a cache that holds it"
    )
    if not options.trust:  # the dispatch refused it already; never fetch or load it untrusted
        raise ModelLoadError(TFHUB_MODULE.refusal(f"tfhub:{handle}"))
    if hub is None:
        raise ModelLoadError(
            f"tfhub:{handle} is a remote handle: loading it needs the package tensorflow_hub "
            f"(not installed) and network access, which this machine may not have; {advice}"
        )
    try:
        with stdout_to_stderr():
            restored = hub.load(handle)
    except Exception as exc:  # noqa: BLE001 - hub wraps failed downloads in many types
        if is_network_failure(exc):
            raise ModelLoadError(
                f"tfhub:{handle} cannot be downloaded: there is no network; {advice}"
            ) from exc
        raise ModelLoadError(f"tfhub:{handle}: cannot be loaded ({first_line(exc)})") from exc
    return describe_restored(restored, name=f"tfhub:{handle}", description=f"TF-Hub {handle}")
