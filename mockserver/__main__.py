"""``python -m mockserver``: run the WaveSpeed mock in the foreground."""

from __future__ import annotations

import sys

from mockserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
