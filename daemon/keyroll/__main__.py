"""`python -m keyroll`: the same as the `keyroll` console script."""

from __future__ import annotations

import sys

from keyroll.cli import main

if __name__ == "__main__":
    sys.exit(main())
