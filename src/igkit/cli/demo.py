"""``igkit demo``: ``igkit explain`` on the real photos bundled with scikit-image, offline.

The photos (chelsea the cat, coffee, astronaut) are first saved as PNG files into
``DIR/inputs``, so the demo is an ordinary file-based ``explain`` run that a user can repeat on
their own images by changing the paths.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from igkit.cli import options
from igkit.cli._base import Command, UsageError

__all__ = ["COMMAND", "DEFAULT_DEMO_OUT", "DEMO_MICROSCOPY_MODEL", "run"]

DEFAULT_DEMO_OUT = "igkit-out/demo"
#: The model ``igkit demo --microscopy`` explains.
DEMO_MICROSCOPY_MODEL = "hpa_synthetic"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit demo``: the output folder plus explain's model and IG settings."""
    parser.add_argument(
        "--out",
        default=DEFAULT_DEMO_OUT,
        metavar="DIR",
        help=f"output folder; the photos go to DIR/inputs (default: {DEFAULT_DEMO_OUT})",
    )
    options.add_model_arguments(parser)
    options.add_ig_arguments(parser)
    parser.add_argument(
        "--microscopy",
        action="store_true",
        help=f"explain synthetic HPA cells (four stains as PNG files) with "
        f"{DEMO_MICROSCOPY_MODEL} instead of the photos",
    )


def _save_photos(inputs: Path) -> list[Path]:
    """Write the scikit-image demo photos as PNG files (atomically) and return their paths."""
    from PIL import Image

    from igkit.io.writers import atomic_open
    from igkit.models.photos import DEMO_PHOTO_NAMES

    try:
        import skimage.data
    except ImportError:
        raise UsageError(
            "the demo photos come from scikit-image, which is not installed: "
            "`pip install scikit-image` (or igkit[cli])"
        ) from None
    inputs.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DEMO_PHOTO_NAMES:
        buffer = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buffer, format="PNG")
        path = inputs / f"{name}.png"
        with atomic_open(path) as handle:
            handle.write(buffer.getvalue())
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    """Save the photos (or cells), run explain on them, and say where everything is."""
    from igkit.cli.explain import run_settings

    out = Path(args.out)
    inputs = out / "inputs"
    if args.microscopy:
        return _run_microscopy(args, out, inputs)
    settings = options.settings_from_args(args)  # before writing anything
    _save_photos(inputs)
    # The demo's folder holds the demo: a new demo replaces the previous one's files.
    code = run_settings(settings, [str(inputs)], out, replace=True)
    print(f"demo inputs: {inputs}")
    print(f"demo outputs: {out} (figures *.png, attributions and numbers *.npz, table summary.csv)")
    return code


def _run_microscopy(args: argparse.Namespace, out: Path, inputs: Path) -> int:
    """Synthetic cells as per-channel PNGs, then ``igkit explain DIR/inputs --multilabel``."""
    from igkit.cli.explain import run_settings
    from igkit.io.channels import DEFAULT_CHANNELS, DEFAULT_PATTERN
    from igkit.microscopy.demo import write_demo_cells
    from igkit.microscopy.synthetic import SEEDS

    if args.model == options.ws.DEFAULT_MODEL:
        args.model = DEMO_MICROSCOPY_MODEL
    settings = options.settings_from_args(args).replace(
        channels=DEFAULT_CHANNELS, channel_files=DEFAULT_PATTERN, multilabel=True, targets=()
    )
    print(f"synthetic cells (seed {SEEDS['evaluation']}, not seen in training):")
    for example_id, truth in write_demo_cells(inputs):
        print(f"  {example_id}: green protein in {', '.join(truth)}")
    code = run_settings(settings, [str(inputs)], out, replace=True)
    print(f"demo inputs: {inputs} (four PNG files per cell)")
    print(
        f"demo outputs: {out} (ID_T.npz and sign-mask ID_T.png per cell and target, "
        "ID_rgby.png per cell, summary.csv)"
    )
    return code


COMMAND = Command(
    name="demo",
    help="explain the bundled scikit-image photos with the default model (offline)",
    description=(
        "Save scikit-image's chelsea, coffee and astronaut photos as PNG files into "
        "DIR/inputs and run 'igkit explain' on them with the default model, offline."
    ),
    configure=configure,
    run=run,
)
