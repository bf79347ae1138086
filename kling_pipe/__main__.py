"""`python -m kling_pipe`: the same as the `kling-pipe` command."""

import sys

from kling_pipe._cli.main import main

sys.exit(main())
