"""``igkit demo``: ``igkit explain`` on the real photos bundled with scikit-image, offline.

The photos (chelsea the cat, coffee, astronaut) are first saved as PNG files into
``DIR/inputs``, so the demo is an ordinary file-based ``explain`` run that a user can repeat on
their own images by changing the paths.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from igkit.cli._base import Command, UsageError
from igkit.cli.explain import DEFAULT_TOP_K, add_ig_arguments, add_model_arguments, check_options

__all__ = ["COMMAND", "DEFAULT_DEMO_OUT", "run"]

DEFAULT_DEMO_OUT = "igkit-out/demo"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``igkit demo``: the output folder plus explain's model and IG settings."""
    parser.add_argument(
        "--out",
        default=DEFAULT_DEMO_OUT,
        metavar="DIR",
        help=f"output folder; the photos go to DIR/inputs (default: {DEFAULT_DEMO_OUT})",
    )
    add_model_arguments(parser)
    add_ig_arguments(parser)
    # --- microscopy (issue 5): ``igkit demo --microscopy``; see igkit.cli.microscopy.
    from igkit.cli import microscopy

    microscopy.add_demo_argument(parser)
    # --- end microscopy


def _explain_args(args: argparse.Namespace, inputs: Path) -> argparse.Namespace:
    """The namespace ``igkit explain DIR/inputs --out DIR ...`` would have parsed to."""
    settings = vars(args).copy()
    settings.pop("_run", None)
    settings.update(
        images=[str(inputs)],
        target=None,
        top_k=DEFAULT_TOP_K,
        preprocess=None,
        input_size=None,
        augment=None,
    )
    return argparse.Namespace(**settings)


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
    """Save the photos, run explain on them, and say where everything is."""
    from igkit.cli import explain

    # --- microscopy (issue 5): synthetic cells instead of the photos.
    if getattr(args, "microscopy", False):
        from igkit.cli import microscopy

        return microscopy.run_demo(args)
    # --- end microscopy
    out = Path(args.out)
    inputs = out / "inputs"
    explain_args = _explain_args(args, inputs)
    check_options(explain_args)  # before writing anything
    _save_photos(inputs)
    code = explain.run(explain_args)
    print(f"demo inputs: {inputs}")
    print(f"demo outputs: {out} (figures *.png, attributions and numbers *.npz, table summary.csv)")
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
