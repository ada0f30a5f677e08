"""`python -m tests.killrun`: the kill trials from the command line."""

import sys

from tests.killrun.cli import main

sys.exit(main())
