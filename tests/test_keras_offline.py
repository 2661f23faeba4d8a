"""A keras.applications model without network: Keras's own error, turned into igkit's advice.

The loader recognises a failed download by what Keras raises. A hand-written stand-in of that
error only tests the matcher against itself, so here Keras really tries to download: in a child
process whose HTTP(S) proxy is a closed local port (every download fails at once, with or without
a network) and whose Keras cache (KERAS_HOME, HOME) is an empty folder.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: keras.applications' smallest ImageNet model with a classifier_activation argument.
MODEL = "MobileNetV3Small"

_CHILD = f"""
import json
import keras
from igkit.models.sources import ModelLoadError, load_model

out = {{}}
try:
    keras.applications.{MODEL}(weights="imagenet")
except Exception as exc:  # what Keras raises when the download fails
    out["keras"] = [type(exc).__name__, str(exc),
                    type(exc.__context__).__name__ if exc.__context__ else None]
try:
    load_model("keras:{MODEL}")
except ModelLoadError as exc:
    cause = exc.__cause__
    out["igkit"] = str(exc)
    out["cause"] = [type(cause).__name__, str(cause)] if cause else None
print(json.dumps(out))
"""


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _offline_env(tmp_path: Path) -> dict[str, str]:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update({
        "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy,
        "KERAS_HOME": str(home / ".keras"), "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
    })
    return env


def test_keras_real_offline_error_becomes_igkits_advice(tmp_path: Path) -> None:
    env = _offline_env(tmp_path)
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Keras's own error: a bare Exception raised while handling urllib's URLError.
    kind, message, context = out["keras"]
    assert (kind, context) == ("Exception", "URLError"), out
    assert message.startswith("URL fetch failure on https://"), message
    # igkit recognised it as a failed download and says what to do without network.
    advice = out["igkit"]
    assert f"keras:{MODEL} needs its ImageNet weights" in advice
    assert "no network" in advice and "--weights PATH" in advice and "KERAS_HOME" in advice
    assert out["cause"] == [kind, message]  # the very error Keras raised, kept as the cause
    assert not any((Path(env["KERAS_HOME"]) / "models").glob("*.h5"))  # nothing half-downloaded


def test_cli_without_network_prints_one_line(tmp_path: Path) -> None:
    """``igkit explain --model keras:NAME`` offline: the advice as one error line, exit 2.

    TensorFlow's and Keras's own chatter (oneDNN notices, "Downloading data from ...") also
    reaches stderr; igkit's part is the one last line, with no traceback."""
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "igkit", "explain", str(image), "--model", f"keras:{MODEL}",
         "--out", str(tmp_path / "out"), "--steps", "2", "--no-figures"],
        capture_output=True, text=True, env=_offline_env(tmp_path), timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("igkit: error: ")]
    assert errors == lines[-1:] and "Traceback" not in done.stderr, done.stderr
    assert "no network" in errors[0] and "--weights PATH" in errors[0]
    assert not (tmp_path / "out").exists()
