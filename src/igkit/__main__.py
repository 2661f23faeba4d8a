"""``python -m igkit``: the same command line as the ``igkit`` script."""

import sys

from igkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
