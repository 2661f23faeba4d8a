"""Framework-neutral helpers shared by several model sources: imports that say what to install,
refused ``--weights``, download chatter kept off stdout, telling failed downloads apart.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

from igkit.models.sources._registry import LoadOptions, ModelLoadError

#: Side used when a model does not state its input size (the ImageNet convention).
DEFAULT_INPUT_SIZE = (224, 224)


def require(module: str, pip_name: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a ModelLoadError that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"{purpose} needs the package {module!r}, which is not installed "
            f"({exc}); install it with `pip install {pip_name}`"
        ) from exc


def no_weights(options: LoadOptions, what: str) -> None:
    """Refuse ``--weights`` for a model whose file already holds its weights."""
    if options.weights is not None:
        raise ModelLoadError(
            f"--weights does not apply to {what}: its weights are stored in the model file"
        )


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep download chatter of framework helpers off stdout, which holds the predictions."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


_NETWORK_MESSAGES = (
    "url fetch failure",
    "name or service not known",
    "temporary failure in name resolution",
    "connection",
    "network is unreachable",
    "max retries exceeded",
    "offline",
)


def is_network_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failed download rather than a bad file."""
    import socket
    import urllib.error

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current, (urllib.error.URLError, socket.gaierror, socket.timeout, ConnectionError)
        ):
            return True
        text = str(current).lower()
        if any(s in text for s in _NETWORK_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False


def first_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``, at most 300 characters, for one-line errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"[:300]
