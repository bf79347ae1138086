"""`python -m kling_pipe`: the same as the `kling-pipe` command."""

import sys

from kling_pipe.cli import main

sys.exit(main())
