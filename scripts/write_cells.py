"""Write synthetic microscopy cells with their compartment masks, for ``igkit evaluate``.

    python scripts/write_cells.py cells/ --n 48
    igkit evaluate cells/ --model hpa_synthetic --channels red,green,blue,yellow \\
        --masks cells/masks --metrics pointing_game,mask_share,deletion,insertion --out eval/

The cells come from the evaluation seed (the shipped ``hpa_synthetic`` model never saw them):
four PNG files per cell (``cell-NNNN_{red,green,blue,yellow}.png``) and one mask per
compartment (``masks/cell-NNNN_COMPARTMENT.png``), the region ``--masks`` reads for the class
explained.
"""

from __future__ import annotations

import argparse

from igkit.microscopy.demo import write_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=48, help="number of cells (default: 48)")
    parser.add_argument("--seed", type=int, default=None, help="default: the evaluation seed")
    args = parser.parse_args()
    for example_id, truth in write_cells(args.folder, args.n, args.seed):
        print(f"{example_id}: {', '.join(truth)}")


if __name__ == "__main__":
    main()
